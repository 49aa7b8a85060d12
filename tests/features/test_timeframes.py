"""Higher timeframes and cross-asset features: aggregation, alignment, no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import features
from features.timeframes import MTF_FEATURES, cross_asset_features, multi_timeframe_features, resample_bars


@pytest.fixture(scope="module")
def minute(minute_bars: pd.DataFrame) -> pd.DataFrame:
    """Two days of 1-minute bars without the fixture's gap, starting at midnight."""
    bars = minute_bars.iloc[:2_880].copy()
    bars.index = pd.date_range("2024-03-04", periods=len(bars), freq="1min", tz="UTC", name="ts")
    return bars


@pytest.fixture(scope="module")
def mtf(minute: pd.DataFrame) -> pd.DataFrame:
    return multi_timeframe_features(minute)


def test_resample_aggregates_ohlcv_and_microstructure(minute):
    five = resample_bars(minute, "5min")
    first = minute.iloc[:5]
    row = five.iloc[0]
    assert five.index[0] == minute.index[0] and five.index[1] - five.index[0] == pd.Timedelta("5min")
    assert row["open"] == first["open"].iloc[0] and row["close"] == first["close"].iloc[-1]
    assert row["high"] == first["high"].max() and row["low"] == first["low"].min()
    assert row["volume"] == pytest.approx(first["volume"].sum())
    assert row["buy_volume"] == pytest.approx(first["buy_volume"].sum())
    assert row["bid_size"] == first["bid_size"].iloc[-1]
    assert row["spread"] == pytest.approx(first["spread"].mean())
    assert len(resample_bars(minute, "1h")) == 48


def test_resample_drops_periods_without_bars(minute):
    gappy = minute.drop(minute.index[60:120])  # the whole 01:00 hour is missing
    hourly = resample_bars(gappy, "1h")
    assert pd.Timestamp("2024-03-04 01:00", tz="UTC") not in hourly.index and len(hourly) == 47


def test_a_higher_timeframe_bar_appears_at_the_row_of_its_last_minute(minute, mtf):
    """ts is the bar open time: the 5-minute bar 10:00 (1-minute bars 10:00..10:04) is
    complete at the close of the 10:04 bar, so row 10:04 is the first to show it."""
    five = features.compute(resample_bars(minute, "5min"))
    at = lambda text: pd.Timestamp(f"2024-03-04 {text}", tz="UTC")  # noqa: E731
    assert mtf.loc[at("10:04"), "5min_rsi_14"] == five.loc[at("10:00"), "rsi_14"]
    assert mtf.loc[at("10:03"), "5min_rsi_14"] == five.loc[at("09:55"), "rsi_14"]
    assert mtf.loc[at("10:00"), "5min_rsi_14"] == five.loc[at("09:55"), "rsi_14"]
    hourly = features.compute(resample_bars(minute, "1h"))
    assert mtf.loc[at("21:59"), "1h_ret_1"] == hourly.loc[at("21:00"), "ret_1"]
    assert mtf.loc[at("21:58"), "1h_ret_1"] == hourly.loc[at("20:00"), "ret_1"]


def test_multi_timeframe_columns_and_index(minute, mtf):
    assert mtf.index.equals(minute.index)
    assert list(mtf.columns) == [f"{rule}_{name}" for rule in ("5min", "15min", "1h") for name in MTF_FEATURES]
    assert mtf["5min_rsi_14"].notna().sum() > 2_000


@pytest.mark.parametrize("t", [1_202, 1_204, 1_799, 2_877])
def test_multi_timeframe_features_do_not_look_ahead(minute, mtf, t):
    """Cut the 1-minute history anywhere (mid-bucket too): the past never changes."""
    truncated = multi_timeframe_features(minute.iloc[: t + 1])
    pd.testing.assert_frame_equal(truncated, mtf.iloc[: t + 1], check_exact=False, rtol=1e-12, atol=1e-12)
    scrambled = minute.copy()
    scrambled.iloc[t + 1 :, :4] *= 1.7
    altered = multi_timeframe_features(scrambled)
    pd.testing.assert_frame_equal(altered.iloc[: t + 1], mtf.iloc[: t + 1], check_exact=False, rtol=1e-12, atol=1e-12)


def test_a_gap_delays_the_higher_timeframe_value_to_the_next_row(minute):
    gappy = minute.drop(minute.index[604])  # no 10:04 bar
    values = multi_timeframe_features(gappy, rules=("5min",))
    five = features.compute(resample_bars(gappy, "5min"))
    at = lambda text: pd.Timestamp(f"2024-03-04 {text}", tz="UTC")  # noqa: E731
    assert values.loc[at("10:03"), "5min_rsi_14"] == five.loc[at("09:55"), "rsi_14"]
    assert values.loc[at("10:05"), "5min_rsi_14"] == five.loc[at("10:00"), "rsi_14"]


def test_rules_must_be_multiples_of_the_base(minute):
    with pytest.raises(ValueError, match="whole multiple"):
        multi_timeframe_features(minute, rules=("90s",))


def test_cross_asset_correlation_and_beta(minute):
    rng = np.random.default_rng(8)
    ref_returns = rng.normal(0, 1e-3, len(minute))
    asset_returns = 1.5 * ref_returns + rng.normal(0, 5e-4, len(minute))
    index = minute.index
    reference = pd.DataFrame({"close": 50 * np.exp(np.cumsum(ref_returns))}, index=index)
    asset = pd.DataFrame({"close": 80 * np.exp(np.cumsum(asset_returns))}, index=index)
    out = cross_asset_features(asset, reference, window=60, prefix="btc")
    assert list(out.columns) == ["btc_corr_60", "btc_beta_60", "btc_rel_ret_60"]
    t = 1_000
    log_a, log_r = np.log(asset["close"].to_numpy()), np.log(reference["close"].to_numpy())
    ra, rr = np.diff(log_a)[t - 60 : t], np.diff(log_r)[t - 60 : t]
    assert out["btc_corr_60"].iloc[t] == pytest.approx(np.corrcoef(ra, rr)[0, 1], rel=1e-9)
    sa, sr = np.expm1(ra), np.expm1(rr)
    assert out["btc_beta_60"].iloc[t] == pytest.approx(np.polyfit(sr, sa, 1)[0], rel=1e-9)
    expected_rel = (log_a[t] - log_a[t - 60]) - (log_r[t] - log_r[t - 60])
    assert out["btc_rel_ret_60"].iloc[t] == pytest.approx(expected_rel, rel=1e-9)
    assert 1.3 < out["btc_beta_60"].iloc[100:].median() < 1.7


def test_cross_asset_alignment_uses_only_past_reference_prices(minute):
    reference = minute[["close"]].iloc[::2] * 2.0  # the reference trades every other minute
    out = cross_asset_features(minute, reference, window=30)
    truncated = cross_asset_features(minute.iloc[:1_001], reference.iloc[:501], window=30)
    pd.testing.assert_frame_equal(truncated, out.iloc[:1_001], check_exact=False, rtol=1e-12, atol=1e-12)
    late = cross_asset_features(minute, reference.iloc[100:], window=30)
    assert late.iloc[:200].isna().all().all() and late.iloc[300:].notna().all().all()
