"""Rule-based labels of the issue-5 families, computed from bars alone.

Every function maps a canonical bar frame (``open, high, low, close, volume``, time-ordered
index) to a Series on the same index. A label at bar t looks at bars ``t+1 .. t+horizon``
(that is what makes it a label), and it is NaN where that window runs past the last bar, so
a training set never holds a label computed from a truncated future. Anything that
normalizes a label (a reference volatility, a percentile) uses only bars up to ``t`` or
labels of earlier bars, never a statistic of the whole frame.

``features.labels`` is another engineer's module; when it grows equivalent rules, the specs in
:mod:`models.family_specs` can switch to them without touching the estimators.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REGIME_NAMES: tuple[str, ...] = ("trend_up", "trend_down", "range_bound", "high_volatility", "consolidation")


def log_returns(close: pd.Series) -> pd.Series:
    """1-bar log returns ``ln(close_t / close_t-1)`` (NaN at the first bar)."""
    return np.log(close.astype(float)).diff()


def forward_log_return(close: pd.Series, horizon: int) -> pd.Series:
    """``ln(close_{t+h} / close_t)``."""
    log_close = np.log(close.astype(float))
    return log_close.shift(-horizon) - log_close


def past_log_return(close: pd.Series, horizon: int) -> pd.Series:
    """``ln(close_t / close_{t-h})``: known at t."""
    log_close = np.log(close.astype(float))
    return log_close - log_close.shift(horizon)


def forward_realized_vol(close: pd.Series, horizon: int) -> pd.Series:
    """Realized volatility of the next ``horizon`` bars: ``sqrt(mean(r_{t+1}^2 .. r_{t+h}^2))``.

    The root mean square of the 1-bar log returns, i.e. their standard deviation with the
    mean taken as zero (the usual realized-volatility convention, and the forward twin of
    the ``rv_n`` features). Units: per-bar log return.
    """
    squared = log_returns(close) ** 2
    return np.sqrt(squared.rolling(horizon, min_periods=horizon).mean().shift(-horizon))


def trailing_realized_vol(close: pd.Series, period: int) -> pd.Series:
    """``sqrt(mean(r_{t-period+1}^2 .. r_t^2))``: known at t."""
    return np.sqrt((log_returns(close) ** 2).rolling(period, min_periods=period).mean())


def regime_labels(bars: pd.DataFrame, horizon: int = 20, reference: int = 500, high_vol: float = 1.5,
                  low_vol: float = 0.7, trend_z: float = 1.0) -> pd.Series:
    """Regime of the next ``horizon`` bars, as an index into :data:`REGIME_NAMES`.

    With ``v`` the forward realized volatility (:func:`forward_realized_vol`), ``R`` the forward
    log return and ``ref`` the trailing realized volatility over ``reference`` bars (known at t),
    the first rule that holds wins:

    1. ``high_volatility`` (3): ``v > high_vol * ref``
    2. ``trend_up`` (0) / ``trend_down`` (1): ``|R| > trend_z * v * sqrt(horizon)`` (the move is
       more than ``trend_z`` standard deviations of a driftless walk at that volatility)
    3. ``consolidation`` (4): ``v < low_vol * ref`` (quiet, no trend)
    4. ``range_bound`` (2): otherwise.
    """
    close = bars["close"]
    vol = forward_realized_vol(close, horizon)
    ret = forward_log_return(close, horizon)
    ref = trailing_realized_vol(close, reference)
    trend = ret.abs() > trend_z * vol * np.sqrt(horizon)
    label = np.select(
        [vol > high_vol * ref, trend & (ret > 0), trend & (ret < 0), vol < low_vol * ref],
        [3.0, 0.0, 1.0, 4.0],
        2.0,
    )
    valid = vol.notna() & ret.notna() & ref.notna()
    return pd.Series(label, index=bars.index).where(valid)


def momentum_acceleration(close: pd.Series, horizon: int) -> pd.Series:
    """1 if momentum accelerates over the next ``horizon`` bars, 0 if it decelerates or reverses.

    With ``P = ln(c_t / c_{t-h})`` (past momentum) and ``F = ln(c_{t+h} / c_t)`` (forward),
    momentum accelerates when the forward move continues the past one with a larger
    magnitude: ``sign(P) * F > |P|``, i.e. the momentum slope ``sign(P) * (F - P)`` is
    positive. NaN where either return is missing or ``P == 0``. For a driftless walk the base
    rate is about 25%, and it falls with ``|P|`` (a large past move is hard to outrun), which
    a model can learn from the past-return features: that part of the signal is structural.
    """
    past = past_log_return(close, horizon)
    fwd = forward_log_return(close, horizon)
    label = (np.sign(past) * fwd > past.abs()).astype(float)
    return label.where(past.notna() & fwd.notna() & (past != 0))


def sigma_reversion(bars: pd.DataFrame, horizon: int = 20, period: int = 60, k: float = 1.0) -> pd.Series:
    """The Bitunix gate's label: 1 if price reverts toward its rolling mean by at least ``k`` sigma.

    ``m_t`` and ``s_t`` are the mean and standard deviation of the last ``period`` closes
    (known at t). Below the mean, the label is 1 when the highest close of bars
    ``t+1 .. t+horizon`` is at least ``close_t + k * s_t``; above the mean, when the lowest
    close is at most ``close_t - k * s_t``. NaN where the statistics or the window are
    incomplete, or the close sits exactly on the mean.
    """
    close = bars["close"].astype(float)
    mean = close.rolling(period, min_periods=period).mean()
    sigma = close.rolling(period, min_periods=period).std()
    fwd_max = close[::-1].rolling(horizon, min_periods=horizon).max()[::-1].shift(-1)
    fwd_min = close[::-1].rolling(horizon, min_periods=horizon).min()[::-1].shift(-1)
    below = close < mean
    reverted = np.where(below, fwd_max - close >= k * sigma, close - fwd_min >= k * sigma)
    valid = mean.notna() & sigma.notna() & fwd_max.notna() & (close != mean)
    return pd.Series(reverted.astype(float), index=bars.index).where(valid)


def forward_max_excursion(bars: pd.DataFrame, horizon: int) -> pd.Series:
    """Largest move against a position of either side over the next ``horizon`` bars.

    ``max_{k=1..h} max(ln(high_{t+k} / close_t), -ln(low_{t+k} / close_t))``: the maximum
    adverse excursion of the worse of a long and a short opened at ``close_t``.
    """
    close = bars["close"].astype(float)
    fwd_high = bars["high"].astype(float)[::-1].rolling(horizon, min_periods=horizon).max()[::-1].shift(-1)
    fwd_low = bars["low"].astype(float)[::-1].rolling(horizon, min_periods=horizon).min()[::-1].shift(-1)
    return np.maximum(np.log(fwd_high / close), -np.log(fwd_low / close))


def risk_percentile(bars: pd.DataFrame, horizon: int = 20, lookback: int = 2000) -> pd.Series:
    """Risk label on a 0-100 scale: the percentile of :func:`forward_max_excursion` at t among
    the values of the trailing ``lookback`` bars (itself included; at least ``lookback // 4``).

    The scale is causal: it compares a bar with earlier bars only, so the label means the
    same thing in any training window and needs no fitted map.
    """
    excursion = forward_max_excursion(bars, horizon)
    pct = excursion.rolling(lookback, min_periods=max(lookback // 4, 2)).rank(pct=True) * 100.0
    return pct.where(excursion.notna())
