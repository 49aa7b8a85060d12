"""``momentum``: SVM classifier of accelerating (1) vs decelerating (0) momentum.

Label: :func:`features.labels.momentum_acceleration` (``sign(P) * F > |P|`` with ``P``
the past and ``F`` the forward h-bar log return: the forward move continues the past one
with a larger magnitude).

Estimator: ``StandardScaler`` then ``CalibratedClassifierCV(SVC(rbf), cv=3, method="sigmoid")``.
In scikit-learn 1.9 ``SVC(probability=True)`` is deprecated in favour of
``CalibratedClassifierCV``, and skl2onnx 1.20 converts the calibrated pipeline (checked:
probabilities match to about 6e-7). An RBF SVM costs O(n²) or worse to fit, so at most
``max_train_rows`` evenly spaced training rows are used (deterministic, spread over the
whole window). ONNX outputs ``label`` (class index) and ``probabilities`` ``[N, 2]``.
"""

from __future__ import annotations

import numpy as np
import onnx
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from models.cv import evenly_spaced_rows
from models.onnx_export import sklearn_to_onnx


class MomentumSVM(ClassifierMixin, BaseEstimator):
    """Scaled, sigmoid-calibrated RBF SVM on a subsample of at most ``max_train_rows`` rows."""

    def __init__(self, C: float = 1.0, gamma: float | str = "scale", max_train_rows: int = 2000,
                 calibration_cv: int = 3, random_state: int = 0) -> None:
        self.C = C
        self.gamma = gamma
        self.max_train_rows = max_train_rows
        self.calibration_cv = calibration_cv
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> "MomentumSVM":
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ValueError(f"momentum labels must have two classes, got {self.classes_.tolist()}")
        rows = evenly_spaced_rows(len(X), self.max_train_rows)
        self.model_ = make_pipeline(
            StandardScaler(),
            CalibratedClassifierCV(SVC(C=self.C, gamma=self.gamma, kernel="rbf", random_state=self.random_state),
                                   cv=self.calibration_cv, method="sigmoid"),
        ).fit(X[rows], np.searchsorted(self.classes_, y[rows]))
        self.n_train_rows_ = len(rows)
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(np.asarray(X, dtype=np.float32))

    def predict(self, X: np.ndarray) -> np.ndarray:
        proba = self.predict_proba(X)  # raises NotFittedError first when unfitted
        return self.classes_[np.argmax(proba, axis=1)]

    def to_onnx(self) -> onnx.ModelProto:
        """Outputs ``label`` (class index, int64 ``[N]``) and ``probabilities`` (float32 ``[N, 2]``)."""
        check_is_fitted(self, "model_")
        return sklearn_to_onnx(self.model_, self.n_features_in_)
