"""``Predictor``: a thin, safe onnxruntime runtime for one bundle (model.onnx + schema.json).

The bundle is loaded and checked once (:class:`serving.model.LoadedModel`). A call converts
its input (:mod:`serving.inputs`): well-formed input takes the fast path, a few numpy calls
before ``session.run``; anything else is checked item by item, and raises an
:class:`InputError` or, with ``fallback``, is answered by the schema's rule. The task's decoder
(:mod:`serving.decoders`) turns the outputs into a typed result. Both paths count and log
their calls in one place.

``reload`` builds a new loaded model and swaps the reference; every call reads the reference
exactly once.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from serving.errors import BundleError, InputError
from serving.inputs import InputConverter
from serving.log import PredictionLog
from serving.model import LoadedModel
from serving.schema import Schema, check_compatible

logger = logging.getLogger(__name__)

_perf_ns = time.perf_counter_ns


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
        self._m = LoadedModel(path, intra_op_num_threads, allow_unsealed)
        self._patterns: tuple[LoadedModel, Any] | None = None  # (model, its PatternLibrary)
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
        return self._m.inputs.names

    @property
    def task(self) -> str:
        return self._m.schema.task

    @property
    def window(self) -> int:
        """Time steps per window of a sequence model (0 for a model on single rows)."""
        return self._m.inputs.window

    @property
    def inputs(self) -> InputConverter:
        """The input rules of the served model (what is one item, what is a batch)."""
        return self._m.inputs

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

    def similar(self, window: Any, k: int | None = None, *, exact: bool = False, nprobe: int | None = None) -> Any:
        """The ``k`` library windows most similar to ``window`` and the share of each of their
        outcomes (pattern bundles; :mod:`serving.patterns`). A library with an IVF index is searched
        through it (``nprobe`` lists, the index's own by default) unless ``exact``. Raises
        :class:`InputError` on bad input, :class:`BundleError` if the bundle carries no pattern library."""
        from serving.patterns import PatternLibrary

        m = self._m  # read the model reference exactly once per call
        cached = self._patterns
        if cached is None or cached[0] is not m:
            cached = self._patterns = (m, PatternLibrary.from_schema(m.schema))
        library = cached[1]
        fast = m.inputs.fast(window)
        if fast is not None and not fast[1]:
            raise InputError("similar() takes one window, not a batch")
        a = fast[0] if fast is not None else m.inputs.check(window, None).reshape(1, *m.inputs.shape)
        (embedding,) = m.run([library.embedding_output], {m.input_name: a})
        return library.match(embedding[0], library.default_k if k is None else k, m.name, m.version,
                             exact=exact, nprobe=nprobe)

    def _predict(self, x: Any, fallback: bool | None, routed_to: str | None) -> Any:
        m = self._m  # read the model reference exactly once per call
        t0 = _perf_ns() if self.log is not None else 0
        fast = m.inputs.fast(x)
        if fast is None:
            return self._slow(m, x, self.fallback if fallback is None else fallback, routed_to, t0)
        a, single = fast
        return self._answer(m, x, a, single, routed_to, t0)

    def _answer(
        self, m: LoadedModel, x: Any, a: np.ndarray, single: bool, routed_to: str | None, t0: int
    ) -> Any:
        """Run the model on a valid batch array ``a`` (of one item when ``single``)."""
        n_rows = a.shape[0]
        try:
            outs = m.run(m.fetch, {m.input_name: a})
            res = m.decoder.one(outs) if single else m.decoder.batch_result(outs, n_rows)
        except Exception as e:
            self._failed(m, t0, x, routed_to, f"{type(e).__name__}: {e}")
            raise
        features = m.inputs.logged(a, single) if self.log is not None else None
        return self._answered(m, t0, routed_to, res, n_rows, 0, features, None)

    def _slow(self, m: LoadedModel, x: Any, fallback: bool, routed_to: str | None, t0: int) -> Any:
        """Check each item exactly. Raise the first :class:`InputError`, or with ``fallback``
        (and a rule in the schema) answer the invalid items by the rule."""
        inputs = m.inputs
        single, items = inputs.split(x)
        rule = m.schema.fallback if fallback else None
        good: list[int] = []
        arrays: list[np.ndarray] = []
        errors: dict[int, InputError] = {}
        for i, item in enumerate(items):
            try:
                arrays.append(inputs.check(item, None if single else i))
                good.append(i)
            except InputError as e:
                if rule is None:
                    self._failed(m, t0, x, routed_to, str(e))
                    raise
                errors[i] = e
        if not items:
            err = inputs.empty_batch()
            self._failed(m, t0, x, routed_to, str(err))
            raise err
        if not errors:
            a = arrays[0].reshape(1, *inputs.shape) if single else np.stack(arrays)
            return self._answer(m, x, a, single, routed_to, t0)
        assert rule is not None
        decoder = m.decoder
        try:
            if single:
                res = decoder.fallback_one(rule.answer(inputs.values(items[0])))
            else:
                cols = None
                if good:
                    outs = m.run(m.fetch, {m.input_name: np.stack(arrays)})
                    cols = decoder.batch(outs, len(good))
                answers = {i: rule.answer(inputs.values(items[i])) for i in errors}
                res = decoder.merge(len(items), good, cols, answers)
        except Exception as e:
            self._failed(m, t0, x, routed_to, f"{type(e).__name__}: {e}")
            raise
        first = next(iter(errors.values()))
        logger.debug("%s@%s: fallback for %d row(s): %s", m.name, m.version, len(errors), first)
        error = "; ".join(str(e) for e in list(errors.values())[:3])
        features = _raw(x) if self.log is not None else None
        return self._answered(m, t0, routed_to, res, len(items), len(errors), features, error)

    # -- bookkeeping: counters and the prediction log, for every call ---------------------
    def _answered(
        self,
        m: LoadedModel,
        t0: int,
        routed_to: str | None,
        res: Any,
        rows: int,
        fallbacks: int,
        features: Any,
        error: str | None,
    ) -> Any:
        """Count an answered call, log it, and name the canary arm on the result."""
        with self._lock:
            self._calls += 1
            self._rows += rows
            self._fallbacks += fallbacks
        if self.log is not None:
            self._record(m, t0, features, res, routed_to, error)
        if routed_to is not None:
            res.routed_to = routed_to
        return res

    def _failed(self, m: LoadedModel, t0: int, x: Any, routed_to: str | None, error: str) -> None:
        """Count a call that raised, and log it with its raw input (it could not be read)."""
        with self._lock:
            self._calls += 1
            self._errors += 1
        if self.log is not None:
            self._record(m, t0, _raw(x), None, routed_to, error)

    def _record(
        self, m: LoadedModel, t0: int, features: Any, res: Any, routed: str | None, err: str | None
    ) -> None:
        assert self.log is not None
        self.log.put_nowait(
            (time.time(), m.name, m.version, m.inputs.names, features, res, _perf_ns() - t0,
             routed, err)
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
                new = LoadedModel(path, self.intra_op_num_threads, self.allow_unsealed)
                if not allow_schema_change:
                    check_compatible(self._m.schema, new.schema)
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
    """A snapshot of an input the log keeps as given."""
    if isinstance(x, dict):
        return dict(x)
    if isinstance(x, np.ndarray):
        return x.copy()
    if isinstance(x, list):
        return list(x)
    return x
