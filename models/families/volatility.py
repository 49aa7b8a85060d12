"""``volatility``: LightGBM regressor of future realized volatility.

The label is :func:`models.families.labels.forward_realized_vol` (RMS of the next ``h`` 1-bar
log returns). GARCH(1,1)/EGARCH(1,1) baselines live in :mod:`models.baselines`.
"""

from __future__ import annotations

import numpy as np
import onnx
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from models.onnx_export import combine_models, lightgbm_to_onnx


class VolatilityRegressor(RegressorMixin, BaseEstimator):
    """LightGBM (L2) regressor of realized volatility, floored at a small positive value.

    The floor (half the 0.1% quantile of the training labels) keeps every forecast positive,
    which QLIKE needs. ONNX output ``value`` (float32 ``[N, 1]``) is the forecast in label units.
    """

    def __init__(self, n_estimators: int = 200, learning_rate: float = 0.05, num_leaves: int = 15,
                 min_child_samples: int = 50, subsample: float = 0.8, colsample_bytree: float = 0.7,
                 reg_lambda: float = 1.0, random_state: int = 0, n_jobs: int = 1) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: np.ndarray, y: np.ndarray) -> "VolatilityRegressor":
        from lightgbm import LGBMRegressor

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float64)
        if np.any(~np.isfinite(y)) or np.any(y < 0):
            raise ValueError("volatility labels must be finite and non-negative")
        self.model_ = LGBMRegressor(
            n_estimators=self.n_estimators, learning_rate=self.learning_rate, num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples, subsample=self.subsample, subsample_freq=1,
            colsample_bytree=self.colsample_bytree, reg_lambda=self.reg_lambda,
            random_state=self.random_state, n_jobs=self.n_jobs, deterministic=True, force_row_wise=True,
            verbosity=-1,
        ).fit(X, y)
        positive = y[y > 0]
        self.floor_ = float(np.float32(0.5 * np.quantile(positive, 0.001))) if positive.size else 1e-12
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "model_")
        raw = self.model_.predict(np.asarray(X, dtype=np.float32))
        return np.maximum(raw, self.floor_)

    @property
    def feature_importances_(self) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.booster_.feature_importance(importance_type="gain")

    def to_onnx(self) -> onnx.ModelProto:
        """Outputs ``value`` (float32 ``[N, 1]``): ``max(lightgbm, floor_)``."""
        from onnx import TensorProto, helper, numpy_helper

        check_is_fitted(self, "model_")
        part = lightgbm_to_onnx(self.model_, self.n_features_in_)
        raw = f"lgbm/{part.graph.output[0].name}"
        return combine_models(
            [("lgbm", part)],
            nodes=[helper.make_node("Max", [raw, "floor"], ["value"])],
            initializers=[numpy_helper.from_array(np.array([self.floor_], dtype=np.float32), "floor")],
            outputs=[helper.make_tensor_value_info("value", TensorProto.FLOAT, [None, 1])],
            name="volatility",
        )
