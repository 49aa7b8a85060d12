"""No look-ahead: a feature's value at bar t never changes when later bars are appended,
removed or altered. Checked on real daily S&P 500 bars and on 1-minute bars with every
microstructure column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import features

# Truncating an array can move an element between numpy's SIMD loop and its scalar
# remainder (np.log, np.sin), which may change the last bit; nothing more is allowed.
ROUNDING = 1e-12


def assert_unchanged(before: pd.DataFrame, after: pd.DataFrame, t: int) -> None:
    expected, actual = before.iloc[: t + 1].to_numpy(), after.iloc[: t + 1].to_numpy()
    assert np.array_equal(np.isnan(expected), np.isnan(actual)), f"NaN pattern changed up to bar {t}"
    error = np.nan_to_num(np.abs(actual - expected) / np.maximum(1.0, np.abs(expected)))
    row, column = np.unravel_index(np.argmax(error), error.shape)
    assert error[row, column] <= ROUNDING, f"{before.columns[column]} at bar {row} changed by {error[row, column]:.3g}"


def scramble_after(bars: pd.DataFrame, t: int, seed: int) -> pd.DataFrame:
    """Bars after t replaced by a different, still valid market (prices ×0.5..2, volumes
    and microstructure columns shuffled)."""
    rng = np.random.default_rng(seed)
    altered = bars.copy()
    tail = altered.iloc[t + 1 :]
    factor = rng.uniform(0.5, 2.0, len(tail))
    for column in ("open", "high", "low", "close"):
        altered.iloc[t + 1 :, altered.columns.get_loc(column)] = tail[column].to_numpy() * factor
    for column in [name for name in altered.columns if name not in ("open", "high", "low", "close")]:
        altered.iloc[t + 1 :, altered.columns.get_loc(column)] = rng.permutation(tail[column].to_numpy())
    return altered


@pytest.mark.parametrize("data", ["sp500", "minute"])
def test_truncating_the_future_changes_nothing_before(data, request):
    bars, full = request.getfixturevalue(f"{data}_bars"), request.getfixturevalue(f"{data}_features")
    for t in (250, features.LOOKBACK + 17, len(bars) // 2, len(bars) - 40):
        assert_unchanged(full, features.compute(bars.iloc[: t + 1]), t)


@pytest.mark.parametrize("data", ["sp500", "minute"])
def test_altering_the_future_changes_nothing_before(data, request):
    bars, full = request.getfixturevalue(f"{data}_bars"), request.getfixturevalue(f"{data}_features")
    for seed, t in enumerate((features.LOOKBACK + 3, len(bars) // 3, len(bars) - 100)):
        altered = features.compute(scramble_after(bars, t, seed))
        assert_unchanged(full, altered, t)
        changed = ~np.isclose(altered.iloc[t + 1 :].to_numpy(), full.iloc[t + 1 :].to_numpy(), equal_nan=True)
        assert changed.any(axis=0).mean() > 0.8  # the alteration reached the features (not time, rare patterns)


def test_appending_bars_one_at_a_time_reproduces_the_batch(sp500_bars, sp500_features):
    start = len(sp500_bars) - 30
    for t in range(start, len(sp500_bars)):
        grown = features.compute(sp500_bars.iloc[: t + 1])
        np.testing.assert_allclose(grown.iloc[-1], sp500_features.iloc[t], rtol=ROUNDING, atol=ROUNDING)


def test_the_volume_and_holiday_columns_never_see_a_later_bar():
    """The liquidity family's inputs (log volume terms, holiday flags) at bar t are the same
    whatever comes after t: altered, then cut off."""
    from features.synthetic import synthetic_bars

    names = ["log_vol_1", "log_vol_10", "log_vol_60", "log_vol_240", "log_vol_trend_10_240", "holiday",
             "holiday_next_day"]
    bars = synthetic_bars(1_500, seed=3, freq="15min", start="2024-06-28", microstructure=False)
    full = features.compute(bars)[names]
    for seed, t in enumerate((features.LOOKBACK + 5, 900, len(bars) - 30)):
        assert_unchanged(full, features.compute(scramble_after(bars, t, seed))[names], t)
        assert_unchanged(full, features.compute(bars.iloc[: t + 1])[names], t)
