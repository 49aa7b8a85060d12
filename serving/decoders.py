"""Decode a model's outputs into typed results: one class per schema ``task``.

:func:`decoder_for` picks the class once, when the bundle is loaded. A decoder names the graph
outputs it needs (``fetch``), checks them against the graph and on the probe batch, and turns
session outputs into a result for one row (:meth:`~Decoder.one`) or for a batch
(:meth:`~Decoder.batch_result`). With the schema's fallback rule it also answers one invalid
row (:meth:`~Decoder.fallback_one`) and a batch that mixes model rows with fallback answers
(:meth:`~Decoder.merge`).

Classifier and anomaly models may have extra ``value`` outputs (``extras``, by meaning); the
base class decodes them next to the task's own fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from serving.errors import BundleError
from serving.inputs import F32, NUMERIC_KINDS
from serving.results import (
    NO_EXTRAS,
    AnomalyPrediction,
    MultiPrediction,
    Prediction,
    ValuePrediction,
)
from serving.schema import Schema

Columns = dict[str, Any]
"""A batch result's fields by name (``extras`` / ``outputs``: a dict of arrays by meaning)."""


class Decoder:
    """What every task shares: the fetch list, the model's name and version, the extras."""

    __slots__ = ("name", "version", "fetch", "extras")

    result: ClassVar[type]
    """The task's result class."""
    fields: ClassVar[tuple[str, ...]]
    """Its task fields, in the order the class takes them (then name, version, fallback)."""
    has_extras: ClassVar[bool] = False
    """Whether its results carry ``extras``."""

    def __init__(self, schema: Schema):
        self.name, self.version = schema.model_name, schema.model_version
        self.fetch: list[str] = []
        self._outputs(schema)
        # extras are fetched after the task's own outputs
        self.extras = tuple((o.key, self._want(o.name)) for o in schema.extras)

    def _want(self, output_name: str) -> int:
        """Fetch ``output_name``; return its index in the session's outputs."""
        self.fetch.append(output_name)
        return len(self.fetch) - 1

    # -- per task ----------------------------------------------------------------------------
    def _outputs(self, schema: Schema) -> None:
        """Register (``_want``) the task's own outputs."""
        raise NotImplementedError

    def check_graph(self, graph_outputs: Mapping[str, Any]) -> None:
        """Load-time check of the task's outputs against the graph's (onnxruntime NodeArg)."""

    def check_probe(self, outs: list, n: int) -> None:
        """Load-time check of the outputs of a probe batch of ``n`` rows."""
        for _, i in self.extras:
            self._numeric(outs, i)

    def one(self, outs: list) -> Any:
        """The result of one row."""
        raise NotImplementedError

    def batch(self, outs: list, n: int) -> Columns:
        """The columns of a batch of ``n`` rows."""
        raise NotImplementedError

    def build(self, cols: Columns, fallback: np.ndarray) -> Any:
        """The batch result from columns and the per-row ``fallback`` flags."""
        values = [cols[f] for f in self.fields]
        if self.has_extras:
            extras = cols.get("extras", NO_EXTRAS)
            return self.result(*values, self.name, self.version, fallback, extras=extras)
        return self.result(*values, self.name, self.version, fallback)

    def fallback_one(self, answer: Mapping[str, Any]) -> Any:
        """The result of one row answered by the fallback rule (a field the rule does not
        give, a classifier's probabilities, is None)."""
        values = [answer.get(f) for f in self.fields]
        if self.has_extras:
            extras = _fallback_values(answer["extras"])
            return self.result(*values, self.name, self.version, True, extras=extras)
        return self.result(*values, self.name, self.version, True)

    def _merge(self, m: _Merge, extras: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------
    def batch_result(self, outs: list, n: int) -> Any:
        """The result of a batch of ``n`` rows, all answered by the model."""
        return self.build(self.batch(outs, n), np.zeros(n, bool))

    def merge(
        self, n: int, ok: list[int], cols: Columns | None, fb: dict[int, Mapping[str, Any]]
    ) -> Any:
        """A batch result of ``n`` rows from model rows ``ok`` (columns ``cols``) and fallback
        answers ``fb`` (row -> answer)."""
        m = _Merge(n, ok, cols, fb)
        extras = (
            m.values(m.cols.get("extras", {}), self.extras, {r: fb[r]["extras"] for r in fb})
            if self.extras
            else NO_EXTRAS
        )
        return self._merge(m, extras)

    def _numeric(self, outs: list, i: int) -> None:
        if outs[i].dtype.kind not in NUMERIC_KINDS:
            raise BundleError(f"output {self.fetch[i]!r} is not numeric ({outs[i].dtype})")

    def _one_per_row(self, outs: list, i: int, n: int) -> None:
        if outs[i].size != n:
            raise BundleError(f"output {self.fetch[i]!r} must hold one value per row")

    @staticmethod
    def _values_one(pairs: tuple[tuple[str, int], ...], outs: list) -> dict[str, Any]:
        """Value outputs (``(key, index)`` pairs) of one row: a number, or a vector."""
        d = {}
        for key, i in pairs:
            row = outs[i][0]
            d[key] = row.item() if row.size == 1 else row
        return d

    @staticmethod
    def _values_batch(pairs: tuple[tuple[str, int], ...], outs: list, n: int) -> dict[str, Any]:
        """Value outputs of a batch: ``[n]``, or ``[n, width]`` for a vector per row."""
        d = {}
        for key, i in pairs:
            a = outs[i]
            d[key] = a.reshape(n) if a.size == n else a
        return d

    def _extras_batch(self, cols: Columns, outs: list, n: int) -> Columns:
        if self.extras:
            cols["extras"] = self._values_batch(self.extras, outs, n)
        return cols


def _vector(v: Any) -> Any:
    """A fallback value as served: a vector (a tuple in the schema) becomes a float32 array."""
    return np.array(v, dtype=F32) if isinstance(v, tuple) else v


def _fallback_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _vector(v) for k, v in values.items()}


