"""Finite-memory versions of TA-Lib's exponential smoothers, plus small array helpers.

TA-Lib's EMA (and everything built on it or on Wilder's smoothing: MACD, RSI, ATR, ADX)
is an infinite recursion ``F_t = a*x_t + (1-a)*F_{t-1}``. Its value depends, ever more
weakly, on every bar since the start of the series and on the seed, so a batch run over a
year of bars and a streaming run over the last few hundred bars never agree exactly.

This feature set therefore uses the **truncated EMA**: the EMA weights restricted to the
last ``L`` bars and renormalised so that they sum to one::

    tema_t = sum_{j<L} a (1-a)^j x_{t-j} / (1 - (1-a)^L)

It depends on exactly ``L`` bars. It is computed in O(n) from TA-Lib's own EMA, whatever
its seed, because the seed and every bar before ``t-L+1`` cancel out of::

    F_t - (1-a)^L F_{t-L} = sum_{j<L} a (1-a)^j x_{t-j}

The default ``L = 2 * period`` keeps 98% of the EMA's weight (``(1-a)^L ~ e^-4``).

Rounding: running sums and recursions leave residues of about 1e-16 of the history's
magnitude where the exact result is 0 (a flat market: zero true range, zero returns).
Those residues differ between a long batch and a short window, and a ratio of two of them
is garbage. Helpers here therefore detect exactly-zero or exactly-constant windows with
TA-Lib's MAX/MIN (which are exact) and return exact zeros there. Rolling functions of
price levels run on the level minus a nearby anchor (:func:`centered_talib`), so their
running sums do not lose the digits the level takes up.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from features import talib_raw as talib  # TA-Lib C functions without the package's pandas wrapper

__all__ = [
    "ema_length",
    "wilder_length",
    "truncated_ema",
    "wilder",
    "safe_divide",
    "first_valid_index",
    "shift",
    "rolling_constant",
    "mean_of_nonnegative",
    "ratio_of_sums",
    "Centering",
    "centered_talib",
    "level_stddev",
    "rolling_stddev",
    "zscore",
]


def ema_length(period: int) -> int:
    """Bars of memory of :func:`truncated_ema` for an EMA of ``period`` (alpha = 2/(period+1))."""
    return 2 * period


def wilder_length(period: int) -> int:
    """Bars of memory of :func:`wilder` (Wilder's smoothing = EMA with alpha = 1/period)."""
    return ema_length(2 * period - 1)


def first_valid_index(x: np.ndarray) -> int:
    """Index of the first non-NaN value (``len(x)`` if there is none)."""
    finite = ~np.isnan(x)
    return int(finite.argmax()) if finite.any() else len(x)


def truncated_ema(x: np.ndarray, period: int, length: int | None = None) -> np.ndarray:
    """EMA(``period``) over the trailing ``length`` bars only (see module docstring).

    ``x`` may start with NaNs (an indicator's warm-up) but must be finite afterwards. The
    result is NaN for the first ``first_valid + length - 1`` bars.
    """
    length = ema_length(period) if length is None else length
    n = len(x)
    first = 0 if n and x[0] == x[0] else first_valid_index(x)  # x[0] == x[0]: not NaN
    start = first + length - 1
    out = np.empty(n)
    if start >= n:
        out.fill(np.nan)
        return out
    out[:start] = np.nan
    # Seed TA-Lib's EMA with `period` copies of the first value; the EMA output at the
    # last seed copy stands for a virtual bar just before `first`, and cancels below.
    padded = np.empty(n - first + period)
    padded[:period] = x[first]
    padded[period:] = x[first:]
    recursion = talib.EMA(padded, period)[period - 1 :]
    decay, scale = _truncation_constants(period, length)
    tail = out[start:]
    np.multiply(recursion[:-length], decay, out=tail)
    np.subtract(recursion[length:], tail, out=tail)
    tail *= scale
    return out


@lru_cache(maxsize=None)
def _truncation_constants(period: int, length: int) -> tuple[float, float]:
    """``(1-a)^length`` and ``1 / (1 - (1-a)^length)`` for alpha ``a = 2/(period+1)``."""
    decay = (1.0 - 2.0 / (period + 1)) ** length
    return decay, 1.0 / (1.0 - decay)


def wilder(x: np.ndarray, period: int) -> np.ndarray:
    """Wilder's smoothing (alpha = 1/period, as in RSI/ATR/ADX) of a NON-NEGATIVE series,
    truncated to :func:`wilder_length` bars. An EMA of period ``2*period - 1`` has alpha
    ``1/period``. Exactly 0 where the whole window is 0."""
    length = wilder_length(period)
    out = truncated_ema(x, 2 * period - 1, length)
    out[talib.MAX(x, length) == 0.0] = 0.0
    return out


def safe_divide(numerator: np.ndarray, denominator: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """``numerator / denominator``, with ``fill`` where the denominator is exactly 0.

    NaNs (warm-up) propagate. A zero denominator means a degenerate but valid bar (a flat
    price range, no volume), so the ratio takes its neutral value instead of inf.
    """
    nonzero = denominator != 0  # NaN counts as non-zero
    if np.count_nonzero(nonzero) == nonzero.size:
        return numerator / denominator
    out = np.full(np.shape(denominator), fill)
    np.divide(numerator, denominator, out=out, where=nonzero)
    out[~nonzero & np.isnan(numerator)] = np.nan
    return out


def shift(x: np.ndarray, periods: int) -> np.ndarray:
    """``x`` delayed by ``periods`` bars (value at t is ``x[t-periods]``), NaN-padded."""
    out = np.empty_like(x)
    out[:periods] = np.nan
    out[periods:] = x[:-periods]
    return out


def rolling_constant(x: np.ndarray, period: int) -> np.ndarray:
    """True where the last ``period`` values are all equal (exact, via TA-Lib MAX/MIN)."""
    return talib.MAX(x, period) == talib.MIN(x, period)


def mean_of_nonnegative(x: np.ndarray, period: int) -> np.ndarray:
    """TA-Lib SMA of a non-negative series, clamped at 0 and exactly 0 where the whole
    window is 0 (squared returns of a flat market, say)."""
    mean = np.maximum(talib.SMA(x, period), 0.0)
    mean[talib.MAX(x, period) == 0.0] = 0.0
    return mean


def ratio_of_sums(
    numerator: np.ndarray,
    denominator: np.ndarray,
    period: int,
    fill: float = 0.0,
    denominator_sum: np.ndarray | None = None,
) -> np.ndarray:
    """Σ numerator / Σ denominator over ``period`` bars, for a NON-NEGATIVE denominator
    (volume, say); ``fill`` where the denominator is 0 over the whole window (an exact test:
    the running sum would leave a residue there)."""
    if denominator_sum is None:
        denominator_sum = talib.SUM(denominator, period)
    ratio = safe_divide(talib.SUM(numerator, period), denominator_sum, fill)
    ratio[talib.MAX(denominator, period) == 0.0] = fill
    return ratio


CENTERING_BLOCK = 512


class Centering:
    """Per-block anchors for :func:`centered_talib`, taken from a reference level series
    (the close), with the reference's shifted copy cached for reuse.

    The anchor of bar t is the reference's first value in t's block of
    :data:`CENTERING_BLOCK` bars. In a series longer than a block, a window that crosses a
    block boundary is computed again with the anchor of the block staggered by half a block
    (see :func:`centered_talib`), so every window lies inside one block. Anchors depend only
    on a bar's position, never on later bars, so a prefix of the series gets exactly the
    anchors it gets inside the whole series.
    """

    def __init__(self, reference: np.ndarray) -> None:
        n = len(reference)
        self.reference = reference
        self.single_block = n <= CENTERING_BLOCK  # the online path and short histories
        if self.single_block:
            self.anchor = np.full(n, reference[0]) if n else np.empty(0)
        else:
            self.anchor = reference[_block_starts(n)]
        self.shifted_reference = reference - self.anchor

    def shift(self, level: np.ndarray) -> np.ndarray:
        """``level - anchor``."""
        if level is self.reference:
            return self.shifted_reference
        return level - self.anchor


def centered_talib(
    function: Callable[..., np.ndarray | tuple[np.ndarray, ...]],
    levels: tuple[np.ndarray, ...],
    period: int,
    *args: float,
    others: tuple[np.ndarray, ...] = (),
    centering: Centering | None = None,
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Run a rolling TA-Lib function on price levels minus a nearby anchor.

    ``function(*(level - anchor), *others, period, *args)`` must be shift-equivariant in the
    levels (STDDEV, BBANDS, LINEARREG_SLOPE, CCI, ...). TA-Lib keeps running sums of x and
    x², so on a raw price level (σ ~ 1e-4 of the price on quiet 1-minute bars) it loses
    ``(level/σ)²`` of precision, and a long batch and a short window disagree by far more
    than 1e-9. With anchors from a nearby bar (see :class:`Centering`; by default built
    from ``levels[0]``), the loss no longer depends on the price level.

    Inputs must be finite, ``period <= CENTERING_BLOCK // 2``. Returns ``(anchor,
    outputs)``: ``anchor[t]`` was subtracted for bar t's value; outputs are in the shifted
    coordinates (add the anchor back for levels, differences need nothing).
    """
    centering = Centering(levels[0]) if centering is None else centering
    first = function(*(centering.shift(level) for level in levels), *others, period, *args)
    first = first if isinstance(first, tuple) else (first,)
    anchor = centering.anchor
    if centering.single_block or period < 2:
        return anchor, first
    # The windows that cross a block boundary of the first pass take the staggered pass. It
    # runs only on the stretches around the boundaries, concatenated into one series (each
    # stretch with its own anchor); a wanted window never reaches into another stretch.
    series_index, anchor_index, wanted, positions = _boundary_stretches(len(levels[0]), period)
    stretch_anchor = centering.reference[anchor_index]
    second = function(*(level[series_index] - stretch_anchor for level in levels),
                      *(other[series_index] for other in others), period, *args)
    second = second if isinstance(second, tuple) else (second,)
    anchor = anchor.copy()
    anchor[positions] = stretch_anchor[wanted]
    for out_first, out_second in zip(first, second):
        out_first[positions] = out_second[wanted]
    return anchor, first


@lru_cache(maxsize=16)
def _boundary_stretches(n: int, period: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stretches around each first-pass block boundary b: bars ``b - period + 1 .. b + period - 2``.

    Returns the series index of every element of their concatenation, the index of its
    staggered-pass anchor (``b - CENTERING_BLOCK // 2``), which elements are wanted (bars
    ``b .. b + period - 2``, whose window lies in the stretch) and the bars they are."""
    boundaries = np.arange(CENTERING_BLOCK, n, CENTERING_BLOCK)
    offsets = np.arange(2 * (period - 1))
    series_index = (boundaries[:, None] - (period - 1) + offsets[None, :]).ravel()
    anchor_index = np.repeat(boundaries - CENTERING_BLOCK // 2, len(offsets))
    wanted = np.tile(offsets >= period - 1, len(boundaries))
    inside = series_index < n
    series_index, anchor_index, wanted = series_index[inside], anchor_index[inside], wanted[inside]
    return series_index, anchor_index, np.flatnonzero(wanted), series_index[wanted]


@lru_cache(maxsize=8)
def _block_starts(n: int) -> np.ndarray:
    """For each bar, the index where its centering block starts."""
    return np.arange(n) // CENTERING_BLOCK * CENTERING_BLOCK


def level_stddev(
    x: np.ndarray, period: int, constant: np.ndarray | None = None, centering: Centering | None = None
) -> np.ndarray:
    """Rolling population σ of a level series (a price), well conditioned (see
    :func:`centered_talib`) and exactly 0 on a constant window (``constant``: the
    precomputed ``rolling_constant(x, period)``, if at hand)."""
    std = centered_talib(talib.STDDEV, (x,), period, centering=centering)[1][0]
    std[rolling_constant(x, period) if constant is None else constant] = 0.0
    return std


def rolling_stddev(x: np.ndarray, period: int) -> np.ndarray:
    """TA-Lib STDDEV (population σ) of a series whose spread is not tiny next to its level
    (else use :func:`level_stddev`); exactly 0 on a constant window, where TA-Lib's σ
    would be a running-sum rounding residue."""
    std = talib.STDDEV(x, period)
    std[rolling_constant(x, period)] = 0.0
    return std


def zscore(x: np.ndarray, period: int) -> np.ndarray:
    """Rolling z-score ``(x - SMA) / STDDEV`` over ``period`` bars (population σ), 0 on a
    constant window (see :func:`rolling_stddev`)."""
    return safe_divide(x - talib.SMA(x, period), rolling_stddev(x, period))
