"""``Predictor``: a thin, safe onnxruntime runtime for one bundle (model.onnx + schema.json).

Everything that can be checked is checked once, when the bundle is loaded: the schema against
the ONNX graph, plus a probe run. A call then does only cheap checks (type, shape, dtype,
finiteness) before ``session.run``. The loaded model is one immutable object; ``reload``
builds a new one and swaps the reference, and every call reads the reference exactly once.

A sequence model (schema ``window``) takes windows ``[window, n_features]`` (oldest time step
first) instead of rows; the input methods are chosen once, at load time.
"""

from __future__ import annotations

import logging
import math
import operator
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from serving.errors import BundleError, InputError
from serving.integrity import UnsealedBundleError, check_graph
from serving.integrity import verify as verify_seal
from serving.log import PredictionLog
from serving.results import (
    NO_EXTRAS,
    AnomalyPrediction,
    MultiPrediction,
    Prediction,
    ValuePrediction,
)
from serving.schema import Schema

logger = logging.getLogger(__name__)

_F32 = np.dtype(np.float32)
_F32_MAX = float(np.finfo(np.float32).max)
_NUMERIC_KINDS = frozenset("fiub")
_perf_ns = time.perf_counter_ns
_MAX_LISTED = 5


def session_options(intra_op_num_threads: int = 1) -> ort.SessionOptions:
    """The session options every AlphaOps session uses (also used by the benchmark)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = intra_op_num_threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Converters declare some outputs with a static batch of 1 (onnxmltools' `label`);
    # onnxruntime would then warn on every batch call.
    so.log_severity_level = 3
    return so


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in list(names)[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f" (+{more} more)" if more > 0 else "")


# ---------------------------------------------------------------------------------------
# The loaded model: session + schema + everything precomputed for the call path.
# ---------------------------------------------------------------------------------------
class _Model:
    """One bundle, loaded and checked. Immutable after ``__init__``."""

    __slots__ = tuple(
        "path schema session run input_name fetch n names index getter ones name version one "
        "batch classes class_names classes_arr names_arr prob_i label_i label_index threshold "
        "value_i score_i multi anomaly_threshold window in_shape extras one_base batch_base "
        "fast split_rows check_row valid_values seal".split()
    )

    def __init__(
        self, path: str | Path, intra_op_num_threads: int = 1, allow_unsealed: bool = False
    ):
        self.path = Path(path)
        if not self.path.is_dir():
            raise BundleError(f"bundle directory not found: {self.path}")
        self.schema = s = Schema.read(self.path)
        onnx_path = self.path / "model.onnx"
        if not onnx_path.is_file():
            raise BundleError(f"model.onnx not found in {self.path}")
        try:
            data = onnx_path.read_bytes()  # read once: the bytes checked are the bytes loaded
        except OSError as e:
            raise BundleError(f"model.onnx in {self.path} cannot be read: {e}") from e
        try:
            self.seal: dict[str, Any] | None = verify_seal(s.raw, data, where=str(self.path))
        except UnsealedBundleError:
            if not allow_unsealed:
                raise
            logger.warning("%s: serving an unsealed bundle (allow_unsealed=True)", self.path)
            self.seal = None
        try:
            self.session = ort.InferenceSession(
                data,
                sess_options=session_options(intra_op_num_threads),
                providers=["CPUExecutionProvider"],
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise BundleError(f"model.onnx in {self.path} cannot be loaded: {e}") from e
        if self.seal is not None:
            check_graph(
                self.seal.get("graph"),
                [(i.name, list(i.shape)) for i in self.session.get_inputs()],
                [o.name for o in self.session.get_outputs()],
                where=str(self.path),
            )

        self.name, self.version = s.model_name, s.model_version
        self.names = s.features
        self.n = n = len(s.features)
        self.index = {f: i for i, f in enumerate(s.features)}
        self.getter = operator.itemgetter(*s.features) if n > 1 else (lambda d: (d[s.features[0]],))
        self.window = w = s.window
        self.ones = np.ones(w * n if w else n, dtype=_F32)  # for the finiteness dot of one row
        self.in_shape = (w, n) if w else (n,)  # the shape of one row (one window)
        if w:
            self.fast, self.split_rows = self._fast_windows, self._split_windows
            self.check_row, self.valid_values = self._check_window, self._window_values
        else:
            self.fast, self.split_rows = self._fast_rows, self._split_rows
            self.check_row, self.valid_values = self._check_row, self._row_values
        self._check_graph()

        # task-specific decoding
        self.prob_i = self.label_i = self.value_i = self.score_i = -1
        self.threshold = self.anomaly_threshold = None
        self.classes = self.class_names = self.classes_arr = self.names_arr = None
        self.label_index = None
        self.multi = ()
        fetch: list[str] = []

        def want(out_name: str) -> int:
            fetch.append(out_name)
            return len(fetch) - 1

        if s.task == "classifier":
            assert s.classes is not None and s.class_names is not None
            self.classes, self.class_names = s.classes, s.class_names
            self.classes_arr, self.names_arr = np.array(s.classes), np.array(s.class_names)
            self.prob_i = want(s.outputs_of("probabilities")[0].name)
            if len(s.classes) == 2 and "decision" in s.thresholds:
                self.threshold = float(s.thresholds["decision"])
            elif s.outputs_of("label"):
                self.label_i = want(s.outputs_of("label")[0].name)
                self.label_index = {c: i for i, c in enumerate(s.classes)}
            self.one, self.batch = self._one_classifier, self._batch_classifier
        elif s.task == "regressor":
            self.value_i = want(s.outputs_of("value")[0].name)
            self.one, self.batch = self._one_value, self._batch_value
        elif s.task == "anomaly":
            self.score_i = want(s.outputs_of("score")[0].name)
            if "anomaly_score" in s.thresholds:
                self.anomaly_threshold = float(s.thresholds["anomaly_score"])
            else:
                self.label_i = want(s.outputs_of("label")[0].name)
            self.one, self.batch = self._one_anomaly, self._batch_anomaly
        else:
            self.multi = tuple((o.key, want(o.name)) for o in s.outputs_of("value"))
            self.one, self.batch = self._one_multi, self._batch_multi
        # extra value outputs of a classifier / anomaly model: decoded after the task's fields,
        # so models without them keep the plain decoders
        self.extras = tuple((o.key, want(o.name)) for o in s.extras)
        self.one_base, self.batch_base = self.one, self.batch
        if self.extras:
            self.one, self.batch = self._one_extras, self._batch_extras
        self.fetch = fetch
        self.input_name = s.input_name
        self.run = self.session.run
        self._probe()

    # -- load-time checks ----------------------------------------------------------------
    def _check_graph(self) -> None:
        s, sess = self.schema, self.session
        inputs = sess.get_inputs()
        if len(inputs) != 1:
            raise BundleError(f"model.onnx must have exactly one input, has {len(inputs)}")
        inp = inputs[0]
        if inp.name != s.input_name:
            raise BundleError(
                f"schema input.name {s.input_name!r} is not the graph's input {inp.name!r}"
            )
        if inp.type != "tensor(float)":
            raise BundleError(f"graph input {inp.name!r} is {inp.type}, expected tensor(float)")
        shape = inp.shape
        w = self.window
        expected = f"[N, {w}, {self.n}]" if w else f"[N, {self.n}]"
        if len(shape) != (3 if w else 2):
            hint = " (a sequence model needs 'window' in schema.json)" if len(shape) == 3 else ""
            raise BundleError(
                f"graph input {inp.name!r} has shape {shape}, expected {expected}{hint}"
            )
        if isinstance(shape[-1], int) and shape[-1] != self.n:
            raise BundleError(
                f"schema lists {self.n} features but the graph input {inp.name!r} takes {shape[-1]}"
            )
        if w and isinstance(shape[1], int) and shape[1] != w:
            raise BundleError(
                f"schema window is {w} time steps but the graph input {inp.name!r} takes {shape[1]}"
            )
        if isinstance(shape[0], int) and shape[0] != 1:
            raise BundleError(f"graph input {inp.name!r} has a fixed batch size {shape[0]}")
        graph_out = {o.name: o for o in sess.get_outputs()}
        for o in s.outputs:
            if o.name not in graph_out:
                raise BundleError(
                    f"schema output {o.name!r} is not a graph output ({_names(list(graph_out))})"
                )
        if s.task == "classifier":
            assert s.classes is not None
            pshape = graph_out[s.outputs_of("probabilities")[0].name].shape
            if len(pshape) == 2 and isinstance(pshape[1], int) and pshape[1] != len(s.classes):
                raise BundleError(
                    f"schema lists {len(s.classes)} classes but the probabilities output has "
                    f"{pshape[1]} columns"
                )

    def _probe(self) -> None:
        """Run two rows of zeros once: warms the session and checks output shapes."""
        try:
            outs = self.run(self.fetch, {self.input_name: np.zeros((2, *self.in_shape), _F32)})
        except Exception as e:
            raise BundleError(f"model.onnx in {self.path} fails on a probe batch: {e}") from e
        for name, arr in zip(self.fetch, outs):
            if not isinstance(arr, np.ndarray) or arr.ndim == 0 or arr.shape[0] != 2:
                raise BundleError(
                    f"output {name!r} is not batched along axis 0 (shape "
                    f"{getattr(arr, 'shape', None)} for a batch of 2)"
                )
        if self.prob_i >= 0:
            assert self.classes is not None
            p = outs[self.prob_i]
            if p.ndim != 2 or p.shape[1] != len(self.classes):
                raise BundleError(
                    f"probabilities output has shape {p.shape}, expected [N, {len(self.classes)}]"
                )
        if self.label_index is not None:
            for v in outs[self.label_i].reshape(-1).tolist():
                if v not in self.label_index:
                    raise BundleError(f"model returned label {v!r}, not in schema classes")
        for i in (self.value_i, self.score_i):
            if i >= 0 and outs[i].size != 2:
                raise BundleError(f"output {self.fetch[i]!r} must hold one value per row")
        for i in (self.value_i, self.score_i, *(j for _, j in self.multi + self.extras)):
            if i >= 0 and outs[i].dtype.kind not in _NUMERIC_KINDS:
                raise BundleError(f"output {self.fetch[i]!r} is not numeric ({outs[i].dtype})")
        try:
            self.one(outs)
            self.batch(outs, 2)
        except Exception as e:
            raise BundleError(f"outputs of model.onnx in {self.path} cannot be decoded: {e}") from e

    # -- input: the fast path ------------------------------------------------------------
    def _fast_rows(self, x: Any) -> tuple[np.ndarray, bool] | None:
        """Return (float32 C-contiguous [N, n] array, single_row) for well-formed input, or
        None to let the slow path diagnose it. Never raises."""
        n = self.n
        try:
            t = type(x)
            if t is np.ndarray:
                a = x
            elif t is dict:
                if len(x) != n:
                    return None
                a = np.array(self.getter(x))  # dtype inferred: strings/None/lists show up
            elif t is list or t is tuple:
                a = np.array(x)
            else:
                return None
            dt = a.dtype
            if dt is not _F32 and dt.kind not in _NUMERIC_KINDS:
                return None
            if a.ndim == 1:
                if a.shape[0] != n:
                    return None
                if dt is not _F32:
                    a = a.astype(_F32)  # values beyond float32 range become inf (and warn)
                elif not a.flags.c_contiguous:
                    a = np.ascontiguousarray(a)
                # one BLAS dot instead of isfinite().all(): NaN/inf propagate into the sum;
                # an overflowing sum of finite values is re-checked exactly.
                if not math.isfinite(a.dot(self.ones)) and not np.isfinite(a).all():
                    return None
                return a.reshape(1, n), True
            if a.ndim == 2 and a.shape[1] == n and a.shape[0] > 0:
                a = np.ascontiguousarray(a, dtype=_F32)
                if not np.isfinite(a).all():
                    return None
                return a, False
            return None
        except Exception:  # odd inputs (ragged lists, overflow warnings as errors, ...)
            return None

    def _fast_windows(self, x: Any) -> tuple[np.ndarray, bool] | None:
        """Sequence models: (float32 C-contiguous [N, w, n] array, single_window) for a
        well-formed window [w, n], dict of w-value sequences, or batch [N, w, n]; else None."""
        w, n = self.window, self.n
        try:
            t = type(x)
            if t is np.ndarray:
                a = x
            elif t is dict:
                if len(x) != n:
                    return None
                a = np.array(self.getter(x)).T  # [n, w] -> [w, n]
            elif t is list or t is tuple:
                a = np.array(x)
            else:
                return None
            dt = a.dtype
            if dt is not _F32 and dt.kind not in _NUMERIC_KINDS:
                return None
            if a.ndim == 2:
                if a.shape != (w, n):
                    return None
                if dt is not _F32:
                    a = a.astype(_F32)  # values beyond float32 range become inf
                elif not a.flags.c_contiguous:
                    a = np.ascontiguousarray(a)
                flat = a.reshape(w * n)
                # as for one row: one BLAS dot, re-checked exactly only if it is not finite
                if not math.isfinite(flat.dot(self.ones)) and not np.isfinite(flat).all():
                    return None
                return a.reshape(1, w, n), True
            if a.ndim == 3 and a.shape[1] == w and a.shape[2] == n and a.shape[0] > 0:
                a = np.ascontiguousarray(a, dtype=_F32)
                if not np.isfinite(a).all():
                    return None
                return a, False
            return None
        except Exception:
            return None

    # -- input: the slow path (diagnosis, per-row checks for fallback) -------------------
    @staticmethod
    def _split_rows(x: Any) -> tuple[bool, list[Any]]:
        """(single, rows): a batch is a 2-D array or a list/tuple of rows (lists, tuples,
        arrays or dicts); anything else is one row."""
        if isinstance(x, np.ndarray):
            if x.ndim == 2:
                return False, list(x)
            return True, [x]
        if (
            isinstance(x, (list, tuple))
            and x
            and all(isinstance(r, (list, tuple, np.ndarray, dict)) for r in x)
        ):
            return False, list(x)
        return True, [x]

    @staticmethod
    def _split_windows(x: Any) -> tuple[bool, list[Any]]:
        """(single, windows): a batch is a 3-D array or a list/tuple holding dicts or 2-D
        windows (arrays, or lists of lists); anything else is one window."""
        if isinstance(x, np.ndarray):
            if x.ndim == 3:
                return False, list(x)
            return True, [x]
        if isinstance(x, (list, tuple)) and x and any(_is_window(r) for r in x):
            return False, list(x)
        return True, [x]

    def _check_names(self, row: Mapping, at: str, i: int | None) -> None:
        unknown = [k for k in row if k not in self.index]
        if unknown:
            raise InputError(
                f"{at}unknown feature(s) {_names([str(k) for k in unknown])}",
                feature=str(unknown[0]),
                row=i,
            )
        missing = [f for f in self.names if f not in row]
        if missing:
            raise InputError(
                f"{at}missing feature(s) {_names(missing)} ({len(missing)} of {self.n})",
                feature=missing[0],
                row=i,
            )

    def _check_window(self, row: Any, i: int | None) -> np.ndarray:
        """Validate one window exactly; return it as float32 [w, n] or raise a precise
        InputError (naming the feature and time step, or the expected shape)."""
        at = "" if i is None else f"row {i}: "
        w, n, names = self.window, self.n, self.names
        shape = f"[{w}, {n}] (time steps x features, oldest first)"
        out = np.empty((w, n), dtype=_F32)
        if isinstance(row, Mapping):
            self._check_names(row, at, i)
            for j, f in enumerate(names):
                seq = row[f]
                if not _is_vector(seq):
                    raise InputError(
                        f"{at}feature {f!r}: expected a sequence of {w} values (oldest first), "
                        f"got {type(seq).__name__}",
                        feature=f,
                        row=i,
                    )
                if len(seq) != w:
                    raise InputError(
                        f"{at}feature {f!r}: expected {w} values (oldest first), got {len(seq)}",
                        feature=f,
                        row=i,
                    )
                for t, v in enumerate(seq):
                    out[t, j] = _number(v, f, at, i, t, w)
            return out
        if not (isinstance(row, np.ndarray) or _is_sequence(row)):
            raise InputError(
                f"{at}expected one window of shape {shape} or a dict of {w}-value sequences by "
                f"feature name, got {type(row).__name__}",
                row=i,
            )
        if (
            (isinstance(row, np.ndarray) and row.ndim != 2)
            or len(row) != w
            or not all(_is_vector(step) for step in row)
        ):
            raise InputError(
                f"{at}expected one window of shape {shape}, or a batch [N, {w}, {n}]; got "
                f"{_describe_shape(row)}",
                row=i,
            )
        for t, step in enumerate(row):
            if len(step) != n:
                if len(step) < n:
                    detail, feat = f"missing {_names(names[len(step) :])}", names[len(step)]
                else:
                    detail, feat = f"{len(step) - n} extra value(s) after {names[-1]!r}", None
                raise InputError(
                    f"{at}time step {t}: expected {n} features in schema order, got {len(step)}: "
                    f"{detail} (window shape {shape})",
                    feature=feat,
                    row=i,
                    step=t,
                )
            for j, v in enumerate(step):
                out[t, j] = _number(v, names[j], at, i, t, w)
        return out

    def _window_values(self, row: Any) -> dict[str, float]:
        """Fallback values of a window: its last time step (each feature's last value), also
        when the window is too short; never raises."""
        if isinstance(row, Mapping):
            pairs = [(f, row[f][-1]) for f in self.names if f in row and _is_vector(row[f], 1)]
        elif (isinstance(row, np.ndarray) and row.ndim == 2) or (
            _is_sequence(row) and len(row) > 0
        ):
            last = row[-1]
            if not _is_vector(last) or len(last) != self.n:
                return {}
            pairs = list(zip(self.names, last))
        else:
            return {}
        return _valid(pairs)

    def _check_row(self, row: Any, i: int | None) -> np.ndarray:
        """Validate one row exactly; return it as float32 [n] or raise a precise InputError."""
        at = "" if i is None else f"row {i}: "
        if isinstance(row, Mapping):
            self._check_names(row, at, i)
            values = [row[f] for f in self.names]
        elif isinstance(row, np.ndarray) or (
            isinstance(row, Sequence) and not isinstance(row, (str, bytes))
        ):
            values = list(row) if not isinstance(row, np.ndarray) or row.ndim == 1 else None
            if values is None:
                raise InputError(
                    f"{at}expected {self.n} features in schema order, got an array of shape "
                    f"{row.shape}",
                    row=i,
                )
            if len(values) != self.n:
                if len(values) < self.n:
                    miss = self.names[len(values) :]
                    detail = f"missing {_names(miss)}"
                    feat = miss[0]
                else:
                    detail = f"{len(values) - self.n} extra value(s) after {self.names[-1]!r}"
                    feat = None
                raise InputError(
                    f"{at}expected {self.n} features in schema order, got {len(values)}: {detail}",
                    feature=feat,
                    row=i,
                )
        else:
            raise InputError(
                f"{at}expected a dict keyed by feature name or a sequence of {self.n} numbers, "
                f"got {type(row).__name__}",
                row=i,
            )
        out = np.empty(self.n, dtype=_F32)
        for j, (f, v) in enumerate(zip(self.names, values)):
            out[j] = _number(v, f, at, i)
        return out

    def _row_values(self, row: Any) -> dict[str, float]:
        """The row's valid feature values by name (for fallback rules); never raises."""
        if isinstance(row, Mapping):
            pairs = [(f, row[f]) for f in self.names if f in row]
        elif isinstance(row, (list, tuple)) or (isinstance(row, np.ndarray) and row.ndim == 1):
            if len(row) != self.n:
                return {}
            pairs = list(zip(self.names, row))
        else:
            return {}
        return _valid(pairs)

    # -- output decoding -----------------------------------------------------------------
    def _one_classifier(self, outs: list) -> Prediction:
        probs = outs[self.prob_i][0]
        p = probs.tolist()
        if self.threshold is not None:
            k = 1 if p[1] >= self.threshold else 0
        elif self.label_index is not None:
            k = self.label_index[outs[self.label_i].item(0)]
        else:
            k = p.index(max(p))
        return Prediction(
            self.classes[k],
            self.class_names[k],
            probs,
            p[k],
            self.name,
            self.version,  # type: ignore[index]
        )

    def _batch_classifier(self, outs: list, n: int) -> dict[str, Any]:
        probs = outs[self.prob_i]
        if self.threshold is not None:
            k = (probs[:, 1] >= self.threshold).astype(np.intp)
        elif self.label_index is not None:
            idx = self.label_index
            k = np.fromiter((idx[v] for v in outs[self.label_i].reshape(-1).tolist()), np.intp, n)
        else:
            k = probs.argmax(axis=1)
        return {
            "label": self.classes_arr[k],  # type: ignore[index]
            "class_name": self.names_arr[k],  # type: ignore[index]
            "probabilities": probs,
            "confidence": probs[np.arange(n), k],
        }

    def _one_value(self, outs: list) -> ValuePrediction:
        return ValuePrediction(outs[self.value_i].item(0), self.name, self.version)

    def _batch_value(self, outs: list, n: int) -> dict[str, Any]:
        return {"value": outs[self.value_i].reshape(n)}

    def _one_anomaly(self, outs: list) -> AnomalyPrediction:
        score = outs[self.score_i].item(0)
        if self.anomaly_threshold is not None:
            flag = score < self.anomaly_threshold
        else:
            flag = outs[self.label_i].item(0) == -1
        return AnomalyPrediction(flag, score, self.name, self.version)

    def _batch_anomaly(self, outs: list, n: int) -> dict[str, Any]:
        score = outs[self.score_i].reshape(n)
        if self.anomaly_threshold is not None:
            flag = score < self.anomaly_threshold
        else:
            flag = outs[self.label_i].reshape(n) == -1
        return {"is_anomaly": flag, "score": score}

    def _one_multi(self, outs: list) -> MultiPrediction:
        d = {}
        for key, i in self.multi:
            row = outs[i][0]
            d[key] = row.item() if row.size == 1 else row
        return MultiPrediction(d, self.name, self.version)

    def _batch_multi(self, outs: list, n: int) -> dict[str, Any]:
        d = {}
        for key, i in self.multi:
            a = outs[i]
            d[key] = a.reshape(n) if a.size == n else a
        return {"outputs": d}

    def _one_extras(self, outs: list) -> Any:
        """A classifier / anomaly result plus its extra value outputs (by meaning)."""
        res = self.one_base(outs)
        d = {}
        for key, i in self.extras:
            row = outs[i][0]
            d[key] = row.item() if row.size == 1 else row
        res.extras = d
        return res

    def _batch_extras(self, outs: list, n: int) -> dict[str, Any]:
        cols = self.batch_base(outs, n)
        d = {}
        for key, i in self.extras:
            a = outs[i]
            d[key] = a.reshape(n) if a.size == n else a
        cols["extras"] = d
        return cols

    def build_batch(self, cols: dict[str, Any], fallback: np.ndarray) -> Any:
        """Wrap batch columns into the task's result type."""
        task = self.schema.task
        if task == "classifier":
            return Prediction(
                cols["label"],
                cols["class_name"],
                cols["probabilities"],
                cols["confidence"],
                self.name,
                self.version,
                fallback,
                extras=cols.get("extras", NO_EXTRAS),
            )
        if task == "regressor":
            return ValuePrediction(cols["value"], self.name, self.version, fallback)
        if task == "anomaly":
            return AnomalyPrediction(
                cols["is_anomaly"],
                cols["score"],
                self.name,
                self.version,
                fallback,
                extras=cols.get("extras", NO_EXTRAS),
            )
        return MultiPrediction(cols["outputs"], self.name, self.version, fallback)

    def fallback_one(self, answer: Mapping[str, Any]) -> Any:
        task = self.schema.task

        def vec(v: Any) -> Any:
            return np.array(v, dtype=_F32) if isinstance(v, tuple) else v

        if task == "classifier":
            return Prediction(
                answer["label"],
                answer["class_name"],
                None,
                answer["confidence"],
                self.name,
                self.version,
                True,
                extras={k: vec(v) for k, v in answer["extras"].items()},
            )
        if task == "regressor":
            return ValuePrediction(answer["value"], self.name, self.version, True)
        if task == "anomaly":
            return AnomalyPrediction(
                answer["is_anomaly"],
                answer["score"],
                self.name,
                self.version,
                True,
                extras={k: vec(v) for k, v in answer["extras"].items()},
            )
        d = {k: vec(v) for k, v in answer.items()}
        return MultiPrediction(d, self.name, self.version, True)

    def merge_batch(
        self, n: int, ok: list[int], cols: dict[str, Any] | None, fb: dict[int, Mapping[str, Any]]
    ) -> Any:
        """Assemble a batch result from model rows ``ok`` (columns ``cols``) and fallback
        answers ``fb`` (row -> answer)."""
        task = self.schema.task
        mask = np.zeros(n, dtype=bool)
        mask[list(fb)] = True
        rows_fb = list(fb)

        def column(
            model_col: np.ndarray | None,
            key: str,
            dtype: Any,
            width: int = 0,
            answers: Mapping[int, Mapping[str, Any]] = fb,
        ) -> np.ndarray:
            shape = (n, width) if width else (n,)
            if model_col is not None:
                dtype = model_col.dtype if model_col.dtype.kind != "U" else object
            if np.dtype(dtype).kind == "f":
                out = np.full(shape, np.nan, dtype=dtype)  # NaN where the model did not answer
            else:
                out = np.empty(shape, dtype=dtype)
            if model_col is not None and ok:
                out[ok] = model_col
            if key:
                for r in rows_fb:
                    v = answers[r][key]
                    if v is not None:  # None: unknown (an extra the rule does not set)
                        out[r] = v
            return out

        def values(
            src: Mapping[str, np.ndarray], keys: tuple, answers: Mapping[int, Mapping[str, Any]]
        ) -> dict[str, np.ndarray]:
            """Value outputs (multi outputs or extras): model columns merged with the rule's."""
            merged = {}
            for key, _ in keys:
                col = src.get(key)
                width = 0 if col is None or col.ndim == 1 else col.shape[1]
                if col is None:
                    known = [a[key] for a in answers.values() if a[key] is not None]
                    width = len(known[0]) if known and isinstance(known[0], tuple) else 0
                merged[key] = column(col, key, _F32, width, answers)
            return merged

        c = cols or {}
        extras = (
            values(c.get("extras", {}), self.extras, {r: fb[r]["extras"] for r in rows_fb})
            if self.extras
            else NO_EXTRAS
        )
        if task == "classifier":
            assert self.classes is not None
            label = column(c.get("label"), "label", self.classes_arr.dtype)  # type: ignore[union-attr]
            names = column(c.get("class_name"), "class_name", object).astype(str)
            probs = column(c.get("probabilities"), "", _F32, len(self.classes))
            conf = column(c.get("confidence"), "confidence", _F32)
            return Prediction(
                label, names, probs, conf, self.name, self.version, mask, extras=extras
            )
        if task == "regressor":
            value = column(c.get("value"), "value", _F32)
            return ValuePrediction(value, self.name, self.version, mask)
        if task == "anomaly":
            flag = column(c.get("is_anomaly"), "is_anomaly", bool)
            score = column(c.get("score"), "score", _F32)
            return AnomalyPrediction(flag, score, self.name, self.version, mask, extras=extras)
        merged = values(c.get("outputs", {}), self.multi, fb)
        return MultiPrediction(merged, self.name, self.version, mask)


def _number(
    v: Any, feature: str, at: str, row: int | None, step: int | None = None, window: int = 0
) -> float:
    """One feature value as a finite float32-representable float, or a precise InputError
    (naming the feature, and the time step of a window when ``step`` is given)."""
    where = "" if step is None else f" at time step {step} (0 = oldest, {window - 1} = latest)"
    ok_type = isinstance(v, (int, float, np.integer, np.floating, np.bool_)) or (
        isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in _NUMERIC_KINDS
    )
    if not ok_type:
        shown = repr(v)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise InputError(
            f"{at}feature {feature!r}{where} is not numeric (got {type(v).__name__} {shown})",
            feature=feature,
            row=row,
            step=step,
        )
    try:
        f = float(v)
    except (OverflowError, ValueError, TypeError):
        f = _F32_MAX * 2  # an int too large for a float
    problem = (
        "is NaN"
        if math.isnan(f)
        else "is infinite"
        if math.isinf(f)
        else "is out of float32 range"
        if abs(f) > _F32_MAX
        else None
    )
    if problem is not None:
        raise InputError(
            f"{at}feature {feature!r}{where} {problem}", feature=feature, row=row, step=step
        )
    return f


def _valid(pairs: list[tuple[str, Any]]) -> dict[str, float]:
    """The valid values among (feature, value) pairs, by feature (fallback rules use them)."""
    values = {}
    for f, v in pairs:
        try:
            values[f] = _number(v, f, "", None)
        except InputError:
            pass
    return values


def _is_sequence(x: Any) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, (str, bytes))


