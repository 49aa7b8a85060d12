"""alphaops bench patterns on a small library: every figure is there, consistent and finite."""

from __future__ import annotations

import math


def test_small_pattern_bench_reports_consistent_figures(alphaops_home):
    from pipelines.app.bench_patterns import GOAL_MS, pattern_bench

    figures = pattern_bench(n_windows=3000, dim=16, window=4, n_features=10, k=5, n_queries=5,
                            n_warehouse_queries=3, hnsw=False, home=alphaops_home)
    assert figures["stored_windows"] == 3000 and figures["embedding_dim"] == 16
    for name in ("embed", "numpy_search", "numpy_total", "warehouse_search", "warehouse_total"):
        p50, p99 = figures[f"{name}_p50_ms"], figures[f"{name}_p99_ms"]
        assert math.isfinite(p50) and 0 < p50 <= p99, name
    assert figures["numpy_total_p50_ms"] >= figures["numpy_search_p50_ms"]
    assert figures["numpy_total_p50_vs_goal"] == figures["numpy_total_p50_ms"] / GOAL_MS
    assert "hnsw_search_p50_ms" not in figures
