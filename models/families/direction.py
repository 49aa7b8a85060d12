"""``direction``: LightGBM classifier of the sign of the forward return (binary or 3-class)."""

from __future__ import annotations

import numpy as np
import onnx
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from models.families.boosting import booster_kwargs
from models.onnx_export import lightgbm_to_onnx


class DirectionClassifier(ClassifierMixin, BaseEstimator):
    """LightGBM direction classifier. Classes are encoded 0..K-1 (down/up or down/flat/up)."""

    def __init__(self, n_estimators: int = 200, learning_rate: float = 0.05, num_leaves: int = 15,
                 min_child_samples: int = 50, subsample: float = 0.8, colsample_bytree: float = 0.7,
                 reg_lambda: float = 1.0, max_bin: int = 63, random_state: int = 0, n_jobs: int = 1) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.max_bin = max_bin
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: np.ndarray, y: np.ndarray) -> "DirectionClassifier":
        from lightgbm import LGBMClassifier

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"direction labels have a single class {self.classes_.tolist()}; widen the window")
        self.model_ = LGBMClassifier(**booster_kwargs(self)).fit(X, np.searchsorted(self.classes_, y))
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(np.asarray(X, dtype=np.float32))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    @property
    def feature_importances_(self) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.booster_.feature_importance(importance_type="gain")

    def to_onnx(self) -> onnx.ModelProto:
        """ONNX graph with outputs ``label`` (class index) and ``probabilities``."""
        check_is_fitted(self, "model_")
        return lightgbm_to_onnx(self.model_, self.n_features_in_)
