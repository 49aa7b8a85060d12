"""Training labels. Labels look FORWARD by design, unlike features.

Conventions: a label at bar t describes bars ``t+1 .. t+horizon`` relative to the close of
bar t (the decision is taken at t's close). Every function returns float64 on the input's
index, NaN where the forward window is incomplete (always the last ``horizon`` rows, which
are never filled) or where a backward-looking reference (a rolling σ) is still warming up.
Class labels are floats because of those NaNs; cast after dropping them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

__all__ = [
    "REGIME_NAMES",
    "forward_return",
    "forward_returns",
    "direction_label",
    "excursions",
    "sigma_reversion_label",
    "triple_barrier_label",
    "future_realized_vol",
    "regime_label",
    "make_labels",
]

REGIME_NAMES: list[str] = ["trend_up", "trend_down", "range_bound", "high_volatility", "consolidation"]
"""Class names of :func:`regime_label`, indexed by label value."""


def _values(series: pd.Series, name: str) -> np.ndarray:
    if not isinstance(series, pd.Series):
        raise ValueError(f"{name} must be a pandas Series, got {type(series).__name__}")
    return np.ascontiguousarray(series.to_numpy(dtype=np.float64))


def _check_horizon(horizon: int) -> None:
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")


def _lead(x: np.ndarray, periods: int) -> np.ndarray:
    """Value ``periods`` bars ahead (``x[t+periods]``), NaN past the end."""
    out = np.full(len(x), np.nan)
    if periods < len(x):
        out[: len(x) - periods] = x[periods:]
    return out


def _forward_extreme(x: np.ndarray, horizon: int, highest: bool) -> np.ndarray:
    """max (or min) of ``x[t+1 .. t+horizon]``; NaN where that window passes the end."""
    n = len(x)
    out = np.full(n, np.nan)
    if horizon >= n:
        return out
    reversed_x = np.ascontiguousarray(x[::-1])
    if horizon == 1:  # TA-Lib's rolling functions need a period of at least 2
        rolling = x
    else:
        rolling = (talib.MAX if highest else talib.MIN)(reversed_x, horizon)[::-1]  # over x[t .. t+horizon-1]
    out[: n - horizon] = rolling[1 : n - horizon + 1]
    return out


def _log_returns(close: np.ndarray) -> np.ndarray:
    log_close = np.log(close)
    returns = np.full(len(close), np.nan)
    returns[1:] = log_close[1:] - log_close[:-1]
    return returns


def forward_return(close: pd.Series, horizon: int, log: bool = True) -> pd.Series:
    """Return from the close of t to the close of t+horizon (log by default, else simple)."""
    _check_horizon(horizon)
    c = _values(close, "close")
    ratio = _lead(c, horizon) / c
    values = np.log(ratio) if log else ratio - 1.0
    return pd.Series(values, index=close.index, name=f"fwd_ret_{horizon}")


def forward_returns(close: pd.Series, horizons: tuple[int, ...] = (1, 5, 15, 60), log: bool = True) -> pd.DataFrame:
    """:func:`forward_return` for several horizons, columns ``fwd_ret_{h}``."""
    return pd.concat([forward_return(close, h, log) for h in horizons], axis=1)


def direction_label(close: pd.Series, horizon: int, threshold: float = 0.001, binary: bool = False) -> pd.Series:
    """Direction of the simple forward return over ``horizon`` bars.

    Ternary (default): 1 if return > threshold, -1 if < -threshold, else 0.
    Binary: 1 if return > threshold, else 0.
    """
    r = forward_return(close, horizon, log=False).to_numpy()
    if binary:
        label = (r > threshold).astype(np.float64)
    else:
        label = np.sign(r) * (np.abs(r) > threshold)
    label[np.isnan(r)] = np.nan
    return pd.Series(label, index=close.index, name=f"direction_{horizon}")


def excursions(high: pd.Series, low: pd.Series, close: pd.Series, horizon: int) -> pd.DataFrame:
    """Maximum favourable / adverse excursion of a long entered at the close of t.

    ``mfe_{h}`` = max(high[t+1..t+h]) / close[t] - 1 (>= typical 0);
    ``mae_{h}`` = min(low[t+1..t+h]) / close[t] - 1 (<= typical 0).
    For a short, MFE and MAE swap roles (with signs flipped).
    """
    _check_horizon(horizon)
    c = _values(close, "close")
    mfe = _forward_extreme(_values(high, "high"), horizon, highest=True) / c - 1.0
    mae = _forward_extreme(_values(low, "low"), horizon, highest=False) / c - 1.0
    return pd.DataFrame({f"mfe_{horizon}": mfe, f"mae_{horizon}": mae}, index=close.index)


def sigma_reversion_label(close: pd.Series, horizon: int, window: int = 20, k: float = 1.0) -> pd.Series:
    """The σ-reversion gate's label.

    At bar t, with the rolling mean μ_t and σ_t of the last ``window`` closes (bars
    t-window+1..t): label 1 if, within the next ``horizon`` closes, price moves toward μ_t by
    at least k·σ_t (down from above the mean, up from below), else 0. A close exactly at the
    mean (or σ_t = 0) is labelled 0. NaN for the σ warm-up and the last ``horizon`` rows.
    """
    _check_horizon(horizon)
    c = _values(close, "close")
    mean = talib.SMA(c, window)
    sigma = talib.STDDEV(c, window)
    target = k * sigma
    fell = c - _forward_extreme(c, horizon, highest=False) >= target  # from above: min close
    rose = _forward_extreme(c, horizon, highest=True) - c >= target  # from below: max close
    label = np.where(c > mean, fell, np.where(c < mean, rose, False)).astype(np.float64)
    label[sigma == 0] = 0.0
    label[np.isnan(mean) | np.isnan(_lead(c, horizon))] = np.nan
    return pd.Series(label, index=close.index, name=f"sigma_reversion_{horizon}")


def triple_barrier_label(
    close: pd.Series,
    horizon: int,
    k_up: float = 2.0,
    k_down: float = 2.0,
    vol_window: int = 20,
    high: pd.Series | None = None,
    low: pd.Series | None = None,
) -> pd.Series:
    """Triple-barrier label (López de Prado): which barrier is touched first.

    Barriers in log-return from the close of t: upper +k_up·σ, lower -k_down·σ, with
    σ = σ₁·√horizon and σ₁ the std of the last ``vol_window`` one-bar log returns (bars up
    to t). The vertical barrier is bar t+horizon. Label 1 (upper first), -1 (lower first),
    0 (vertical). Touches use closes, or highs/lows if given; if one bar touches both, the
    label is 0 (order inside the bar unknown).
    """
    _check_horizon(horizon)
    c = _values(close, "close")
    n = len(c)
    log_close = np.log(c)
    sigma = talib.STDDEV(_log_returns(c), vol_window) * np.sqrt(horizon)
    upper, lower = k_up * sigma, -k_down * sigma
    log_high = np.log(_values(high, "high")) if high is not None else log_close
    log_low = np.log(_values(low, "low")) if low is not None else log_close
    label = np.zeros(n)
    decided = np.zeros(n, dtype=bool)
    with np.errstate(invalid="ignore"):
        for step in range(1, horizon + 1):
            up = (_lead(log_high, step) - log_close >= upper) & ~decided
            down = (_lead(log_low, step) - log_close <= lower) & ~decided
            label[up & ~down] = 1.0
            label[down & ~up] = -1.0
            decided |= up | down
    label[np.isnan(sigma) | np.isnan(_lead(c, horizon))] = np.nan
    return pd.Series(label, index=close.index, name=f"triple_barrier_{horizon}")


def future_realized_vol(close: pd.Series, horizons: tuple[int, ...] = (5, 15, 60)) -> pd.DataFrame:
    """Forward realized volatility ``fwd_rv_{h}``: sqrt(mean squared one-bar log return over
    bars t+1..t+h), per bar (not annualised)."""
    c = _values(close, "close")
    squared = _log_returns(c) ** 2
    out = {}
    for h in horizons:
        _check_horizon(h)
        window_sum = squared if h == 1 else talib.SUM(squared, h)  # at t+h: bars t+1..t+h
        out[f"fwd_rv_{h}"] = np.sqrt(np.maximum(_lead(window_sum, h), 0.0) / h)
    return pd.DataFrame(out, index=close.index)


def regime_label(
    high: pd.Series,
    low: pd.Series,
    close: pd.Series,
    horizon: int = 60,
    vol_window: int = 120,
    trend_z: float = 1.0,
    high_vol_ratio: float = 1.5,
    low_vol_ratio: float = 0.6,
) -> pd.Series:
    """Rule-based market regime of the next ``horizon`` bars (values index :data:`REGIME_NAMES`).

    Uses the forward window t+1..t+horizon and, as a yardstick, σ_ref = realized vol of the
    ``vol_window`` one-bar log returns up to t. With σ_fwd the forward realized vol and
    z = ln(close[t+h]/close[t]) / (σ_ref·√h), first match wins:

    3 high_volatility  σ_fwd / σ_ref >= high_vol_ratio
    0 trend_up         z >= trend_z
    1 trend_down       z <= -trend_z
    4 consolidation    σ_fwd / σ_ref <= low_vol_ratio and forward high-low range
                       <= 2·σ_ref·√h (a quiet, tight market)
    2 range_bound      otherwise
    """
    _check_horizon(horizon)
    c = _values(close, "close")
    returns = _log_returns(c)
    sigma_ref = np.sqrt(talib.SMA(returns**2, vol_window))
    sigma_fwd = future_realized_vol(close, (horizon,)).to_numpy()[:, 0]
    scale = sigma_ref * np.sqrt(horizon)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log(_lead(c, horizon) / c) / scale
        vol_ratio = sigma_fwd / sigma_ref
        forward_high = _forward_extreme(_values(high, "high"), horizon, highest=True)
        forward_low = _forward_extreme(_values(low, "low"), horizon, highest=False)
        forward_range = np.log(forward_high / forward_low)
        label = np.full(len(c), 2.0)
        label[(vol_ratio <= low_vol_ratio) & (forward_range <= 2.0 * scale)] = 4.0
        label[z <= -trend_z] = 1.0
        label[z >= trend_z] = 0.0
        label[vol_ratio >= high_vol_ratio] = 3.0
    label[np.isnan(sigma_ref) | np.isnan(sigma_fwd) | (sigma_ref == 0)] = np.nan
    return pd.Series(label, index=close.index, name=f"regime_{horizon}")


def make_labels(bars: pd.DataFrame, horizons: tuple[int, ...] = (1, 5, 15, 60)) -> pd.DataFrame:
    """Every label for each horizon, from OHLC ``bars`` (columns high, low, close)."""
    missing = [column for column in ("high", "low", "close") if column not in bars.columns]
    if missing:
        raise ValueError(f"bars is missing column(s) {missing} needed for labels")
    high, low, close = bars["high"], bars["low"], bars["close"]
    parts: list[pd.Series | pd.DataFrame] = [forward_returns(close, horizons), future_realized_vol(close, horizons)]
    for h in horizons:
        parts += [
            direction_label(close, h),
            excursions(high, low, close, h),
            sigma_reversion_label(close, h),
            triple_barrier_label(close, h, high=high, low=low),
            regime_label(high, low, close, h),
        ]
    return pd.concat(parts, axis=1)
