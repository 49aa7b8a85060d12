"""Scores shared by the search (CV) and validation (holdout)."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def classifier_score(metric: str, y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> float:
    """Primary classifier metric: ``auc`` (one-vs-rest macro when multiclass) or ``log_loss``."""
    if metric == "auc":
        if len(np.unique(y_true)) < 2:
            return 0.5
        if n_classes == 2:
            return float(skm.roc_auc_score(y_true, proba[:, 1]))
        present = np.unique(y_true).astype(int)
        if len(present) < n_classes:  # a fold without some class: score the classes present
            sub = proba[:, present] / proba[:, present].sum(axis=1, keepdims=True)
            return float(skm.roc_auc_score(y_true, sub, multi_class="ovr", labels=present)) if len(present) > 2 \
                else float(skm.roc_auc_score(y_true == present[1], sub[:, 1]))
        return float(skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=np.arange(n_classes)))
    if metric == "log_loss":
        return float(skm.log_loss(y_true, proba, labels=np.arange(n_classes)))
    raise ValueError(f"unknown classifier metric {metric!r}")


def regressor_score(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """``rmse``, ``mae``, ``rmsle`` or ``qlike``; for ``[n, n_targets]`` labels, the mean of the per-target scores.

    ``rmsle`` is for labels that are already ``ln(1 + x)`` (the liquidity targets): it is their RMSE.
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim == 2:
        if y_pred.shape != y_true.shape:
            raise ValueError(f"forecasts of shape {y_pred.shape} for labels of shape {y_true.shape}")
        return float(np.mean([regressor_score(metric, y_true[:, k], y_pred[:, k]) for k in range(y_true.shape[1])]))
    if metric in ("rmse", "rmsle"):
        return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))
    if metric == "mae":
        return float(np.mean(np.abs(y_true - y_pred)))
    if metric == "qlike":  # labels and forecasts are volatilities: QLIKE compares variances
        return qlike(np.square(y_true), np.square(y_pred))
    raise ValueError(f"unknown regressor metric {metric!r}")


def event_auc(is_event: np.ndarray, anomaly_score: np.ndarray) -> float:
    """AUC of the anomaly score against known events (NaN when the rows hold one class only)."""
    is_event = np.asarray(is_event).astype(int)
    if is_event.min() == is_event.max():
        return float("nan")
    return float(skm.roc_auc_score(is_event, anomaly_score))


def primary_score(spec: object, y_true: np.ndarray, output: np.ndarray) -> float:
    """The spec's primary metric on the model's primary output (probabilities, value or anomaly score)."""
    task, metric = getattr(spec, "task"), getattr(spec, "metric")
    if task == "classifier":
        return classifier_score(metric, y_true, output, len(getattr(spec, "class_names")))
    if task == "anomaly":
        return event_auc(y_true, output)
    return regressor_score(metric, y_true, output)


def qlike(realized_var: np.ndarray, forecast_var: np.ndarray) -> float:
    """QLIKE loss on variances (lower is better), robust to noisy volatility proxies."""
    f = np.maximum(np.asarray(forecast_var, dtype=float), 1e-12)
    r = np.maximum(np.asarray(realized_var, dtype=float), 1e-12)
    return float(np.mean(r / f - np.log(r / f) - 1.0))
