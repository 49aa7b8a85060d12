"""``regime``: 5-class LightGBM classifier of the coming market regime.

Classes (index → name, :data:`REGIME_NAMES`): 0 trend_up, 1 trend_down, 2 range_bound,
3 high_volatility, 4 consolidation. The label rule is
:func:`models.families.labels.regime_labels` (forward-looking window). ``predict`` returns the
class, ``predict_proba`` the distribution; the ONNX graph outputs ``label`` (class index,
int64 ``[N]``) and ``probabilities`` (float32 ``[N, 5]``), as the direction family does.
"""

from __future__ import annotations

import onnx

from models.families.direction import DirectionClassifier
from models.families.labels import REGIME_NAMES
from models.onnx_export import dynamic_batch_outputs

__all__ = ["REGIME_NAMES", "RegimeClassifier"]


class RegimeClassifier(DirectionClassifier):
    """LightGBM multiclass classifier on regime labels 0..4 (same engine and export as ``direction``)."""

    def __init__(self, n_estimators: int = 200, learning_rate: float = 0.05, num_leaves: int = 15,
                 min_child_samples: int = 50, subsample: float = 0.8, colsample_bytree: float = 0.7,
                 reg_lambda: float = 1.0, random_state: int = 0, n_jobs: int = 1) -> None:
        super().__init__(n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves,
                         min_child_samples=min_child_samples, subsample=subsample,
                         colsample_bytree=colsample_bytree, reg_lambda=reg_lambda,
                         random_state=random_state, n_jobs=n_jobs)

    def to_onnx(self) -> onnx.ModelProto:
        """``label`` (class index, int64 ``[N]``) and ``probabilities`` (float32 ``[N, 5]``)."""
        return dynamic_batch_outputs(super().to_onnx())
