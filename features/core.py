"""Batch and online feature computation: :func:`compute` and :func:`compute_latest`.

``compute`` runs the batch engine (:mod:`features.indicators`, :mod:`features.microstructure`)
over whole series. Every feature has finite memory (its value at bar t depends only on bars
``t - warmup .. t``), so ``compute_latest`` needs only the last :data:`LOOKBACK` bars; it
runs the online engine (:mod:`features.online`), which evaluates the same definitions at
the last bar only, and equals ``compute`` at that bar up to floating-point rounding (every
feature tested to 1e-9).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from functools import lru_cache

import numpy as np
import pandas as pd

from features.definitions import (
    LOOKBACK,
    MICROSTRUCTURE_COLUMNS,
    OHLCV_COLUMNS,
    WARMUP,
    FeatureInfo,
    catalog,
)
from features.indicators import BarArrays, Put, Task, ohlcv_tasks
from features.microstructure import microstructure_tasks
from features.online import latest_features
from features.smoothing import Centering

__all__ = ["compute", "compute_chunks", "compute_latest", "compute_latest_arrays", "compute_arrays", "to_bar_arrays", "default_n_jobs"]

# Below this many bars the engine runs on one thread: handing ~20 tasks to a second thread
# costs more than it saves when each numpy/TA-Lib call takes microseconds.
PARALLEL_MIN_BARS = 20_000

_OHLCV_INFOS = tuple(info for info in catalog() if info.group != "microstructure")
_MICRO_INFOS = tuple(info for info in catalog() if info.group == "microstructure")


@lru_cache(maxsize=64)
def _layout(extra_columns: frozenset[str]) -> tuple[tuple[FeatureInfo, ...], dict[str, int], pd.Index]:
    """Features produced for a set of microstructure columns, their rows and column index."""
    available = set(extra_columns) | set(OHLCV_COLUMNS)
    infos = _OHLCV_INFOS + tuple(info for info in _MICRO_INFOS if set(info.requires) <= available)
    return infos, {info.name: row for row, info in enumerate(infos)}, pd.Index([info.name for info in infos])


@lru_cache(maxsize=64)
def _names(extra_columns: frozenset[str]) -> tuple[str, ...]:
    return tuple(info.name for info in _layout(extra_columns)[0])


def to_bar_arrays(bars: pd.DataFrame, tail: int | None = None) -> BarArrays:
    """Validate ``bars`` (its last ``tail`` rows, if given) as contiguous float64 arrays.

    Raises ValueError, naming the column or timestamp, for: a missing OHLCV column, a
    non-datetime index, timestamps that are not strictly increasing, non-numeric values,
    NaN/inf in any used column, a non-positive price or a negative volume.
    """
    if not isinstance(bars, pd.DataFrame):
        raise ValueError(f"bars must be a pandas DataFrame, got {type(bars).__name__}")
    position = {name: i for i, name in enumerate(bars.columns)}
    missing = [name for name in OHLCV_COLUMNS if name not in position]
    if missing:
        raise ValueError(f"bars is missing required column(s) {missing}; need {list(OHLCV_COLUMNS)}")
    index = bars.index
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(f"bars must have a DatetimeIndex of bar open times (UTC), got {type(index).__name__}")
    start = 0 if tail is None else max(len(bars) - tail, 0)
    # asi8 of a tz-aware index is UTC; a naive index is taken as UTC.
    ts_ns = (index.asi8 if index.unit == "ns" else index.as_unit("ns").asi8)[start:]
    steps = ts_ns[1:] - ts_ns[:-1]
    if np.count_nonzero(steps > 0) != steps.size:
        bad = start + int(np.argmax(steps <= 0)) + 1
        raise ValueError(f"timestamps must be strictly increasing: ts[{bad}] = {index[bad]} follows {index[bad - 1]}")

    names = list(OHLCV_COLUMNS) + [name for name in MICROSTRUCTURE_COLUMNS if name in position]
    arrays, matrix = _float_columns(bars, names, position, start)
    if matrix is None or not _all_valid(matrix):
        _check_values(arrays, names, index, start)
    extra = {name: arrays[name] for name in names[len(OHLCV_COLUMNS) :]}
    return BarArrays(
        open=arrays["open"],
        high=arrays["high"],
        low=arrays["low"],
        close=arrays["close"],
        volume=arrays["volume"],
        ts_ns=ts_ns,
        extra=extra,
    )


def _all_valid(matrix: np.ndarray) -> bool:
    """Every value finite, prices (the first four rows) > 0 and volume (the fifth) >= 0.

    A quick test: a NaN or inf makes the sum non-finite (so can an overflow, which sends the
    bars to the exact per-column checks, and those pass)."""
    return bool(np.isfinite(np.add.reduce(matrix, axis=None)) and np.minimum.reduce(matrix[:4], axis=None) > 0.0
                and np.minimum.reduce(matrix[4]) >= 0.0)


def _check_values(arrays: dict[str, np.ndarray], names: list[str], index: pd.DatetimeIndex, start: int) -> None:
    """Raise ValueError naming the first column (and bar) with a NaN/inf, a non-positive price
    or a negative volume."""
    for name in names:
        values = arrays[name]
        # A NaN inside TA-Lib's running sums would poison every later value: fill gaps first.
        if np.count_nonzero(np.isfinite(values)) != values.size:
            bad = start + int(np.argmin(np.isfinite(values)))
            raise ValueError(f"column {name!r} has a NaN/inf value at {index[bad]} (fill or drop it first)")
    for name in OHLCV_COLUMNS:
        invalid = arrays[name] < 0 if name == "volume" else arrays[name] <= 0
        if np.count_nonzero(invalid):
            what = "a negative volume" if name == "volume" else "a non-positive price"
            raise ValueError(f"column {name!r} has {what} at {index[start + int(np.argmax(invalid))]}")


def _float_columns(
    bars: pd.DataFrame, names: list[str], position: dict[str, int], start: int
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Columns ``names`` from row ``start`` on, as contiguous float64 arrays, and (on the
    online path, ``start > 0``) the same as one ``(len(names), rows)`` matrix whose rows
    they are."""
    if start > 0:
        # Online path: one 2-D conversion is much cheaper than one Series per column. Falls
        # back to the per-column path (and its error message) if a column is not numeric.
        try:
            block = bars.to_numpy(dtype=np.float64, copy=False)
        except (TypeError, ValueError):
            pass
        else:
            matrix = np.ascontiguousarray(block[start:, [position[name] for name in names]].T)
            return dict(zip(names, matrix)), matrix
    arrays = {}
    for name in names:
        try:
            arrays[name] = np.ascontiguousarray(bars[name].to_numpy(dtype=np.float64)[start:])
        except (TypeError, ValueError) as error:
            raise ValueError(f"column {name!r} is not numeric: {error}") from error
    return arrays, None


