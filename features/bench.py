"""Feature benchmark: the full feature set against plain TA-Lib calls, and the online path.

``run_feature_bench()`` is what ``alphaops bench features`` prints. It runs in one process:

* ``compute`` on ``n_bars`` synthetic 1-minute bars with every microstructure column (the
  full set), on its default threads (the cores) and on one thread. The first call is
  reported apart: it pays for the process growing its heap (≈1 GB of output), which
  dominates on a fresh VM.
* a baseline of 20 plain TA-Lib calls on the same arrays (26 output series);
* values per second for both (``n_bars * n_series / seconds``) and their ratio, for the
  default threads and for one thread (the TA-Lib baseline is plain sequential calls);
* the p50 of ``compute_latest`` on a 500-bar window, of its numpy-only core, and of the
  batch engine run on the same window (``compute_arrays``: what ``compute_latest`` would
  cost without the online engine), with their ratio.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable

import numpy as np
import talib

from features.core import compute, compute_arrays, compute_latest, compute_latest_arrays, default_n_jobs, to_bar_arrays
from features.definitions import FEATURE_SET_VERSION, LOOKBACK
from features.synthetic import synthetic_bars

__all__ = ["run_feature_bench", "TALIB_BASELINE"]

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]

# (name, call on (open, high, low, close, volume), number of output series)
TALIB_BASELINE: tuple[tuple[str, Callable[..., object], int], ...] = (
    ("SMA20", lambda o, h, l, c, v: talib.SMA(c, 20), 1),
    ("SMA200", lambda o, h, l, c, v: talib.SMA(c, 200), 1),
    ("EMA20", lambda o, h, l, c, v: talib.EMA(c, 20), 1),
    ("EMA200", lambda o, h, l, c, v: talib.EMA(c, 200), 1),
    ("RSI14", lambda o, h, l, c, v: talib.RSI(c, 14), 1),
    ("ATR14", lambda o, h, l, c, v: talib.ATR(h, l, c, 14), 1),
    ("ADX14", lambda o, h, l, c, v: talib.ADX(h, l, c, 14), 1),
    ("PLUS_DI14", lambda o, h, l, c, v: talib.PLUS_DI(h, l, c, 14), 1),
    ("MACD", lambda o, h, l, c, v: talib.MACD(c, 12, 26, 9), 3),
    ("BBANDS20", lambda o, h, l, c, v: talib.BBANDS(c, 20, 2.0, 2.0, 0), 3),
    ("STOCH", lambda o, h, l, c, v: talib.STOCH(h, l, c, 14, 3, 0, 3, 0), 2),
    ("CCI20", lambda o, h, l, c, v: talib.CCI(h, l, c, 20), 1),
    ("WILLR14", lambda o, h, l, c, v: talib.WILLR(h, l, c, 14), 1),
    ("ROC10", lambda o, h, l, c, v: talib.ROC(c, 10), 1),
    ("MOM10", lambda o, h, l, c, v: talib.MOM(c, 10), 1),
    ("MFI14", lambda o, h, l, c, v: talib.MFI(h, l, c, v, 14), 1),
    ("OBV", lambda o, h, l, c, v: talib.OBV(c, v), 1),
    ("AROON25", lambda o, h, l, c, v: talib.AROON(h, l, 25), 2),
    ("STDDEV20", lambda o, h, l, c, v: talib.STDDEV(c, 20), 1),
    ("CDLENGULFING", lambda o, h, l, c, v: talib.CDLENGULFING(o, h, l, c), 1),
)


def _seconds(action: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (this process, user + system) of one call."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    result = action()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    del result
    return wall, cpu


def _p50_ms(action: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall-clock and CPU milliseconds of one call."""
    for _ in range(min(20, repeats)):  # warm caches
        action()
    timings = np.empty((repeats, 2))
    for i in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        action()
        timings[i] = time.perf_counter() - wall, time.process_time() - cpu
    wall_ms, cpu_ms = np.median(timings, axis=0) * 1e3
    return float(wall_ms), float(cpu_ms)


