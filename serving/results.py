"""Typed prediction results, one class per schema ``task``.

For one row the fields are Python scalars (``probabilities`` is a 1-D array); for a batch
they are numpy arrays with one entry per row. ``fallback`` tells which answers came from the
schema's rule-based fallback; ``routed_to`` is set by :class:`serving.CanaryRouter`.
``extras`` (classifier and anomaly results) holds the model's extra ``value`` outputs by
meaning, e.g. a sequence model's ``expected_return``; it is empty (a shared read-only
mapping) for models without them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np


class _NoExtras(Mapping):
    """An empty, read-only, hashable mapping: the ``extras`` of results of models without extra
    outputs. One shared instance is the field's default, so plain results cost nothing more."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"


NO_EXTRAS: Mapping[str, Any] = _NoExtras()


def jsonable(v: Any) -> Any:
    """Convert numpy values to plain JSON-safe Python (non-finite floats become ``None``)."""
    if isinstance(v, np.ndarray):
        v = v.tolist()
    elif isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (list, tuple)):
        return [jsonable(e) for e in v]
    if isinstance(v, Mapping):
        return {str(k): jsonable(e) for k, e in v.items()}
    return v


class _Result:
    __slots__ = ()

    @property
    def is_batch(self) -> bool:
        """True when the input was a batch (fields hold one entry per row)."""
        return isinstance(self.fallback, np.ndarray)  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict of all fields."""
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(slots=True, eq=False)
class Prediction(_Result):
    """Classifier result. ``confidence`` is the probability of the predicted class (the max
    probability unless a decision threshold moved the label). ``probabilities`` is ``None``
    (one row) or a NaN row (batch) for fallback answers. ``extras`` maps the meaning of each
    extra ``value`` output to its value (a number per row, or a vector); a fallback answer
    has ``None`` (one row) or NaN (batch) there unless its rule sets it."""

    label: Any
    class_name: Any
    probabilities: np.ndarray | None
    confidence: Any
    model_name: str
    model_version: str
    fallback: Any = False
    routed_to: str | None = None
    extras: Mapping[str, Any] = NO_EXTRAS


@dataclass(slots=True, eq=False)
class ValuePrediction(_Result):
    """Regressor result."""

    value: Any
    model_name: str
    model_version: str
    fallback: Any = False
    routed_to: str | None = None


@dataclass(slots=True, eq=False)
class AnomalyPrediction(_Result):
    """Anomaly-detector result (``score``: lower is more abnormal, scikit-learn convention).
    ``extras`` as for :class:`Prediction` (e.g. ``anomaly_score``, higher is more abnormal)."""

    is_anomaly: Any
    score: Any
    model_name: str
    model_version: str
    fallback: Any = False
    routed_to: str | None = None
    extras: Mapping[str, Any] = NO_EXTRAS


@dataclass(slots=True, eq=False)
class MultiPrediction(_Result):
    """Multi-output result: ``outputs`` maps each output's meaning to its value(s). Also
    readable like a dict: ``result["expected_return"]``."""

    outputs: dict[str, Any]
    model_name: str
    model_version: str
    fallback: Any = False
    routed_to: str | None = None

    def __getitem__(self, key: str) -> Any:
        return self.outputs[key]

    def __contains__(self, key: object) -> bool:
        return key in self.outputs

    def __iter__(self):
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)

    def keys(self):
        return self.outputs.keys()

    def items(self):
        return self.outputs.items()


Result = Prediction | ValuePrediction | AnomalyPrediction | MultiPrediction
