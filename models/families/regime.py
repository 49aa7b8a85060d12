"""``regime``: 5-class LightGBM classifier of the coming market regime.

Classes (index → name, :data:`REGIME_NAMES`): 0 trend_up, 1 trend_down, 2 range_bound,
3 high_volatility, 4 consolidation. The label rule is
:func:`features.labels.regime_label` (forward-looking window). ``predict`` returns the
class, ``predict_proba`` the distribution; the ONNX graph outputs ``label`` (class index,
int64 ``[N]``) and ``probabilities`` (float32 ``[N, 5]``), as the direction family does.
"""

from __future__ import annotations

import numpy as np
import onnx

from features.labels import REGIME_NAMES
from models.families.direction import DirectionClassifier
from models.onnx_export import dynamic_batch_outputs

__all__ = ["REGIME_NAMES", "RegimeClassifier"]


class RegimeClassifier(DirectionClassifier):
    """LightGBM multiclass classifier on regime labels 0..4 (same engine, parameters and export as
    ``direction``; only the ONNX output shapes are fixed up for a dynamic batch)."""

    def to_onnx(self) -> onnx.ModelProto:
        """``label`` (class index, int64 ``[N]``) and ``probabilities`` (float32 ``[N, 5]``)."""
        return dynamic_batch_outputs(super().to_onnx())

    def predict(self, X: np.ndarray) -> np.ndarray:
        proba = self.predict_proba(X)  # raises NotFittedError first when unfitted
        return self.classes_[np.argmax(proba, axis=1)]
