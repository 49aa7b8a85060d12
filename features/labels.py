"""Training labels: one rule per label a model spec trains on. Labels look FORWARD by design,
unlike features.

Every rule takes the bars frame (the columns it reads: ``close``, and ``high``/``low`` where
it says so) and returns a float64 Series on its index, so a spec's ``make_label`` is the rule
itself with its parameters bound (``models.catalog``).

Conventions: a label at bar t describes bars ``t+1 .. t+horizon`` relative to the close of
bar t (the decision is taken at t's close). It is NaN where the forward window is incomplete
(always the last ``horizon`` rows, which are never filled) or where a backward-looking
reference (a rolling σ, a trailing percentile) is still warming up. Anything that normalizes a
label uses only bars up to t or labels of earlier bars, never a statistic of the whole frame.
Class labels are floats because of those NaNs; cast after dropping them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

__all__ = [
    "REGIME_NAMES",
    "direction_three_class",
    "direction_up",
    "excursions",
    "forward_max_excursion",
    "forward_realized_vol",
    "forward_return",
    "momentum_acceleration",
    "regime_label",
    "risk_percentile",
    "sigma_reversion_label",
    "zero_label",
    "bars_for_hours",
    "forward_log_volume",
    "liquidity_targets",
    "multi_horizon_returns",
    "multi_horizon_directions",
    "multi_horizon_labels",
    "hours_name",
]

REGIME_NAMES: tuple[str, ...] = ("trend_up", "trend_down", "range_bound", "high_volatility", "consolidation")
"""Class names of :func:`regime_label`, indexed by label value."""


def _column(bars: pd.DataFrame, name: str) -> np.ndarray:
    if not isinstance(bars, pd.DataFrame) or name not in bars.columns:
        raise ValueError(f"bars must be a DataFrame with a {name!r} column")
    return np.ascontiguousarray(bars[name].to_numpy(dtype=np.float64))


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


def forward_return(bars: pd.DataFrame, horizon: int) -> pd.Series:
    """Log return from the close of t to the close of t+horizon: ``ln(close[t+h] / close[t])``."""
    _check_horizon(horizon)
    c = _column(bars, "close")
    return pd.Series(np.log(_lead(c, horizon) / c), index=bars.index, name=f"fwd_ret_{horizon}")


def direction_up(bars: pd.DataFrame, horizon: int) -> pd.Series:
    """``dir_up_h{h}``: 1 if ``close[t+h] > close[t]``, else 0."""
    fwd = forward_return(bars, horizon)
    return (fwd > 0).astype(float).where(fwd.notna())


def direction_three_class(bars: pd.DataFrame, horizon: int, threshold: float) -> pd.Series:
    """``dir3_h{h}_{threshold}``: 2 (up) if the forward log return is above ``threshold``, 0 (down)
    if it is below ``-threshold``, else 1 (flat)."""
    fwd = forward_return(bars, horizon)
    label = np.select([fwd > threshold, fwd < -threshold], [2.0, 0.0], 1.0)
    return pd.Series(label, index=bars.index).where(fwd.notna())


def forward_realized_vol(bars: pd.DataFrame, horizon: int) -> pd.Series:
    """``fwd_rv_{h}``: realized volatility of the next ``horizon`` bars, ``sqrt(mean(r_{t+1}^2 .. r_{t+h}^2))``.

    The root mean square of the 1-bar log returns, i.e. their standard deviation with the mean
    taken as zero; per bar (not annualised). Units: per-bar log return.
    """
    _check_horizon(horizon)
    squared = _log_returns(_column(bars, "close")) ** 2
    window_sum = squared if horizon == 1 else talib.SUM(squared, horizon)  # at t+h: bars t+1..t+h
    values = np.sqrt(np.maximum(_lead(window_sum, horizon), 0.0) / horizon)
    return pd.Series(values, index=bars.index, name=f"fwd_rv_{horizon}")


def excursions(bars: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Maximum favourable / adverse excursion of a long entered at the close of t (reads high, low, close).

    ``mfe_{h}`` = max(high[t+1..t+h]) / close[t] - 1 (>= typical 0);
    ``mae_{h}`` = min(low[t+1..t+h]) / close[t] - 1 (<= typical 0).
    For a short, MFE and MAE swap roles (with signs flipped).
    """
    _check_horizon(horizon)
    c = _column(bars, "close")
    mfe = _forward_extreme(_column(bars, "high"), horizon, highest=True) / c - 1.0
    mae = _forward_extreme(_column(bars, "low"), horizon, highest=False) / c - 1.0
    return pd.DataFrame({f"mfe_{horizon}": mfe, f"mae_{horizon}": mae}, index=bars.index)


def forward_max_excursion(bars: pd.DataFrame, horizon: int) -> pd.Series:
    """Largest move against a position of either side over the next ``horizon`` bars.

    ``max(MFE, -MAE)`` of :func:`excursions` (simple returns from ``close_t`` to the highest
    high / lowest low of bars ``t+1 .. t+h``): the maximum adverse excursion of the worse of a
    long and a short opened at ``close_t``.
    """
    ex = excursions(bars, horizon)
    return np.maximum(ex[f"mfe_{horizon}"], -ex[f"mae_{horizon}"]).rename(f"max_excursion_{horizon}")