def _is_vector(x: Any, min_len: int = 0) -> bool:
    """A 1-D array or a list/tuple (of at least ``min_len`` entries)."""
    if isinstance(x, np.ndarray):
        return x.ndim == 1 and x.shape[0] >= min_len
    return _is_sequence(x) and len(x) >= min_len


def _is_window(x: Any) -> bool:
    """Looks like one window of a batch: a dict, a 2-D array, or a sequence of sequences."""
    if isinstance(x, (Mapping, np.ndarray)):
        return isinstance(x, Mapping) or x.ndim == 2
    return _is_sequence(x) and len(x) > 0 and _is_vector(x[0])


def _describe_shape(x: Any) -> str:
    try:
        shape = np.shape(x)
    except Exception:  # ragged nesting
        return f"{len(x)} time steps of unequal length"
    return f"shape [{', '.join(str(d) for d in shape)}]"


# ---------------------------------------------------------------------------------------
class Predictor:
    """Serve one bundle with onnxruntime.

    >>> p = Predictor.load("bundles/direction")          # doctest: +SKIP
    >>> p.predict({"ret_1": 0.01, ...}).label             # doctest: +SKIP

    ``predict`` accepts a dict keyed by feature name, or numbers in schema order: 1-D for one
    row (scalar fields in the result), 2-D / a list of rows for a batch (array fields). A
    sequence model (``window`` > 0) takes one window ``[window, n_features]`` (oldest time
    step first) or a dict of ``window``-value sequences by feature name, and a batch as
    ``[N, window, n_features]`` or a list of windows.
    With ``fallback=True`` invalid rows are answered by the schema's fallback rule instead of
    raising :class:`InputError`. Thread-safe; ``reload`` swaps models atomically.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        intra_op_num_threads: int = 1,
        fallback: bool = False,
        log: PredictionLog | None = None,
        allow_unsealed: bool = False,
    ):
        self.intra_op_num_threads = intra_op_num_threads
        self.fallback = fallback
        self.log = log
        self.allow_unsealed = allow_unsealed
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._calls = self._rows = self._errors = self._fallbacks = 0
        self._reloads = self._reload_errors = 0
        self._m = _Model(path, intra_op_num_threads, allow_unsealed)
        if fallback and self._m.schema.fallback is None:
            logger.warning(
                "%s@%s: fallback requested but schema.json has none", self.name, self.version
            )

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        intra_op_num_threads: int = 1,
        fallback: bool = False,
        log: PredictionLog | None = None,
        allow_unsealed: bool = False,
    ) -> Predictor:
        """Load and check a bundle directory. Raises :class:`BundleError`.

        The bundle must be sealed (``schema.json``'s ``integrity`` block matches ``model.onnx``
        and the schema's own content; see :mod:`serving.integrity`). ``allow_unsealed=True``
        accepts a bundle without a seal (with a warning); a seal that does not match is
        refused either way."""
        return cls(
            path,
            intra_op_num_threads=intra_op_num_threads,
            fallback=fallback,
            log=log,
            allow_unsealed=allow_unsealed,
        )

    # -- introspection -------------------------------------------------------------------
    @property
    def schema(self) -> Schema:
        return self._m.schema

    @property
    def name(self) -> str:
        return self._m.name

    @property
    def version(self) -> str:
        return self._m.version

    @property
    def path(self) -> Path:
        return self._m.path

    @property
    def sealed_by(self) -> str | None:
        """Who sealed the served bundle (``train``, ``export``), None if it is unsealed."""
        seal = self._m.seal
        return None if seal is None else str(seal.get("sealed_by") or "unknown")

    @property
    def features(self) -> tuple[str, ...]:
        return self._m.names

    @property
    def task(self) -> str:
        return self._m.schema.task

    @property
    def window(self) -> int:
        """Time steps per window of a sequence model (0 for a model on single rows)."""
        return self._m.window

    @property
    def session(self) -> ort.InferenceSession:
        """The current onnxruntime session (for benchmarks and diagnostics)."""
        return self._m.session

    @property
    def stats(self) -> dict[str, int]:
        """Counters: calls, rows (answered), errors (calls that raised), fallbacks (rows
        answered by the fallback rule), reloads, reload_errors."""
        with self._lock:
            return {
                "calls": self._calls,
                "rows": self._rows,
                "errors": self._errors,
                "fallbacks": self._fallbacks,
                "reloads": self._reloads,
                "reload_errors": self._reload_errors,
            }

    def __repr__(self) -> str:
        return f"Predictor({self.name}@{self.version}, task={self.task}, path={str(self.path)!r})"

    # -- prediction ----------------------------------------------------------------------
    def predict(self, x: Any, fallback: bool | None = None) -> Any:
        """Predict one row or a batch; see the class docstring. Raises :class:`InputError`."""
        return self._predict(x, fallback, None)

    def _predict(self, x: Any, fallback: bool | None, routed_to: str | None) -> Any:
        m = self._m  # read the model reference exactly once per call
        log = self.log
        t0 = _perf_ns() if log is not None else 0
        fast = m.fast(x)
        if fast is not None:
            a, single = fast
            n_rows = a.shape[0]
            try:
                outs = m.run(m.fetch, {m.input_name: a})
                if single:
                    res = m.one(outs)
                else:
                    res = m.build_batch(m.batch(outs, n_rows), np.zeros(n_rows, bool))
            except Exception as e:
                self._count_error()
                if log is not None:
                    self._record(log, m, t0, x, None, routed_to, f"{type(e).__name__}: {e}")
                raise
            with self._lock:
                self._calls += 1
                self._rows += n_rows
            if log is not None:
                if m.window:  # a sequence model logs each window's last time step
                    feats = a[0, -1].copy() if single else a[:, -1].copy()
                else:
                    feats = a[0].copy() if single else a.copy()
                latency = _perf_ns() - t0
                log.put_nowait(
                    (time.time(), m.name, m.version, m.names, feats, res, latency, routed_to, None)
                )
            if routed_to is not None:
                res.routed_to = routed_to
            return res
        return self._slow(m, x, self.fallback if fallback is None else fallback, routed_to, t0)

    def _slow(self, m: _Model, x: Any, fallback: bool, routed_to: str | None, t0: int) -> Any:
        log = self.log
        single, rows = m.split_rows(x)
        use_fb = fallback and m.schema.fallback is not None
        good: list[int] = []
        arrays: list[np.ndarray] = []
        errors: dict[int, InputError] = {}
        for i, row in enumerate(rows):
            try:
                arrays.append(m.check_row(row, None if single else i))
                good.append(i)
            except InputError as e:
                if not use_fb:
                    self._count_error()
                    if log is not None:
                        self._record(log, m, t0, x, None, routed_to, str(e))
                    raise
                errors[i] = e
        if not rows:
            what = (
                f"window of shape [{m.window}, {m.n}]" if m.window else f"row of {m.n} features"
            )
            err = InputError(f"empty batch: expected at least one {what}")
            self._count_error()
            if log is not None:
                self._record(log, m, t0, x, None, routed_to, str(err))
            raise err
        try:
            if single:
                if arrays:
                    a = arrays[0].reshape(1, *m.in_shape)
                    res = m.one(m.run(m.fetch, {m.input_name: a}))
                else:
                    fb = m.schema.fallback
                    assert fb is not None
                    res = m.fallback_one(fb.answer(m.valid_values(rows[0])))
            else:
                cols = None
                if good:
                    a = np.stack(arrays)
                    cols = m.batch(m.run(m.fetch, {m.input_name: a}), len(good))
                if not errors:
                    assert cols is not None
                    res = m.build_batch(cols, np.zeros(len(rows), bool))
                else:
                    fb = m.schema.fallback
                    assert fb is not None
                    answers = {i: fb.answer(m.valid_values(rows[i])) for i in errors}
                    res = m.merge_batch(len(rows), good, cols, answers)
        except Exception as e:
            self._count_error()
            if log is not None:
                self._record(log, m, t0, x, None, routed_to, f"{type(e).__name__}: {e}")
            raise
        with self._lock:
            self._calls += 1
            self._rows += len(rows)
            self._fallbacks += len(errors)
        if errors:
            first = next(iter(errors.values()))
            logger.debug("%s@%s: fallback for %d row(s): %s", m.name, m.version, len(errors), first)
        if log is not None:
            if errors:
                feats = _raw(x)
                error: str | None = "; ".join(str(e) for e in list(errors.values())[:3])
            else:
                feats, error = (arrays[0] if single else np.stack(arrays)), None
                if m.window:  # the last time step, as on the fast path
                    feats = feats[..., -1, :]
            latency = _perf_ns() - t0
            log.put_nowait(
                (time.time(), m.name, m.version, m.names, feats, res, latency, routed_to, error)
            )
        if routed_to is not None:
            res.routed_to = routed_to
        return res

    def _count_error(self) -> None:
        with self._lock:
            self._calls += 1
            self._errors += 1

    @staticmethod
    def _record(
        log: PredictionLog, m: _Model, t0: int, x: Any, res: Any, routed: str | None, err: str
    ) -> None:
        """Log a call that raised (the input is kept raw: it could not be read)."""
        log.put_nowait(
            (time.time(), m.name, m.version, m.names, _raw(x), res, _perf_ns() - t0, routed, err)
        )

    # -- hot reload ----------------------------------------------------------------------
    def reload(self, path: str | Path, *, allow_schema_change: bool = False) -> None:
        """Load ``path`` fully, then atomically swap it in. On any problem raise
        :class:`BundleError` and keep serving the current model. The new bundle is verified as
        in :meth:`load` (seal, graph). A bundle whose contract differs (features or their
        order, feature-set version, task, classes or class names, window, outputs) is refused
        unless ``allow_schema_change``."""
        with self._reload_lock:
            try:
                new = _Model(path, self.intra_op_num_threads, self.allow_unsealed)
                if not allow_schema_change:
                    _check_compatible(self._m.schema, new.schema)
            except BundleError as e:
                with self._lock:
                    self._reload_errors += 1
                logger.error(
                    "reload of %s refused, still serving %s@%s: %s",
                    path,
                    self.name,
                    self.version,
                    e,
                )
                raise
            except Exception as e:  # anything unexpected is still a refused bundle
                with self._lock:
                    self._reload_errors += 1
                raise BundleError(f"cannot load bundle {path}: {e}") from e
            old = self._m
            self._m = new  # the single atomic swap
            with self._lock:
                self._reloads += 1
            logger.info("reloaded %s@%s -> %s@%s", old.name, old.version, new.name, new.version)


def _raw(x: Any) -> Any:
    """A snapshot of an invalid input for the log."""
    if isinstance(x, dict):
        return dict(x)
    if isinstance(x, np.ndarray):
        return x.copy()
    if isinstance(x, list):
        return list(x)
    return x


def _signature(s: Schema) -> dict[str, Any]:
    """The contract a running caller relies on; a reload must not change it silently."""
    return {
        "features": s.features,
        "feature_set_version": s.feature_set_version,
        "task": s.task,
        "classes": s.classes,
        "class_names": s.class_names,
        "window": s.window,
        "outputs": tuple(sorted((o.kind, o.key) for o in s.outputs)),
        "extras": tuple(sorted(o.key for o in s.extras)),
    }


def _check_compatible(old: Schema, new: Schema) -> None:
    a, b = _signature(old), _signature(new)
    diffs = [k for k in a if a[k] != b[k]]
    if not diffs:
        return
    details = []
    if "features" in diffs:
        added = [f for f in b["features"] if f not in set(a["features"])]
        removed = [f for f in a["features"] if f not in set(b["features"])]
        parts = []
        if added:
            parts.append(f"added {_names(added)}")
        if removed:
            parts.append(f"removed {_names(removed)}")
        details.append("features " + (", ".join(parts) if parts else "reordered"))
    for k in diffs:
        if k != "features":
            details.append(f"{k} {a[k]!r} -> {b[k]!r}")
    raise BundleError(
        f"bundle {new.model_name}@{new.model_version} is schema-incompatible with "
        f"{old.model_name}@{old.model_version}: {'; '.join(details)} "
        "(pass allow_schema_change=True to accept)"
    )
