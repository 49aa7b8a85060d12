"""Window arithmetic of the online engine (:mod:`features.online`): truncated EMA and Wilder
weights, strided views of the last windows, and the guarded reductions (division with a fill,
standard deviation that is exactly 0 on a flat window, z-score, ratio of sums, VWAP)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from features import talib_raw as talib  # TA-Lib C functions without the package's pandas wrapper
from features.smoothing import _truncation_constants, ema_length, wilder_length


@lru_cache(maxsize=None)
def ema_weights(period: int, length: int) -> np.ndarray:
    """Weights of the truncated EMA over a window ordered oldest to newest."""
    alpha = 2.0 / (period + 1)
    _, scale = _truncation_constants(period, length)
    weights = (alpha * (1.0 - alpha) ** np.arange(length) * scale)[::-1].copy()
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=None)
def ema_weight_matrix(periods_and_lengths: tuple[tuple[int, int], ...]) -> np.ndarray:
    """One column of :func:`ema_weights` per ``(period, length)``, aligned on the newest bar
    (zeros before a shorter window), so one product gives several EMAs."""
    rows = max(length for _, length in periods_and_lengths)
    matrix = np.zeros((rows, len(periods_and_lengths)))
    for column, (period, length) in enumerate(periods_and_lengths):
        matrix[rows - length:, column] = ema_weights(period, length)
    matrix.setflags(write=False)
    return matrix


def windows(x: np.ndarray, length: int, count: int) -> np.ndarray:
    """The last ``count`` windows of ``length`` values of a C-contiguous ``x`` (1-D, or 2-D
    for one set of windows per row), as a read-only ``(..., count, length)`` view; window i
    ends at bar ``-count + i``."""
    columns = x.shape[-1]
    start = columns - (length + count - 1)
    shape, strides = (count, length), (8, 8)
    if x.ndim == 2:
        shape, strides = (x.shape[0], *shape), (columns * 8, *strides)
    view = np.ndarray(shape, np.float64, x, start * 8, strides)
    view.flags.writeable = False
    return view


def tema(x: np.ndarray, period: int, count: int = 1, length: int | None = None) -> np.ndarray | float:
    """:func:`features.smoothing.truncated_ema` at the last bar (a float), or at the last
    ``count`` bars (an array)."""
    length = ema_length(period) if length is None else length
    weights = ema_weights(period, length)
    if count == 1:
        return float(x[-length:] @ weights)
    return windows(x, length, count) @ weights


def wilder(x: np.ndarray, period: int, count: int = 1) -> np.ndarray | float:
    """:func:`features.smoothing.wilder` of a non-negative series at the last bar(s). A
    window of zeros gives exactly 0, as in the batch engine."""
    return tema(x, 2 * period - 1, count, wilder_length(period))


def divide(numerator: float, denominator: float, fill: float = 0.0) -> float:
    """:func:`features.smoothing.safe_divide` for one value."""
    return numerator / denominator if denominator != 0.0 else fill


def divide_arrays(numerator: np.ndarray, denominator: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """:func:`features.smoothing.safe_divide` for arrays without NaN."""
    if np.count_nonzero(denominator) == denominator.size:
        return numerator / denominator
    out = np.full(denominator.shape, fill)
    np.divide(numerator, denominator, out=out, where=denominator != 0.0)
    return out


def is_constant(window: np.ndarray) -> bool:
    """All values equal (exact)."""
    return bool(np.maximum.reduce(window) == np.minimum.reduce(window))


def stddev(window: np.ndarray, constant: bool | None = None) -> float:
    """:func:`features.smoothing.rolling_stddev` at the last bar: TA-Lib's STDDEV (with
    its zero threshold), exactly 0 on a constant window."""
    std = float(talib.STDDEV(window, len(window))[-1])
    if std == 0.0:
        return std
    if constant is None:
        # On a constant window TA-Lib leaves at most a residue of ~1e-8 of the level: only a
        # σ that small needs the exact check.
        constant = std < 1e-6 * (abs(float(window[-1])) + 1.0) and is_constant(window)
    return 0.0 if constant else std


def zscore(window: np.ndarray) -> float:
    """:func:`features.smoothing.zscore` at the last bar of ``window`` (its length is the period)."""
    mean = float(np.add.reduce(window)) / len(window)
    return divide(float(window[-1]) - mean, stddev(window))


def mean_of_nonnegative(window: np.ndarray) -> float:
    """:func:`features.smoothing.mean_of_nonnegative`: the mean, exactly 0 on zeros."""
    return max(float(np.add.reduce(window)) / len(window), 0.0)


def ratio_of_sums(numerator: np.ndarray, denominator: np.ndarray, fill: float = 0.0) -> float:
    """:func:`features.smoothing.ratio_of_sums` over the given windows."""
    if not np.maximum.reduce(denominator) > 0.0:  # no volume in the window
        return fill
    return divide(float(np.add.reduce(numerator)), float(np.add.reduce(denominator)), fill)


def vwap(price: np.ndarray, volume: np.ndarray, anchor: float) -> float:
    """:func:`features.indicators.rolling_vwap` over the given windows (centred on ``anchor``)."""
    shifted = price - anchor
    if not np.maximum.reduce(volume) > 0.0:
        return float(np.add.reduce(shifted)) / len(shifted) + anchor
    return float(shifted @ volume) / float(np.add.reduce(volume)) + anchor

