"""Benchmark core: ``Predictor.predict`` against raw ``session.run`` on one bundle.

Only numpy and onnxruntime are used here; the CLI and the MLflow pyfunc comparison live
outside ``serving/``. One-row calls are interleaved (alternating which goes first) in the
same process so both see the same machine state, and raw ``session.run`` runs on the
predictor's own session (built with :func:`serving.model.session_options`) with a
prepared float32 ``[1, n]`` array, i.e. the least work onnxruntime's Python API allows.
For a sequence model the rows are windows ``[window, n]`` (raw: ``[1, window, n]``; dict:
feature -> ``window`` values).
"""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from serving.predictor import Predictor

_POOL = 257  # prime, so every method meets every row


def _pct(ns: list[int], q: float) -> float:
    s = sorted(ns)
    return s[min(len(s) - 1, int(q * len(s)))] / 1000.0


def run_benchmark(
    bundle_dir: str | Path,
    *,
    n_calls: int = 20_000,
    warmup: int = 1_000,
    batch_rows: int = 10_000,
    batch_repeats: int = 5,
    intra_op_num_threads: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure one-row latency (p50/p99, µs) of ``Predictor.predict`` with an array and with
    a dict, and of raw ``session.run``; and batch throughput (rows/s, best of
    ``batch_repeats``, wall clock and thread CPU time) for both. ``loadavg_1m`` tells how busy
    the machine was. Returns a flat dict."""
    pred = Predictor.load(bundle_dir, intra_op_num_threads=intra_op_num_threads)
    model, inputs = pred._m, pred.inputs
    raw = model.session  # the very same session (same options, same memory)
    in_name, fetch = model.input_name, list(model.fetch)
    rng = np.random.default_rng(seed)
    shape = inputs.shape  # (n,), or (window, n) for a sequence model
    pool = rng.normal(size=(_POOL, *shape)).astype(np.float32)
    rows_1d = list(pool)  # one row (one window) each
    rows_2d = [r.reshape(1, *shape) for r in rows_1d]
    rows_dict = [dict(zip(inputs.names, r.T.tolist())) for r in rows_1d]

    predict, run = pred.predict, raw.run
    perf = time.perf_counter_ns
    t_raw: list[int] = []
    t_arr: list[int] = []
    t_dict: list[int] = []

    def call_raw(k: int) -> None:
        x = rows_2d[k]
        t = perf()
        run(fetch, {in_name: x})
        t_raw.append(perf() - t)

    def call_arr(k: int) -> None:
        x = rows_1d[k]
        t = perf()
        predict(x)
        t_arr.append(perf() - t)

    def call_dict(k: int) -> None:
        x = rows_dict[k]
        t = perf()
        predict(x)
        t_dict.append(perf() - t)

    # Each call gets a different row (a repeated row would let the CPU's branch predictor
    # learn the tree paths), each method sees every row of the pool, and the order of the
    # three methods rotates.
    orders = [
        (call_raw, call_arr, call_dict),
        (call_arr, call_dict, call_raw),
        (call_dict, call_raw, call_arr),
    ]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(warmup + n_calls):
            if i == warmup:
                t_raw.clear(), t_arr.clear(), t_dict.clear()
            for j, f in enumerate(orders[i % 3]):
                f((3 * i + j) % _POOL)
    finally:
        if gc_was_enabled:
            gc.enable()

    batch = rng.normal(size=(batch_rows, *shape)).astype(np.float32)
    cpu = time.thread_time_ns  # CPU time of this thread: robust to a busy machine
    best_pred = best_raw = best_pred_cpu = float("inf")
    for _ in range(batch_repeats):
        t = perf()
        run(fetch, {in_name: batch})
        best_raw = min(best_raw, perf() - t)
        t, c = perf(), cpu()
        predict(batch)
        best_pred_cpu = min(best_pred_cpu, cpu() - c)
        best_pred = min(best_pred, perf() - t)

    raw_p50 = _pct(t_raw, 0.50)
    return {
        "model": f"{pred.name}@{pred.version}",
        "n_features": inputs.n,
        "window": inputs.window,
        "n_calls": n_calls,
        "intra_op_num_threads": intra_op_num_threads,
        "raw_p50_us": raw_p50,
        "raw_p99_us": _pct(t_raw, 0.99),
        "predict_p50_us": _pct(t_arr, 0.50),
        "predict_p99_us": _pct(t_arr, 0.99),
        "predict_dict_p50_us": _pct(t_dict, 0.50),
        "predict_dict_p99_us": _pct(t_dict, 0.99),
        "ratio_p50": _pct(t_arr, 0.50) / raw_p50,
        "ratio_dict_p50": _pct(t_dict, 0.50) / raw_p50,
        "batch_rows": batch_rows,
        "batch_rows_per_s": batch_rows / (best_pred / 1e9),
        "batch_rows_per_cpu_s": batch_rows / (max(best_pred_cpu, 1) / 1e9),
        "raw_batch_rows_per_s": batch_rows / (best_raw / 1e9),
        "loadavg_1m": os.getloadavg()[0],
    }
