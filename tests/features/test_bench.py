"""Smoke test of the feature benchmark (figures only; timings are not asserted)."""

from __future__ import annotations

import features
from features.bench import TALIB_BASELINE, run_feature_bench


def test_run_feature_bench_returns_positive_figures():
    figures = run_feature_bench(n_bars=20_000, repeats=1, latest_repeats=20)
    assert figures["n_bars"] == 20_000
    assert figures["n_features"] == len(features.feature_names(microstructure=True))
    assert figures["feature_set_version"] == features.FEATURE_SET_VERSION
    assert figures["talib_baseline_calls"] == len(TALIB_BASELINE) == 20
    for key in (
        "compute_seconds",
        "compute_seconds_first_call",
        "compute_cpu_seconds",
        "compute_seconds_1_thread",
        "compute_threads",
        "feature_values_per_second",
        "talib_baseline_seconds",
        "talib_values_per_second",
        "values_per_second_ratio",
        "values_per_second_ratio_1_thread",
        "latest_p50_ms",
        "latest_arrays_p50_ms",
        "latest_cpu_p50_ms",
        "batch_engine_on_window_p50_ms",
        "online_vs_batch_engine_speedup",
    ):
        assert figures[key] > 0, key
    assert figures["latest_window_bars"] >= features.LOOKBACK
    assert {"compute_target_met", "throughput_target_met", "latest_target_met"} <= figures.keys()
