"""``risk``: RandomForestRegressor giving a 0-100 risk score.

The label (:func:`features.labels.risk_percentile`) is already on the 0-100 scale: the
percentile of the forward maximum adverse excursion among the trailing 2,000 bars. The forest
regresses it; predictions are clipped to [0, 100] (a forest's average of 0-100 targets stays
inside anyway; the clip guards the contract). ONNX: skl2onnx's forest graph plus a ``Clip``;
output ``value`` (float32 ``[N, 1]``).
"""

from __future__ import annotations

import numpy as np
import onnx
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from models.onnx_export import combine_models, sklearn_to_onnx

RISK_MIN, RISK_MAX = 0.0, 100.0


class RiskScorer(RegressorMixin, BaseEstimator):
    """Random forest on a 0-100 risk label; ``predict`` returns scores in [0, 100]."""

    def __init__(self, n_estimators: int = 100, max_depth: int = 8, min_samples_leaf: int = 50,
                 max_features: float = 0.3, max_samples: float | None = 0.7, random_state: int = 0,
                 n_jobs: int = 1) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_samples = max_samples
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: np.ndarray, y: np.ndarray) -> "RiskScorer":
        from sklearn.ensemble import RandomForestRegressor

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float64)
        if np.any(~np.isfinite(y)) or y.min() < RISK_MIN or y.max() > RISK_MAX:
            raise ValueError("risk labels must be finite scores in [0, 100] (see labels.risk_percentile)")
        self.model_ = RandomForestRegressor(
            n_estimators=self.n_estimators, max_depth=self.max_depth, min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features, max_samples=self.max_samples, random_state=self.random_state,
            n_jobs=self.n_jobs,
        ).fit(X, y)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "model_")
        return np.clip(self.model_.predict(np.asarray(X, dtype=np.float32)), RISK_MIN, RISK_MAX)

    @property
    def feature_importances_(self) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.feature_importances_

    def to_onnx(self) -> onnx.ModelProto:
        """Output ``value`` (float32 ``[N, 1]``): the forest's prediction clipped to [0, 100]."""
        from onnx import TensorProto, helper, numpy_helper

        check_is_fitted(self, "model_")
        part = sklearn_to_onnx(self.model_, self.n_features_in_)
        return combine_models(
            [("forest", part)],
            nodes=[helper.make_node("Clip", [f"forest/{part.graph.output[0].name}", "lo", "hi"], ["value"])],
            initializers=[numpy_helper.from_array(np.array(RISK_MIN, dtype=np.float32), "lo"),
                          numpy_helper.from_array(np.array(RISK_MAX, dtype=np.float32), "hi")],
            outputs=[helper.make_tensor_value_info("value", TensorProto.FLOAT, [None, 1])],
            name="risk",
        )
