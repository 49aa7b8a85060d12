"""Higher-timeframe and cross-asset features, aligned to the base bars without look-ahead.

Timestamp convention (the same as :func:`features.compute`): ``ts`` is the bar's OPEN
time, and a row's features are known at that bar's CLOSE. A 5-minute bar labelled 10:00
covers the 1-minute bars 10:00..10:04; it is complete when the 10:04 bar closes, so its
features appear from the 1-minute row ``ts = 10:04`` on (``label + rule - base``), and
stay until the next 5-minute bar completes. If the base bars have a gap, the value shows
up at the first row after its completion time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import talib

from features.core import compute

__all__ = [
    "MTF_FEATURES",
    "resample_bars",
    "multi_timeframe_features",
    "cross_asset_features",
]

# How each input column aggregates into a higher-timeframe bar.
_AGGREGATION: dict[str, str] = {
    "open": "first",
    "high": "max",
    "low": "min",
    "close": "last",
    "volume": "sum",
    "buy_volume": "sum",
    "sell_volume": "sum",
    "n_trades": "sum",
    "liquidations": "sum",
    "bid_size": "last",
    "ask_size": "last",
    "spread": "mean",
    "funding_rate": "last",
}

MTF_FEATURES: tuple[str, ...] = (
    "ret_1",
    "ret_5",
    "rsi_14",
    "atr_pct_14",
    "sma_dist_20",
    "ema_dist_50",
    "bb_pctb_20",
    "adx_14",
    "donchian_pos_20",
    "rv_20",
    "vol_z_20",
)
"""Features computed on each higher timeframe by :func:`multi_timeframe_features`."""


def resample_bars(bars: pd.DataFrame, rule: str) -> pd.DataFrame:
    """Aggregate bars to a coarser timeframe (``"5min"``, ``"15min"``, ``"1h"``, ...).

    Output bars are labelled by their open time (left-closed, left-labelled buckets on a
    grid anchored at the Unix epoch) and periods without any input bar are dropped. Known
    columns aggregate as OHLCV (first/max/min/last/sum) and microstructure columns as
    sums (flows, trades, liquidations), last (book depth, funding) or mean (spread);
    other columns are dropped.
    """
    if not isinstance(bars.index, pd.DatetimeIndex):
        raise ValueError(f"bars must have a DatetimeIndex, got {type(bars.index).__name__}")
    aggregation = {column: how for column, how in _AGGREGATION.items() if column in bars.columns}
    if "close" not in aggregation:
        raise ValueError("bars is missing required column 'close'")
    resampled = bars.resample(rule, label="left", closed="left", origin="epoch").agg(aggregation)
    return resampled[resampled["close"].notna()]


def multi_timeframe_features(
    bars: pd.DataFrame,
    rules: Sequence[str] = ("5min", "15min", "1h"),
    features: Sequence[str] = MTF_FEATURES,
    base: str = "1min",
) -> pd.DataFrame:
    """Features of higher timeframes, on the index of the ``base``-timeframe ``bars``.

    Columns are named ``{rule}_{feature}`` (e.g. ``5min_rsi_14``). A higher-timeframe value
    is used only once its bar has closed (see the module docstring), so the value at row t
    depends only on base bars up to t.
    """
    base_step = pd.Timedelta(base)
    parts = []
    for rule in rules:
        step = pd.Timedelta(rule)
        if step <= base_step or step % base_step:
            raise ValueError(f"rule {rule!r} must be a whole multiple of the base timeframe {base!r}")
        higher = resample_bars(bars, rule)
        values = compute(higher)[list(features)]
        values.index = higher.index + (step - base_step)  # open time of the last base bar inside
        values.columns = [f"{rule}_{name}" for name in features]
        aligned = pd.merge_asof(
            pd.DataFrame(index=bars.index), values, left_index=True, right_index=True, direction="backward"
        )
        parts.append(aligned)
    return pd.concat(parts, axis=1)


def cross_asset_features(
    bars: pd.DataFrame | pd.Series,
    reference_bars: pd.DataFrame | pd.Series,
    window: int = 60,
    prefix: str = "ref",
) -> pd.DataFrame:
    """Rolling relation of an asset to a reference symbol, on ``bars``' index.

    ``{prefix}_corr_{window}``: correlation of one-bar log returns (TA-Lib CORREL);
    ``{prefix}_beta_{window}``: beta of the asset's returns on the reference's (TA-Lib BETA,
    which works on simple returns of the prices); ``{prefix}_rel_ret_{window}``: log return
    of the asset minus that of the reference over ``window`` bars.

    The reference close is aligned by taking, at each asset timestamp, its last value at or
    before it (never a later one); before the reference starts, the features are NaN.
    """
    close = _close_series(bars, "bars")
    reference = _close_series(reference_bars, "reference_bars")
    if not reference.index.is_monotonic_increasing:
        raise ValueError("reference_bars timestamps must be increasing")
    ref = np.ascontiguousarray(reference.reindex(close.index, method="ffill").to_numpy(dtype=np.float64))
    asset = np.ascontiguousarray(close.to_numpy(dtype=np.float64))
    log_asset, log_ref = np.log(asset), np.log(ref)
    asset_returns = np.concatenate(([np.nan], np.diff(log_asset)))
    ref_returns = np.concatenate(([np.nan], np.diff(log_ref)))
    relative = np.full(len(asset), np.nan)
    relative[window:] = (log_asset[window:] - log_asset[:-window]) - (log_ref[window:] - log_ref[:-window])
    return pd.DataFrame(
        {
            f"{prefix}_corr_{window}": talib.CORREL(asset_returns, ref_returns, window),
            f"{prefix}_beta_{window}": talib.BETA(ref, asset, window),
            f"{prefix}_rel_ret_{window}": relative,
        },
        index=close.index,
    )


def _close_series(bars: pd.DataFrame | pd.Series, name: str) -> pd.Series:
    if isinstance(bars, pd.Series):
        series = bars
    elif isinstance(bars, pd.DataFrame) and "close" in bars.columns:
        series = bars["close"]
    else:
        raise ValueError(f"{name} must be a close Series or a DataFrame with a 'close' column")
    if not isinstance(series.index, pd.DatetimeIndex):
        raise ValueError(f"{name} must have a DatetimeIndex")
    return series


_TIMEFRAME = re.compile(r"^(\d+)(s|min|m|h|d|w)$")
_UNIT_HOURS = {"s": 1 / 3600, "min": 1 / 60, "m": 1 / 60, "h": 1.0, "d": 24.0, "w": 168.0}


def timeframe_hours(timeframe: str) -> float:
    """Hours in one bar of ``timeframe`` (``"15m"`` -> 0.25, ``"1d"`` -> 24)."""
    match = _TIMEFRAME.match(str(timeframe))
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"unknown timeframe {timeframe!r}: use <n><unit> with unit s, m, h, d or w (e.g. 15m, 1h, 1d)")
    return int(match.group(1)) * _UNIT_HOURS[match.group(2)]