class ClassifierDecoder(Decoder):
    """``Prediction``: probabilities, and the label from the decision threshold (binary), else
    from the model's label output, else the most probable class."""

    __slots__ = (
        "classes", "class_names", "classes_arr", "names_arr", "prob_i", "threshold", "label_i",
        "label_index",
    )
    result = Prediction
    fields = ("label", "class_name", "probabilities", "confidence")
    has_extras = True

    def _outputs(self, s: Schema) -> None:
        assert s.classes is not None and s.class_names is not None
        self.classes, self.class_names = s.classes, s.class_names
        self.classes_arr, self.names_arr = np.array(s.classes), np.array(s.class_names)
        self.prob_i = self._want(s.outputs_of("probabilities")[0].name)
        self.threshold: float | None = None
        self.label_i = -1
        self.label_index: dict[Any, int] | None = None
        if len(s.classes) == 2 and "decision" in s.thresholds:
            self.threshold = float(s.thresholds["decision"])
        elif s.outputs_of("label"):
            self.label_i = self._want(s.outputs_of("label")[0].name)
            self.label_index = {c: i for i, c in enumerate(s.classes)}

    def check_graph(self, graph_outputs: Mapping[str, Any]) -> None:
        pshape = graph_outputs[self.fetch[self.prob_i]].shape
        k = len(self.classes)
        if len(pshape) == 2 and isinstance(pshape[1], int) and pshape[1] != k:
            raise BundleError(
                f"schema lists {k} classes but the probabilities output has {pshape[1]} columns"
            )

    def check_probe(self, outs: list, n: int) -> None:
        p = outs[self.prob_i]
        if p.ndim != 2 or p.shape[1] != len(self.classes):
            raise BundleError(
                f"probabilities output has shape {p.shape}, expected [N, {len(self.classes)}]"
            )
        if self.label_index is not None:
            for v in outs[self.label_i].reshape(-1).tolist():
                if v not in self.label_index:
                    raise BundleError(f"model returned label {v!r}, not in schema classes")
        super().check_probe(outs, n)

    def one(self, outs: list) -> Prediction:
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
            self.version,
            extras=self._values_one(self.extras, outs) if self.extras else NO_EXTRAS,
        )

    def batch(self, outs: list, n: int) -> Columns:
        probs = outs[self.prob_i]
        if self.threshold is not None:
            k = (probs[:, 1] >= self.threshold).astype(np.intp)
        elif self.label_index is not None:
            idx = self.label_index
            k = np.fromiter((idx[v] for v in outs[self.label_i].reshape(-1).tolist()), np.intp, n)
        else:
            k = probs.argmax(axis=1)
        cols = {
            "label": self.classes_arr[k],
            "class_name": self.names_arr[k],
            "probabilities": probs,
            "confidence": probs[np.arange(n), k],
        }
        return self._extras_batch(cols, outs, n)

    def _merge(self, m: _Merge, extras: Mapping[str, Any]) -> Prediction:
        c = m.cols
        label = m.column(c.get("label"), "label", self.classes_arr.dtype)
        names = m.column(c.get("class_name"), "class_name", object).astype(str)
        probs = m.column(c.get("probabilities"), "", F32, len(self.classes))
        conf = m.column(c.get("confidence"), "confidence", F32)
        return Prediction(label, names, probs, conf, self.name, self.version, m.mask, extras=extras)


