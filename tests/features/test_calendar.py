"""The holiday features: NYSE holidays from the holidays package, and the point-in-time columns."""

from __future__ import annotations

import numpy as np
import pandas as pd

import features
from features.calendar import holiday_flags
from features.synthetic import synthetic_bars


def _epoch_days(dates: list[str]) -> np.ndarray:
    return (pd.DatetimeIndex(dates).asi8 // (86_400 * 10**9)).astype(np.int64)


def test_holiday_flags_follow_the_nyse_calendar():
    holiday, next_day = holiday_flags(_epoch_days(["2024-07-04", "2024-07-03", "2024-07-05", "2024-12-24",
                                                   "2024-12-25"]))
    assert holiday.tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert next_day.tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]


def test_holiday_flags_of_no_days_are_empty():
    holiday, next_day = holiday_flags(np.array([], dtype=np.int64))
    assert holiday.shape == next_day.shape == (0,)


def test_the_feature_set_has_the_log_volume_and_holiday_columns():
    bars = synthetic_bars(600, freq="15min", start="2024-07-01", microstructure=False)
    frame = features.compute(bars)
    for name in ("log_vol_1", "log_vol_10", "log_vol_60", "log_vol_240", "log_vol_trend_10_240", "holiday",
                 "holiday_next_day"):
        assert name in frame.columns
    july4 = frame.index.normalize() == pd.Timestamp("2024-07-04", tz="UTC")
    assert (frame.loc[july4, "holiday"] == 1).all() and (frame.loc[~july4, "holiday"] == 0).all()
    np.testing.assert_allclose(frame["log_vol_1"], np.log1p(bars["volume"]), rtol=1e-12)
    mean_10 = bars["volume"].rolling(10).mean()
    np.testing.assert_allclose(frame["log_vol_10"].iloc[20:], np.log1p(mean_10).iloc[20:], rtol=1e-9)
    np.testing.assert_allclose(frame["log_vol_trend_10_240"].iloc[300:],
                               (frame["log_vol_10"] - frame["log_vol_240"]).iloc[300:], rtol=1e-12)
