"""``gate``: the σ-reversion entry gate of a crypto trading system.

Label: :func:`features.labels.sigma_reversion_label` (1 if, within the next N closes, price moves
toward its 20-bar mean by at least k·σ). Estimator: ``StandardScaler`` +
``GradientBoostingClassifier`` (the seed's pipeline), searched by the platform's Optuna on
purged walk-forward CV (the spec's search space). A signal is approved when
``P(revert) >= approve_threshold`` (default 0.65, written to schema.json as
``thresholds.approve``).

Exports: :meth:`GateClassifier.to_onnx` (float, skl2onnx, opset 17 / ai.onnx.ml 3) and
:meth:`GateClassifier.to_onnx_quantized` (``onnxruntime.quantization.quantize_dynamic``,
UInt8 weights). Dynamic quantization rewrites MatMul/Gemm-style weights only; the scaler
and the tree ensemble are left as they are, so the quantized model is the same size or a
few bytes larger and its outputs match the float model's. Both are checked for parity.

When a runtime cannot evaluate the model (invalid input), it may answer with
:data:`GATE_FALLBACK`, a rule in docs/bundle.md's fallback format on ``features.compute``
names: approve a long when price is far below its flow VWAP (``price_dist < -2``) with
bids deeper than asks (``depth_ratio > 0.2``), and the mirror image for a short.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from models.onnx_export import quantize_uint8, sklearn_to_onnx

APPROVE_THRESHOLD = 0.65
# Allowed |quantized - native| probability difference. Dynamic quantization leaves the scaler
# and the trees alone, so the measured difference equals the float graph's (~2e-7); the
# tolerance leaves room for a future linear stage whose weights would be quantized.
QUANTIZED_MAX_ABS_DIFF = 1e-3

GATE_FALLBACK: dict[str, Any] = {
    "kind": "rule",
    "rules": [
        {"when": [["price_dist", "<", -2.0], ["depth_ratio", ">", 0.2]], "output": {"label": 1, "confidence": 0.5}},
        {"when": [["price_dist", ">", 2.0], ["depth_ratio", "<", -0.2]], "output": {"label": 1, "confidence": 0.5}},
    ],
    "default": {"label": 0, "confidence": 0.0},
}

_OPERATORS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}


def apply_fallback(rule: dict[str, Any], row: dict[str, float]) -> dict[str, Any]:
    """Evaluate a docs/bundle.md fallback rule on one row of named features (reference semantics).

    Rules are tried in order; every condition must hold; a condition on a missing or
    non-finite feature does not hold.
    """
    for candidate in rule["rules"]:
        ok = True
        for name, op, value in candidate["when"]:
            x = row.get(name)
            if x is None or not np.isfinite(x) or not _OPERATORS[op](x, value):
                ok = False
                break
        if ok:
            return dict(candidate["output"])
    return dict(rule["default"])


class GateClassifier(ClassifierMixin, BaseEstimator):
    """StandardScaler + GradientBoostingClassifier; classes 0 reject, 1 approve."""

    def __init__(self, n_estimators: int = 100, learning_rate: float = 0.05, max_depth: int = 3,
                 subsample: float = 0.8, max_features: float = 0.3, min_samples_leaf: int = 50,
                 approve_threshold: float = APPROVE_THRESHOLD, random_state: int = 0) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        self.approve_threshold = approve_threshold
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> "GateClassifier":
        from sklearn.ensemble import GradientBoostingClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ValueError(f"gate labels must have two classes, got {self.classes_.tolist()}")
        self.model_ = make_pipeline(
            StandardScaler(),
            GradientBoostingClassifier(
                n_estimators=self.n_estimators, learning_rate=self.learning_rate, max_depth=self.max_depth,
                subsample=self.subsample, max_features=self.max_features,
                min_samples_leaf=self.min_samples_leaf, random_state=self.random_state,
            ),
        ).fit(X, np.searchsorted(self.classes_, y))
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(np.asarray(X, dtype=np.float32))

    def predict(self, X: np.ndarray) -> np.ndarray:
        proba = self.predict_proba(X)  # raises NotFittedError first when unfitted
        return self.classes_[np.argmax(proba, axis=1)]

    def approve(self, X: np.ndarray) -> np.ndarray:
        """True where ``P(approve) >= approve_threshold``."""
        return self.predict_proba(X)[:, 1] >= self.approve_threshold

    @property
    def feature_importances_(self) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_[-1].feature_importances_

    def to_onnx(self) -> onnx.ModelProto:
        """Outputs ``label`` (class index, int64 ``[N]``) and ``probabilities`` (float32 ``[N, 2]``)."""
        check_is_fitted(self, "model_")
        return sklearn_to_onnx(self.model_, self.n_features_in_)

    def to_onnx_quantized(self) -> onnx.ModelProto:
        """The float graph after ``quantize_dynamic(weight_type=QUInt8)`` (same inputs and outputs)."""
        return quantize_uint8(self.to_onnx())
