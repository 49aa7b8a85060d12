"""Labels of the non-direction families, computed from bars alone.

The platform's label rules live in :mod:`features.labels`; the regime, σ-reversion and
realized-volatility labels here are thin adapters onto it (bars frame in, one Series out),
so a spec's ``make_label(bars)`` stays a one-liner. The two rules ``features.labels`` does not
have are written here: momentum acceleration and the 0-100 risk percentile.

Conventions (those of :mod:`features.labels`): a label at bar t looks at bars
``t+1 .. t+horizon``; it is NaN where that window runs past the last bar or a backward-looking
reference is still warming up. Anything that normalizes a label uses only bars up to ``t`` or
labels of earlier bars, never a statistic of the whole frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import labels as platform_labels

REGIME_NAMES: tuple[str, ...] = tuple(platform_labels.REGIME_NAMES)
"""trend_up, trend_down, range_bound, high_volatility, consolidation (label value = index)."""


def forward_log_return(close: pd.Series, horizon: int) -> pd.Series:
    """``ln(close_{t+h} / close_t)``."""
    return platform_labels.forward_return(close, horizon, log=True)


def past_log_return(close: pd.Series, horizon: int) -> pd.Series:
    """``ln(close_t / close_{t-h})``: known at t."""
    log_close = np.log(close.astype(float))
    return log_close - log_close.shift(horizon)


def forward_realized_vol(close: pd.Series, horizon: int) -> pd.Series:
    """Realized volatility of the next ``horizon`` bars: ``sqrt(mean(r_{t+1}^2 .. r_{t+h}^2))``.

    The root mean square of the 1-bar log returns, i.e. their standard deviation with the mean
    taken as zero (``features.labels.future_realized_vol``). Units: per-bar log return.
    """
    return platform_labels.future_realized_vol(close, (horizon,)).iloc[:, 0]


def regime_labels(bars: pd.DataFrame, horizon: int = 20) -> pd.Series:
    """Regime of the next ``horizon`` bars as an index into :data:`REGIME_NAMES`
    (``features.labels.regime_label``: high vol, then trend up/down, then consolidation, else range)."""
    return platform_labels.regime_label(bars["high"], bars["low"], bars["close"], horizon=horizon)


def sigma_reversion(bars: pd.DataFrame, horizon: int = 20, window: int = 20, k: float = 1.0) -> pd.Series:
    """The σ-reversion gate's label (``features.labels.sigma_reversion_label``): 1 if, within the next
    ``horizon`` closes, price moves toward its ``window``-bar mean by at least ``k`` σ."""
    return platform_labels.sigma_reversion_label(bars["close"], horizon, window=window, k=k)


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


def forward_max_excursion(bars: pd.DataFrame, horizon: int) -> pd.Series:
    """Largest move against a position of either side over the next ``horizon`` bars.

    ``max(MFE, -MAE)`` of ``features.labels.excursions`` (simple returns from ``close_t`` to the
    highest high / lowest low of bars ``t+1 .. t+h``): the maximum adverse excursion of the
    worse of a long and a short opened at ``close_t``.
    """
    ex = platform_labels.excursions(bars["high"], bars["low"], bars["close"], horizon)
    return np.maximum(ex[f"mfe_{horizon}"], -ex[f"mae_{horizon}"]).rename(f"max_excursion_{horizon}")


def risk_percentile(bars: pd.DataFrame, horizon: int = 20, lookback: int = 2000) -> pd.Series:
    """Risk label on a 0-100 scale: the percentile of :func:`forward_max_excursion` at t among
    the values of the trailing ``lookback`` bars (itself included; at least ``lookback // 4``).

    The scale is causal: it compares a bar with earlier bars only, so the label means the
    same thing in any training window and needs no fitted map.
    """
    excursion = forward_max_excursion(bars, horizon)
    pct = excursion.rolling(lookback, min_periods=max(lookback // 4, 2)).rank(pct=True) * 100.0
    return pct.where(excursion.notna()).rename(f"risk_pct_{horizon}")