def risk_percentile(bars: pd.DataFrame, horizon: int, lookback: int = 2000) -> pd.Series:
    """``risk_pct_h{h}`` on a 0-100 scale: the percentile of :func:`forward_max_excursion` at t
    among the values of the trailing ``lookback`` bars (itself included; at least ``lookback // 4``).

    The scale is causal: it compares a bar with earlier bars only, so the label means the
    same thing in any training window and needs no fitted map.
    """
    excursion = forward_max_excursion(bars, horizon)
    pct = excursion.rolling(lookback, min_periods=max(lookback // 4, 2)).rank(pct=True) * 100.0
    return pct.where(excursion.notna()).rename(f"risk_pct_{horizon}")


def momentum_acceleration(bars: pd.DataFrame, horizon: int) -> pd.Series:
    """``mom_accel_h{h}``: 1 if momentum accelerates over the next ``horizon`` bars, 0 if it
    decelerates or reverses.

    With ``P = ln(c_t / c_{t-h})`` (past momentum, known at t) and ``F = ln(c_{t+h} / c_t)``
    (forward), momentum accelerates when the forward move continues the past one with a larger
    magnitude: ``sign(P) * F > |P|``, i.e. the momentum slope ``sign(P) * (F - P)`` is
    positive. NaN where either return is missing or ``P == 0``. For a driftless walk the base
    rate is about 25%, and it falls with ``|P|`` (a large past move is hard to outrun), which
    a model can learn from the past-return features: that part of the signal is structural.
    """
    log_close = np.log(bars["close"].astype(float))
    past = log_close - log_close.shift(horizon)
    fwd = forward_return(bars, horizon)
    label = (np.sign(past) * fwd > past.abs()).astype(float)
    return label.where(past.notna() & fwd.notna() & (past != 0))


def sigma_reversion_label(bars: pd.DataFrame, horizon: int, window: int = 20, k: float = 1.0) -> pd.Series:
    """``sigma_reversion_{h}``, the σ-reversion gate's label.

    At bar t, with the rolling mean μ_t and σ_t of the last ``window`` closes (bars
    t-window+1..t): label 1 if, within the next ``horizon`` closes, price moves toward μ_t by
    at least k·σ_t (down from above the mean, up from below), else 0. A close exactly at the
    mean (or σ_t = 0) is labelled 0. NaN for the σ warm-up and the last ``horizon`` rows.
    """
    _check_horizon(horizon)
    c = _column(bars, "close")
    mean = talib.SMA(c, window)
    sigma = talib.STDDEV(c, window)
    target = k * sigma
    fell = c - _forward_extreme(c, horizon, highest=False) >= target  # from above: min close
    rose = _forward_extreme(c, horizon, highest=True) - c >= target  # from below: max close
    label = np.where(c > mean, fell, np.where(c < mean, rose, False)).astype(np.float64)
    label[sigma == 0] = 0.0
    label[np.isnan(mean) | np.isnan(_lead(c, horizon))] = np.nan
    return pd.Series(label, index=bars.index, name=f"sigma_reversion_{horizon}")


def regime_label(
    bars: pd.DataFrame,
    horizon: int,
    vol_window: int = 120,
    trend_z: float = 1.0,
    high_vol_ratio: float = 1.5,
    low_vol_ratio: float = 0.6,
) -> pd.Series:
    """``regime_{h}``: rule-based market regime of the next ``horizon`` bars (values index
    :data:`REGIME_NAMES`; reads high, low, close).

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
    c = _column(bars, "close")
    returns = _log_returns(c)
    sigma_ref = np.sqrt(talib.SMA(returns**2, vol_window))
    sigma_fwd = forward_realized_vol(bars, horizon).to_numpy()
    scale = sigma_ref * np.sqrt(horizon)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log(_lead(c, horizon) / c) / scale
        vol_ratio = sigma_fwd / sigma_ref
        forward_high = _forward_extreme(_column(bars, "high"), horizon, highest=True)
        forward_low = _forward_extreme(_column(bars, "low"), horizon, highest=False)
        forward_range = np.log(forward_high / forward_low)
        label = np.full(len(c), 2.0)
        label[(vol_ratio <= low_vol_ratio) & (forward_range <= 2.0 * scale)] = 4.0
        label[z <= -trend_z] = 1.0
        label[z >= trend_z] = 0.0
        label[vol_ratio >= high_vol_ratio] = 3.0
    label[np.isnan(sigma_ref) | np.isnan(sigma_fwd) | (sigma_ref == 0)] = np.nan
    return pd.Series(label, index=bars.index, name=f"regime_{horizon}")


def episode_start_label(bars: pd.DataFrame, horizon: int) -> pd.Series:
    """1.0 on bars where an episode of the next ``horizon`` bars can start, NaN on the last ``horizon``
    bars: the label column of an episodic spec (the execution family), whose policy learns from
    replayed episodes, not from a per-bar target."""
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 bar, got {horizon}")
    label = pd.Series(1.0, index=bars.index)
    label.iloc[-horizon:] = np.nan
    return label


def zero_label(bars: pd.DataFrame) -> pd.Series:
    """0.0 on every bar: the label column of an unsupervised spec, whose model ignores ``y``."""
    return pd.Series(0.0, index=bars.index)


# -- horizons in hours ------------------------------------------------------------------------


def bars_for_hours(hours: float, bar_hours: float) -> int:
    """Bars that cover ``hours`` on bars of ``bar_hours`` each, at least one (a daily bar covers 24h)."""
    if not hours > 0 or not bar_hours > 0:
        raise ValueError(f"hours and bar_hours must be positive, got {hours!r} and {bar_hours!r}")
    return max(1, int(round(hours / bar_hours)))


def hours_name(hours: float) -> str:
    """``1h``, ``4h``; whole days as ``1d``: the suffix of the multi-horizon label names."""
    return f"{int(hours // 24)}d" if hours >= 24 and hours % 24 == 0 else f"{hours:g}h"


def forward_log_volume(bars: pd.DataFrame, horizon: int) -> pd.Series:
    """``ln(1 + sum(volume[t+1 .. t+horizon]))``: the volume still to come over the next ``horizon`` bars."""
    _check_horizon(horizon)
    volume = _column(bars, "volume")
    if (volume < 0).any():
        raise ValueError("volume must be non-negative")
    cumulative = np.concatenate([[0.0], np.cumsum(volume)])
    out = np.full(len(volume), np.nan)
    n = len(volume) - horizon
    if n > 0:
        out[:n] = np.log1p(cumulative[horizon + 1: horizon + 1 + n] - cumulative[1: n + 1])
    return pd.Series(out, index=bars.index)


def liquidity_targets(bars: pd.DataFrame, *, bar_hours: float, hours: tuple[float, ...] = (6, 12, 24)) -> pd.DataFrame:
    """``liq_log_volume_<H>``: ln(1 + volume summed over the next H hours), one column per horizon.

    Bars that record no volume at all (no ``volume`` column, or no positive value, as arch's WTI
    and crude series) have nothing to forecast: every label is NaN, so the spec is skipped there."""
    names = [f"liq_log_volume_{hours_name(h)}" for h in hours]
    if "volume" not in bars.columns or not (bars["volume"] > 0).any() and not (bars["volume"] < 0).any():
        return pd.DataFrame(np.nan, index=bars.index, columns=names)
    return pd.DataFrame({name: forward_log_volume(bars, bars_for_hours(h, bar_hours)) for name, h in zip(names, hours)},
                        index=bars.index)


def multi_horizon_returns(bars: pd.DataFrame, *, bar_hours: float, hours: tuple[float, ...] = (1, 4, 24)
                          ) -> pd.DataFrame:
    """For each horizon H (in hours, converted to bars): ``label_return_<H>`` (log return of the close),
    ``label_max_gain_<H>`` (max high / close - 1: the largest favourable move of a long) and
    ``label_max_loss_<H>`` (min low / close - 1: the largest adverse move), over bars t+1 .. t+H."""
    out: dict[str, pd.Series] = {}
    for h in hours:
        n, name = bars_for_hours(h, bar_hours), hours_name(h)
        moves = excursions(bars, n)
        out[f"label_return_{name}"] = forward_return(bars, n)
        out[f"label_max_gain_{name}"] = moves[f"mfe_{n}"]
        out[f"label_max_loss_{name}"] = moves[f"mae_{n}"]
    frame = pd.DataFrame(out, index=bars.index)
    order = [f"label_{kind}_{hours_name(h)}" for kind in ("return", "max_gain", "max_loss") for h in hours]
    return frame[order]


def multi_horizon_directions(bars: pd.DataFrame, *, bar_hours: float, hours: tuple[float, ...] = (1, 4, 24),
                             threshold: float = 0.001) -> pd.DataFrame:
    """``label_direction_<H>``: 0 down, 1 neutral, 2 up, by the H-hour log return against ±``threshold``."""
    if not threshold >= 0:
        raise ValueError(f"threshold must be non-negative, got {threshold!r}")
    return pd.DataFrame({f"label_direction_{hours_name(h)}":
                         direction_three_class(bars, bars_for_hours(h, bar_hours), threshold) for h in hours},
                        index=bars.index)


def multi_horizon_labels(bars: pd.DataFrame, *, bar_hours: float, hours: tuple[float, ...] = (1, 4, 24),
                         threshold: float = 0.001) -> pd.DataFrame:
    """:func:`multi_horizon_returns` and :func:`multi_horizon_directions` side by side: the returns
    family's label frame (its specs train on the first; the direction labels are stored beside them)."""
    return pd.concat([multi_horizon_returns(bars, bar_hours=bar_hours, hours=hours),
                      multi_horizon_directions(bars, bar_hours=bar_hours, hours=hours, threshold=threshold)], axis=1)