def default_n_jobs() -> int:
    """Threads :func:`compute` uses by default: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def compute_arrays(bars: BarArrays, n_jobs: int | None = None) -> tuple[tuple[FeatureInfo, ...], np.ndarray]:
    """Run the engine on validated arrays, on ``n_jobs`` threads (default: the cores).

    Returns the features produced (catalog order) and a ``(n_features, n_bars)`` float64
    matrix; each feature's first ``warmup`` values are NaN. The values do not depend on
    ``n_jobs``: every feature is computed by the same code whichever thread runs it.
    """
    n_jobs = default_n_jobs() if n_jobs is None else n_jobs
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be at least 1, got {n_jobs}")
    infos, row_of, _ = _layout(frozenset(bars.extra))
    matrix = np.empty((len(infos), len(bars)))
    if len(bars) == 0:
        return infos, matrix
    produced: list[int] = []

    def put(name: str, values: np.ndarray) -> None:
        row = row_of[name]
        matrix[row] = values
        produced.append(row)

    threads = n_jobs if len(bars) >= PARALLEL_MIN_BARS else 1
    with ExitStack() as stack:
        if threads > 1:
            pool = stack.enter_context(ThreadPoolExecutor(max_workers=threads, thread_name_prefix="features"))
            each = pool.map
        else:
            each = map
        # Touch the whole output before the engine's temporaries come and go: faulting in ~1 GB
        # (a million bars) in one piece is markedly cheaper than row by row between them.
        for _ in each(_fill_nan, np.array_split(matrix, threads)):
            pass
        _run_engine(bars, put, each)
    if len(set(produced)) != len(infos):  # the engine and the catalog disagree: a bug, not bad input
        raise RuntimeError(f"engine produced {len(set(produced))} features, the catalog lists {len(infos)}")
    for row, info in enumerate(infos):
        matrix[row, : info.warmup] = np.nan
    return infos, matrix


def _fill_nan(block: np.ndarray) -> None:
    block.fill(np.nan)


def compute_latest_arrays(bars: BarArrays) -> tuple[tuple[FeatureInfo, ...], np.ndarray]:
    """Feature vector of the last bar of validated arrays holding at least LOOKBACK bars
    (only the last LOOKBACK are used). The numpy-only core of :func:`compute_latest`: the
    online engine of :mod:`features.online`."""
    if len(bars) < LOOKBACK:
        raise ValueError(_short_window_message(len(bars)))
    extra_columns = frozenset(bars.extra)
    infos, names = _layout(extra_columns)[0], _names(extra_columns)
    with np.errstate(all="ignore"):
        values = latest_features(bars)
    if len(values) != len(infos):  # the online engine and the catalog disagree: a bug, not bad input
        raise RuntimeError(f"online engine produced {len(values)} features, the catalog lists {len(infos)}")
    return infos, np.fromiter(map(values.__getitem__, names), np.float64, len(infos))


def _run_engine(bars: BarArrays, put: Put, each: Callable[..., Iterator[None]]) -> None:
    """Every feature task, run through ``each`` (``map``, or a thread pool's, which hands the
    tasks, costliest first, to whichever thread is free)."""

    def run(task: Task) -> None:
        with np.errstate(all="ignore"):  # the state is per thread
            task.run(put)

    with np.errstate(all="ignore"):
        centering = Centering(bars.close)  # shared by the OHLCV and microstructure features
        tasks = ohlcv_tasks(bars, centering) + microstructure_tasks(bars, centering)
    tasks.sort(key=lambda task: task.cost, reverse=True)
    for _ in each(run, tasks):
        pass


def compute(bars: pd.DataFrame, n_jobs: int | None = None) -> pd.DataFrame:
    """All features for every bar: one float64 column per feature, on ``bars.index``.

    ``bars`` needs columns open, high, low, close, volume (finite floats, prices > 0) and a
    strictly increasing DatetimeIndex of bar open times (UTC; naive means UTC). Optional
    microstructure columns (:data:`features.MICROSTRUCTURE_COLUMNS`, finite) add their
    features; other columns are ignored.
    Each feature is NaN for its first ``warmup`` bars (see :func:`features.catalog`).

    ``n_jobs``: threads for long series (default: the cores; 1 for none). TA-Lib and numpy
    release the GIL, so groups of features run side by side; the values are the same.
    """
    arrays = to_bar_arrays(bars)
    infos, matrix = compute_arrays(arrays, n_jobs)
    columns = _layout(frozenset(arrays.extra))[2]
    # (n_features, n) in C order is (n, n_features) in F order: pandas keeps it without a copy.
    return pd.DataFrame(matrix.T, index=bars.index, columns=columns, copy=False)


def compute_chunks(bars: pd.DataFrame, chunk_rows: int, n_jobs: int | None = None,
                   dtype: type = np.float64) -> Iterator[pd.DataFrame]:
    """:func:`compute` in consecutive pieces of at most ``chunk_rows`` bars, in time order.

    Each piece is computed on its bars plus the :data:`WARMUP` bars before it, and every
    feature has finite memory (at most ``WARMUP`` bars), so the pieces put end to end equal
    ``compute(bars)``: the same NaN pattern, and values within floating-point rounding (TA-Lib's
    running sums start elsewhere; tested to the 1e-9 of the online engine). Only one piece
    (and its warm-up) is computed at a time, so memory follows ``chunk_rows``, not the series.
    ``dtype`` is the values' type in the pieces (``np.float32`` halves what the warehouse stores).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    for start in range(0, len(bars), chunk_rows):
        first = max(0, start - WARMUP)
        piece = compute(bars.iloc[first:start + chunk_rows], n_jobs=n_jobs).iloc[start - first:]
        yield piece if dtype == np.float64 else piece.astype(dtype, copy=False)


def compute_latest(window: pd.DataFrame) -> pd.Series:
    """Feature vector of the last bar of ``window`` (what a runtime calls on every bar).

    Uses only the last :data:`LOOKBACK` bars, and equals ``compute(history).loc[t]`` for any
    history ending at that bar t. Raises ValueError if the window has fewer than LOOKBACK
    bars or fails the checks of :func:`compute`.
    """
    if not isinstance(window, pd.DataFrame):
        raise ValueError(f"window must be a pandas DataFrame, got {type(window).__name__}")
    if len(window) < LOOKBACK:
        raise ValueError(_short_window_message(len(window)))
    arrays = to_bar_arrays(window, tail=LOOKBACK)
    _, vector = compute_latest_arrays(arrays)
    columns = _layout(frozenset(arrays.extra))[2]
    latest = pd.Series(vector, index=columns, copy=False)  # float64 already; naming after is cheaper
    latest.name = window.index[-1]
    return latest


def _short_window_message(n_bars: int) -> str:
    return (
        f"window has {n_bars} bars, shorter than the feature warm-up: compute_latest needs at least "
        f"LOOKBACK = WARMUP + 1 = {LOOKBACK} bars (WARMUP = {WARMUP})"
    )
