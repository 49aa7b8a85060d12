"""Feature definitions: agreement with TA-Lib, formulas, ranges and stationarity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

import features


def arrays(bars: pd.DataFrame) -> tuple[np.ndarray, ...]:
    return tuple(bars[name].to_numpy() for name in ("open", "high", "low", "close", "volume"))


def test_finite_memory_indicators_track_their_talib_originals(sp500_bars, sp500_features):
    """RSI/ATR/ADX/MACD use truncated Wilder/EMA smoothing; they must stay close to TA-Lib's
    infinite-memory versions (same formulas, 98% of the weight kept)."""
    _, h, l, c, _ = arrays(sp500_bars)
    f = sp500_features.iloc[500:]
    pairs = {
        "rsi_14": talib.RSI(c, 14),
        "adx_14": talib.ADX(h, l, c, 14),
        "plus_di_14": talib.PLUS_DI(h, l, c, 14),
        "atr_pct_14": talib.ATR(h, l, c, 14) / c,
        "macd_line": talib.MACD(c)[0] / talib.ATR(h, l, c, 14),
    }
    for name, reference in pairs.items():
        ours, theirs = f[name].to_numpy(), reference[500:]
        assert np.corrcoef(ours, theirs)[0, 1] > 0.99, name
        assert np.median(np.abs(ours - theirs)) < 0.1 * np.std(theirs), name


def test_finite_talib_indicators_are_taken_as_is(sp500_bars, sp500_features):
    o, h, l, c, v = arrays(sp500_bars)
    slow_k, slow_d = talib.STOCH(h, l, c, 14, 3, 0, 3, 0)
    expected = {
        "cci_20": talib.CCI(h, l, c, 20),
        "willr_14": talib.WILLR(h, l, c, 14),
        "stoch_k": slow_k,
        "stoch_d": slow_d,
        "mfi_14": talib.MFI(h, l, c, v, 14),
        "ultosc": talib.ULTOSC(h, l, c),
        "aroon_osc_25": talib.AROONOSC(h, l, 25),
        "roc_10": talib.ROCP(c, 10),
        "cdl_engulfing": talib.CDLENGULFING(o, h, l, c) / 100.0,
        "cdl_doji": talib.CDLDOJI(o, h, l, c) / 100.0,
    }
    warmup = {info.name: info.warmup for info in features.catalog()}
    for name, reference in expected.items():
        assert np.isnan(sp500_features[name].iloc[: warmup[name]]).all(), name
        np.testing.assert_allclose(
            sp500_features[name].iloc[warmup[name] :], reference[warmup[name] :], rtol=1e-9, atol=1e-9, err_msg=name
        )


def test_price_features_are_ratios_or_distances(sp500_bars, sp500_features):
    _, h, l, c, v = arrays(sp500_bars)
    f = sp500_features
    np.testing.assert_allclose(f["sma_dist_50"], c / talib.SMA(c, 50) - 1, rtol=1e-12)
    np.testing.assert_allclose(f["ret_5"][5:], np.log(c[5:] / c[:-5]), rtol=1e-9, atol=1e-12)
    upper, _, lower = talib.BBANDS(c, 20, 2.0, 2.0, 0)
    np.testing.assert_allclose(f["bb_pctb_20"], (c - lower) / (upper - lower), rtol=1e-6, atol=1e-9)
    highest, lowest = talib.MAX(h, 20), talib.MIN(l, 20)
    np.testing.assert_allclose(f["donchian_pos_20"], (c - lowest) / (highest - lowest), rtol=1e-12)
    atr = f["atr_pct_14"].to_numpy() * c
    np.testing.assert_allclose(f["resistance_dist_50"], (talib.MAX(h, 50) - c) / atr, rtol=1e-9)
    pivot = (np.roll(h, 1) + np.roll(l, 1) + np.roll(c, 1)) / 3
    np.testing.assert_allclose(f["pivot_dist"][100:], ((c - pivot) / atr)[100:], rtol=1e-9)
    typical = (h + l + c) / 3
    vwap = talib.SUM(typical * v, 20) / talib.SUM(v, 20)
    np.testing.assert_allclose(f["vwap_dist_pct_20"], c / vwap - 1, rtol=1e-9, atol=1e-12)


def test_ichimoku_cloud_at_t_was_computed_26_bars_earlier(sp500_bars, sp500_features):
    _, h, l, c, _ = arrays(sp500_bars)
    t = 3_000
    span_b = (h[t - 26 - 51 : t - 26 + 1].max() + l[t - 26 - 51 : t - 26 + 1].min()) / 2
    assert sp500_features["ichimoku_senkou_b_dist"].iloc[t] == pytest.approx(c[t] / span_b - 1, rel=1e-12)


def test_features_do_not_depend_on_the_price_level(sp500_bars, sp500_features):
    """Scaling every price by 1024 (exact in binary) must leave every feature unchanged:
    no raw price level leaks into a model input."""
    scaled = sp500_bars.copy()
    scaled[["open", "high", "low", "close"]] *= 1024.0
    rescaled = features.compute(scaled)
    difference = np.abs(rescaled - sp500_features) / np.maximum(1.0, np.abs(sp500_features))
    worst = difference.max().sort_values(ascending=False)
    assert worst.iloc[0] < 1e-9, worst.head()


def test_bounded_features_stay_in_their_ranges(minute_features):
    f = minute_features
    bounds = {
        "rsi_14": (0, 100), "stoch_k": (0, 100), "willr_14": (-100, 0), "mfi_14": (0, 100),
        "adx_14": (0, 100), "aroon_osc_25": (-100, 100), "donchian_pos_20": (0, 1),
        "candle_body": (-1, 1), "candle_upper_wick": (0, 1), "obv_flow_20": (-1, 1), "cmf_20": (-1, 1),
        "vp_corr_20": (-1, 1), "consolidation_len": (0, 100), "hour_sin": (-1, 1), "dow_cos": (-1, 1),
        "tick_ratio": (-1, 1), "depth_ratio": (-1, 1), "ofi_20": (-1, 1), "liq_spike": (0, 1),
    }  # fmt: skip
    for name, (low, high) in bounds.items():
        values = f[name].dropna()
        assert values.between(low - 1e-9, high + 1e-9).all(), name
    for name in [n for n in f.columns if n.startswith("cdl_")]:  # TA-Lib codes ±100 (±80, ±200) / 100
        assert set(f[name].dropna().unique()) <= {-2.0, -1.0, -0.8, 0.0, 0.8, 1.0, 2.0}, name
    assert f["consolidation_len"].min() == 0 and f["consolidation_len"].max() > 50


def test_time_features_encode_utc_hour_and_weekday():
    index = pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-03 06:00", "2024-01-06 18:00"], tz="UTC", name="ts")
    bars = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}, index=index)
    f = features.compute(bars)
    np.testing.assert_allclose(f["hour_sin"], [0, 1, -1], atol=1e-12)
    np.testing.assert_allclose(f["hour_cos"], [1, 0, 0], atol=1e-12)
    weekdays = np.array([0, 2, 5])  # Monday, Wednesday, Saturday
    np.testing.assert_allclose(f["dow_sin"], np.sin(2 * np.pi * weekdays / 7), atol=1e-12)
    # a non-UTC index gives the same UTC-based encoding
    berlin = bars.set_axis(index.tz_convert("Europe/Berlin"))
    np.testing.assert_allclose(features.compute(berlin)["hour_sin"], f["hour_sin"], atol=1e-12)


def test_consolidation_length_counts_bars_since_the_last_breakout():
    n = 200
    close = np.full(n, 100.0)
    close[:30] = 100.0 + np.arange(30)  # every bar a new 20-bar high
    bars = pd.DataFrame(
        {"open": close, "high": close + 0.5, "low": close - 0.5, "close": close, "volume": 1.0},
        index=pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC"),
    )
    length = features.compute(bars)["consolidation_len"]
    # bars 20..29 make new highs; the last breakout is bar 30's drop below the 20-bar low
    assert length.iloc[150] == 100.0  # capped
    assert np.isnan(length.iloc[118]) and length.iloc[119] == 89.0


def test_microstructure_features_follow_their_definitions(minute_bars, minute_features):
    b, f = minute_bars, minute_features
    traded = b["buy_volume"] + b["sell_volume"]
    tick = ((b["buy_volume"] - b["sell_volume"]) / traded).where(traded > 0, 0.0)
    np.testing.assert_allclose(f["tick_ratio"], tick, atol=1e-12)
    depth = (b["bid_size"] - b["ask_size"]) / (b["bid_size"] + b["ask_size"])
    np.testing.assert_allclose(f["depth_ratio"], depth, atol=1e-12)
    np.testing.assert_allclose(f["spread_bps"], 1e4 * b["spread"] / b["close"], rtol=1e-12)
    imbalance = (b["buy_volume"] - b["sell_volume"]).rolling(20).sum() / traded.rolling(20).sum()
    np.testing.assert_allclose(f["ofi_20"][100:], imbalance[100:], atol=1e-9)
    vwap = (b["close"] * traded).rolling(60).sum() / traded.rolling(60).sum()
    price_dist = (b["close"] - vwap) / b["close"].rolling(60).std(ddof=0)
    moving = b["close"].rolling(60).std(ddof=0) > 1e-6
    np.testing.assert_allclose(f["price_dist"][moving], price_dist[moving], rtol=1e-6, atol=1e-8)
    spikes = f["liq_spike"] == 1
    assert spikes.any() and (f.loc[spikes, "liq_z_100"] > 3).all()
