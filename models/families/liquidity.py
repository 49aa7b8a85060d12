"""The liquidity family: expected volume over the next 6, 12 and 24 hours, one model per symbol.

Targets are ``ln(1 + volume summed over the next H hours)`` (``features.labels.liquidity_targets``),
so the RMSE of a forecast is its RMSLE on volume. The inputs that carry the signal are the
time features (hour of day, day of week, the NYSE holiday flags of ``features.calendar``) and
the log-volume trend terms (``log_vol_*``). The estimator is one LightGBM booster per horizon
(:class:`models.families.multi_output.MultiTargetBoosters`), exported as one ONNX graph with one
output per horizon. A runtime turns an output into volume with ``exp(value) - 1``; the seed's
execution engine refuses an order larger than a tenth of it.
"""

from __future__ import annotations

import numpy as np

from models.families.multi_output import MultiTargetBoosters


class LiquidityRegressor(MultiTargetBoosters):
    """Log-volume forecasts at several horizons (columns of ``y``)."""

    def expected_volume(self, X: np.ndarray) -> np.ndarray:
        """Forecast volume (not logged), ``[n, n_horizons]``."""
        return np.expm1(self.predict(X))