def run_feature_bench(
    n_bars: int = 1_000_000,
    seed: int = 0,
    repeats: int = 3,
    latest_window: int = 500,
    latest_repeats: int = 1000,
) -> dict[str, float | int | str]:
    """Measure the feature set on ``n_bars`` synthetic 1-minute bars (see module docstring).

    Times are wall-clock, best of ``repeats`` after the first call (also reported), with
    this process's CPU time beside them and the machine's load average at the end (the
    wall-clock figures are only as good as the machine is idle). Returns a flat dict; the
    ``*_target_met`` entries compare the default configuration (``compute`` on the cores)
    with the design targets on 2 cores (full set on 1M bars <= 3 s; values/s >= half of
    TA-Lib's; compute_latest <= 1 ms); the one-thread figures are printed beside them.
    """
    bars = synthetic_bars(n_bars, seed=seed, microstructure=True)
    arrays = to_bar_arrays(bars)
    ohlcv = (arrays.open, arrays.high, arrays.low, arrays.close, arrays.volume)

    n_features = compute(bars.iloc[: LOOKBACK + 1]).shape[1]
    first_call, _ = _seconds(lambda: compute(bars))
    compute_seconds, compute_cpu = min(_seconds(lambda: compute(bars)) for _ in range(repeats))
    one_thread_seconds, _ = min(_seconds(lambda: compute(bars, n_jobs=1)) for _ in range(repeats))

    def baseline() -> list[object]:
        return [call(*ohlcv) for _, call, _ in TALIB_BASELINE]

    baseline_series = sum(series for _, _, series in TALIB_BASELINE)
    baseline()
    # The baseline is short (~0.15 s on 1M bars), so its best of more runs: a stricter bar.
    baseline_seconds, baseline_cpu = min(_seconds(baseline) for _ in range(max(repeats, 10)))

    feature_rate = n_bars * n_features / compute_seconds
    one_thread_rate = n_bars * n_features / one_thread_seconds
    talib_rate = n_bars * baseline_series / baseline_seconds

    window = bars.iloc[-max(latest_window, LOOKBACK) :]
    window_arrays = to_bar_arrays(window, tail=LOOKBACK)  # all compute_latest uses
    latest_ms, latest_cpu_ms = _p50_ms(lambda: compute_latest(window), latest_repeats)
    latest_arrays_ms, _ = _p50_ms(lambda: compute_latest_arrays(window_arrays), latest_repeats)
    batch_window_ms, _ = _p50_ms(lambda: compute_arrays(window_arrays), latest_repeats)

    return {
        "feature_set_version": FEATURE_SET_VERSION,
        "n_bars": n_bars,
        "n_features": n_features,
        "compute_threads": default_n_jobs(),
        "compute_seconds": round(compute_seconds, 3),
        "compute_cpu_seconds": round(compute_cpu, 3),
        "compute_seconds_1_thread": round(one_thread_seconds, 3),
        "compute_seconds_first_call": round(first_call, 3),
        "feature_values_per_second": round(feature_rate),
        "talib_baseline_calls": len(TALIB_BASELINE),
        "talib_baseline_series": baseline_series,
        "talib_baseline_seconds": round(baseline_seconds, 3),
        "talib_baseline_cpu_seconds": round(baseline_cpu, 3),
        "talib_values_per_second": round(talib_rate),
        "values_per_second_ratio": round(feature_rate / talib_rate, 3),
        "values_per_second_ratio_1_thread": round(one_thread_rate / talib_rate, 3),
        "latest_window_bars": len(window),
        "latest_p50_ms": round(latest_ms, 3),
        "latest_cpu_p50_ms": round(latest_cpu_ms, 3),
        "latest_arrays_p50_ms": round(latest_arrays_ms, 3),
        "batch_engine_on_window_p50_ms": round(batch_window_ms, 3),
        "online_vs_batch_engine_speedup": round(batch_window_ms / latest_arrays_ms, 2),
        "compute_target_met": bool(compute_seconds <= 3.0 * n_bars / 1_000_000),
        "throughput_target_met": bool(feature_rate >= 0.5 * talib_rate),
        "latest_target_met": bool(latest_ms <= 1.0),
        "load_average_1m": round(os.getloadavg()[0], 2),  # other processes competing for the cores
    }