class RegressorDecoder(Decoder):
    """``ValuePrediction``: one value per row."""

    __slots__ = ("value_i",)
    result = ValuePrediction
    fields = ("value",)

    def _outputs(self, s: Schema) -> None:
        self.value_i = self._want(s.outputs_of("value")[0].name)

    def check_probe(self, outs: list, n: int) -> None:
        self._one_per_row(outs, self.value_i, n)
        self._numeric(outs, self.value_i)
        super().check_probe(outs, n)

    def one(self, outs: list) -> ValuePrediction:
        return ValuePrediction(outs[self.value_i].item(0), self.name, self.version)

    def batch(self, outs: list, n: int) -> Columns:
        return {"value": outs[self.value_i].reshape(n)}

    def _merge(self, m: _Merge, extras: Mapping[str, Any]) -> ValuePrediction:
        value = m.column(m.cols.get("value"), "value", F32)
        return ValuePrediction(value, self.name, self.version, m.mask)


class AnomalyDecoder(Decoder):
    """``AnomalyPrediction``: the score, flagged below ``thresholds.anomaly_score`` when the
    schema sets it, else by the model's label output (-1)."""

    __slots__ = ("score_i", "anomaly_threshold", "label_i")
    result = AnomalyPrediction
    fields = ("is_anomaly", "score")
    has_extras = True

    def _outputs(self, s: Schema) -> None:
        self.score_i = self._want(s.outputs_of("score")[0].name)
        self.anomaly_threshold: float | None = None
        self.label_i = -1
        if "anomaly_score" in s.thresholds:
            self.anomaly_threshold = float(s.thresholds["anomaly_score"])
        else:
            self.label_i = self._want(s.outputs_of("label")[0].name)

    def check_probe(self, outs: list, n: int) -> None:
        self._one_per_row(outs, self.score_i, n)
        self._numeric(outs, self.score_i)
        super().check_probe(outs, n)

    def one(self, outs: list) -> AnomalyPrediction:
        score = outs[self.score_i].item(0)
        if self.anomaly_threshold is not None:
            flag = score < self.anomaly_threshold
        else:
            flag = outs[self.label_i].item(0) == -1
        extras = self._values_one(self.extras, outs) if self.extras else NO_EXTRAS
        return AnomalyPrediction(flag, score, self.name, self.version, extras=extras)

    def batch(self, outs: list, n: int) -> Columns:
        score = outs[self.score_i].reshape(n)
        if self.anomaly_threshold is not None:
            flag = score < self.anomaly_threshold
        else:
            flag = outs[self.label_i].reshape(n) == -1
        return self._extras_batch({"is_anomaly": flag, "score": score}, outs, n)

    def _merge(self, m: _Merge, extras: Mapping[str, Any]) -> AnomalyPrediction:
        flag = m.column(m.cols.get("is_anomaly"), "is_anomaly", bool)
        score = m.column(m.cols.get("score"), "score", F32)
        return AnomalyPrediction(flag, score, self.name, self.version, m.mask, extras=extras)


