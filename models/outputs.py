"""Which output of a model is scored: natively and in its ONNX graph, per task."""

from __future__ import annotations

from typing import Any

import numpy as np


def primary_output_name(spec: Any) -> str:
    """ONNX output scored by the spec's primary metric."""
    if spec.task == "classifier":
        return "probabilities"
    outputs = spec.schema_extras.get("outputs") or [{"name": "variable", "kind": "value"}]
    if spec.task == "anomaly":
        return next(o["name"] for o in outputs if o.get("meaning") == "anomaly_score")
    return next(o["name"] for o in outputs if o["kind"] == "value")


def full_proba(model: Any, X: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over all of the spec's classes, even when a training fold missed one."""
    proba = np.asarray(model.predict_proba(X))
    if proba.shape[1] == n_classes:
        return proba
    full = np.zeros((len(X), n_classes))
    full[:, np.asarray(model.classes_, dtype=int)] = proba
    return full


def native_output(spec: Any, model: Any, X: np.ndarray) -> np.ndarray:
    """The native estimator's counterpart of :func:`primary_output_name`."""
    if spec.task == "classifier":
        return np.asarray(model.predict_proba(X))
    if spec.task == "anomaly":
        return np.asarray(model.score(X)).reshape(-1)
    if getattr(spec, "targets", ()):  # multi-output regressors: [n, n_targets]
        return np.asarray(model.predict(X)).reshape(len(X), len(spec.targets))
    return np.asarray(model.predict(X)).reshape(-1)


def build_estimator(spec: Any, params: dict[str, Any], feature_names: list[str]) -> Any:
    """The spec's estimator, told its feature names when it takes them (anomaly type attribution)."""
    estimator = spec.build(params)
    if "feature_names" in estimator.get_params():
        estimator.set_params(feature_names=tuple(feature_names))
    if getattr(spec, "targets", ()) and "output_names" in estimator.get_params():
        estimator.set_params(output_names=tuple(spec.targets))  # one named ONNX output per target
    return estimator


def fit_estimator(spec: Any, estimator: Any, X: np.ndarray, y: np.ndarray, next_return: np.ndarray | None = None
                  ) -> Any:
    """Fit; sequence models also learn the expected return from the bar's forward return."""
    if spec.window and next_return is not None:
        return estimator.fit(X, y, forward_return=next_return)
    return estimator.fit(X, y)
