"""Cross-asset correlation features and the forward correlation-regime label of a universe.

A universe is a set of symbols on one timeframe. Its closes are joined on the timestamps that
every member has (:func:`universe_closes`), so a row exists only when every member printed.
Everything at row t uses the members' one-bar log returns up to t only:

- ``xa_avg_abs_corr_W``: mean |ρ_ij| over the member pairs i < j of the correlation matrix of
  the last ``W`` returns (0 to 1);
- ``xa_eig1_share_W``: the largest eigenvalue of that matrix divided by the number of members
  (the share of variance of the first principal component, 1/N to 1);
- ``xa_corr_dispersion_W``: the standard deviation of the signed pairwise correlations;
- the same three ``W`` rows earlier (suffix ``_lagW``): the previous, non-overlapping window;
- ``xa_avg_abs_corr_W_pctN``: the rank of the current average in the trailing ``N`` rows'
  averages (0 to 1, the current row included).

The label ``corr_regime_W`` (:func:`forward_correlation_regime`) is the tercile of the *next*
``W`` rows' average |ρ| within the trailing ``N`` averages known at t: 0 tight (top third),
1 normal, 2 dispersed (bottom third). It looks at rows t+1..t+W and is NaN where that window
or the trailing history is incomplete.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd

REGIME_NAMES = ("tight", "normal", "dispersed")
# Recorded regime switches are market events of type ``correlation_switch_to_<regime>``.
SWITCH_EVENT_PREFIX = "correlation_switch_to_"
SUMMARIES = ("avg_abs_corr", "eig1_share", "corr_dispersion")


def summary_names(window: int, rank_window: int) -> dict[str, str]:
    """Column names by role: ``current_*``, ``lagged_*`` and ``rank`` (see the module doc)."""
    names = {f"current_{s}": f"xa_{s}_{window}" for s in SUMMARIES}
    names.update({f"lagged_{s}": f"xa_{s}_{window}_lag{window}" for s in SUMMARIES})
    names["rank"] = f"xa_avg_abs_corr_{window}_pct{rank_window}"
    return names


def universe_closes(closes: Mapping[str, pd.Series]) -> pd.DataFrame:
    """Closes of every member on the timestamps they all have (inner join), members as columns."""
    if len(closes) < 2:
        raise ValueError(f"a correlation universe needs at least 2 members, got {len(closes)}")
    frames = []
    for symbol, series in closes.items():
        if not isinstance(series.index, pd.DatetimeIndex):
            raise ValueError(f"{symbol}: closes must have a DatetimeIndex")
        if not series.index.is_monotonic_increasing or series.index.has_duplicates:
            raise ValueError(f"{symbol}: timestamps must be unique and increasing")
        values = series.astype(float)
        if (values <= 0).any():
            raise ValueError(f"{symbol}: closes must be positive")
        frames.append(values.rename(symbol))
    return pd.concat(frames, axis=1, join="inner").sort_index()


def log_returns(closes: pd.DataFrame) -> pd.DataFrame:
    """One-bar log returns of each member (the first row is NaN)."""
    if {"open", "high", "low", "close"} <= set(closes.columns):
        raise ValueError("a correlation universe needs the members' closes as columns (universe_closes), "
                         "not one symbol's bars")
    return np.log(closes).diff()


def rolling_correlation_summaries(returns: pd.DataFrame, window: int) -> pd.DataFrame:
    """``avg_abs_corr``, ``eig1_share``, ``corr_dispersion`` of the last ``window`` returns at each row.

    NaN until ``window`` complete return rows exist. A member whose returns are constant in a
    window has no correlation there: its pairs are left out of the averages, and its row and
    column count as uncorrelated (0) in the eigenvalue.
    """
    if window < 3:
        raise ValueError(f"window must be at least 3 bars, got {window}")
    values = returns.to_numpy(dtype=np.float64)
    n_rows, n_assets = values.shape
    out = np.full((n_rows, 3), np.nan)
    first = 1  # row 0 has no return
    if n_rows - first >= window:
        blocks = np.lib.stride_tricks.sliding_window_view(values[first:], window, axis=0)  # [T, N, W]
        centred = blocks - blocks.mean(axis=2, keepdims=True)
        scale = np.sqrt((centred ** 2).sum(axis=2))  # [T, N]
        with np.errstate(invalid="ignore", divide="ignore"):
            unit = centred / scale[:, :, None]
        corr = np.einsum("tiw,tjw->tij", unit, unit)  # NaN rows/columns for constant members
        upper = np.triu_indices(n_assets, k=1)
        pairs = corr[:, upper[0], upper[1]]
        with warnings.catch_warnings():  # all-NaN rows (a constant member everywhere) give NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            avg_abs = np.nanmean(np.abs(pairs), axis=1)
            dispersion = np.nanstd(pairs, axis=1)
        filled = np.nan_to_num(corr, nan=0.0)
        filled[:, np.arange(n_assets), np.arange(n_assets)] = 1.0
        eig1 = np.linalg.eigvalsh(filled)[:, -1] / n_assets
        finite = np.isfinite(blocks).all(axis=(1, 2))
        out[first + window - 1:] = np.where(finite[:, None], np.column_stack([avg_abs, eig1, dispersion]), np.nan)
    return pd.DataFrame(out, index=returns.index, columns=list(SUMMARIES))


def trailing_rank(values: pd.Series, reference: pd.Series, rank_window: int) -> pd.Series:
    """Share of ``reference``'s last ``rank_window`` values (rows t-N+1..t) below ``values`` at t.

    NaN until the trailing window holds ``rank_window`` finite values.
    """
    ref = reference.to_numpy(dtype=np.float64)
    current = values.to_numpy(dtype=np.float64)
    out = np.full(len(ref), np.nan)
    if len(ref) >= rank_window:
        history = np.lib.stride_tricks.sliding_window_view(ref, rank_window)  # row k ends at k + N - 1
        ends = np.arange(rank_window - 1, len(ref))
        complete = np.isfinite(history).all(axis=1)
        below = (history < current[ends, None]).mean(axis=1)
        out[ends] = np.where(complete & np.isfinite(current[ends]), below, np.nan)
    return pd.Series(out, index=reference.index)


def correlation_features(closes: pd.DataFrame, window: int = 40, rank_window: int = 500) -> pd.DataFrame:
    """The universe's correlation features (module doc) on the joined closes' index."""
    summaries = rolling_correlation_summaries(log_returns(closes), window)
    names = summary_names(window, rank_window)
    frame = pd.DataFrame(index=closes.index)
    for s in SUMMARIES:
        frame[names[f"current_{s}"]] = summaries[s]
    for s in SUMMARIES:
        frame[names[f"lagged_{s}"]] = summaries[s].shift(window)
    frame[names["rank"]] = trailing_rank(summaries["avg_abs_corr"], summaries["avg_abs_corr"], rank_window)
    return frame


def forward_correlation_regime(closes: pd.DataFrame, window: int = 40, rank_window: int = 500) -> pd.Series:
    """Label ``corr_regime_W`` (module doc): tercile of the next ``window`` rows' average |ρ|."""
    average = rolling_correlation_summaries(log_returns(closes), window)["avg_abs_corr"]
    forward = average.shift(-window)  # the window of rows t+1..t+W
    rank = trailing_rank(forward, average, rank_window)
    label = pd.Series(np.where(rank >= 2 / 3, 0.0, np.where(rank < 1 / 3, 2.0, 1.0)), index=closes.index)
    return label.where(rank.notna()).rename(f"corr_regime_{window}")


def universe_next_return(closes: pd.DataFrame) -> pd.Series:
    """The equal-weighted universe's simple return over the next row (for the platform's Dataset)."""
    return closes.pct_change().mean(axis=1).shift(-1)