class MultiDecoder(Decoder):
    """``MultiPrediction``: every ``value`` output by meaning."""

    __slots__ = ("multi",)
    result = MultiPrediction
    fields = ("outputs",)

    def _outputs(self, s: Schema) -> None:
        self.multi = tuple((o.key, self._want(o.name)) for o in s.outputs_of("value"))

    def check_probe(self, outs: list, n: int) -> None:
        for _, i in self.multi:
            self._numeric(outs, i)
        super().check_probe(outs, n)

    def one(self, outs: list) -> MultiPrediction:
        return MultiPrediction(self._values_one(self.multi, outs), self.name, self.version)

    def batch(self, outs: list, n: int) -> Columns:
        return {"outputs": self._values_batch(self.multi, outs, n)}

    def fallback_one(self, answer: Mapping[str, Any]) -> MultiPrediction:
        """The rule's answer holds the outputs by meaning."""
        return MultiPrediction(_fallback_values(answer), self.name, self.version, True)

    def _merge(self, m: _Merge, extras: Mapping[str, Any]) -> MultiPrediction:
        merged = m.values(m.cols.get("outputs", {}), self.multi, m.fb)
        return MultiPrediction(merged, self.name, self.version, m.mask)


DECODERS: dict[str, type[Decoder]] = {
    "classifier": ClassifierDecoder,
    "regressor": RegressorDecoder,
    "anomaly": AnomalyDecoder,
    "multi": MultiDecoder,
}
"""The decoder class of each schema ``task``."""


def decoder_for(schema: Schema) -> Decoder:
    """The decoder of the schema's task."""
    return DECODERS[schema.task](schema)


class _Merge:
    """A batch of ``n`` rows being assembled: rows ``ok`` from the model (columns ``cols``), the
    others from fallback answers ``fb`` (row -> answer). ``mask`` flags the fallback rows."""

    __slots__ = ("n", "ok", "cols", "fb", "mask")

    def __init__(
        self, n: int, ok: list[int], cols: Columns | None, fb: dict[int, Mapping[str, Any]]
    ):
        self.n, self.ok, self.cols, self.fb = n, ok, cols or {}, fb
        self.mask = np.zeros(n, dtype=bool)
        self.mask[list(fb)] = True

    def column(
        self,
        model_col: np.ndarray | None,
        key: str,
        dtype: Any,
        width: int = 0,
        answers: Mapping[int, Mapping[str, Any]] | None = None,
    ) -> np.ndarray:
        """One field for all rows: the model's column at rows ``ok``, the answers' ``key`` at
        the fallback rows (no ``key``: NaN there)."""
        answers = self.fb if answers is None else answers
        shape = (self.n, width) if width else (self.n,)
        if model_col is not None:
            dtype = model_col.dtype if model_col.dtype.kind != "U" else object
        if np.dtype(dtype).kind == "f":
            out = np.full(shape, np.nan, dtype=dtype)  # NaN where the model did not answer
        else:
            out = np.empty(shape, dtype=dtype)
        if model_col is not None and self.ok:
            out[self.ok] = model_col
        if key:
            for r in self.fb:
                v = answers[r][key]
                if v is not None:  # None: unknown (an extra the rule does not set)
                    out[r] = v
        return out

    def values(
        self,
        src: Mapping[str, np.ndarray],
        keys: tuple[tuple[str, int], ...],
        answers: Mapping[int, Mapping[str, Any]],
    ) -> dict[str, np.ndarray]:
        """Value outputs (multi outputs or extras): model columns merged with the rule's."""
        merged = {}
        for key, _ in keys:
            col = src.get(key)
            width = 0 if col is None or col.ndim == 1 else col.shape[1]
            if col is None:
                known = [a[key] for a in answers.values() if a[key] is not None]
                width = len(known[0]) if known and isinstance(known[0], tuple) else 0
            merged[key] = self.column(col, key, F32, width, answers)
        return merged
