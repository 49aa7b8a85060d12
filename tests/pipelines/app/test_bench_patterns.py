"""alphaops bench patterns on a small library: every figure is there and consistent, the IVF probing
every list finds what the exact search finds, and the warehouse agrees with numpy."""

from __future__ import annotations

import math

import pytest


def test_small_pattern_bench_reports_consistent_figures(alphaops_home):
    from pipelines.app.bench_patterns import GOAL_MS, pattern_bench

    figures = pattern_bench(n_windows=1200, dim=8, k=5, n_queries=4, n_lists=16, nprobe=16, epochs=1,
                            n_warehouse_queries=2, home=alphaops_home)
    assert figures["stored_windows"] == 1200 and figures["embedding_dim"] == 8 and figures["queries"] == 4
    for lib in ("market", "random"):
        for name in (f"{lib}_exact_search", f"{lib}_ivf_search", f"{lib}_embed_plus_ivf"):
            p50, p99 = figures[f"{name}_p50_ms"], figures[f"{name}_p99_ms"]
            assert math.isfinite(p50) and 0 < p50 <= p99, name
        assert figures[f"{lib}_ivf_lists"] == 16 and figures[f"{lib}_ivf_nprobe"] == 16
        assert figures[f"{lib}_ivf_recall_at_k"] == 1.0  # every list probed: the exact answer
        assert figures[f"{lib}_ivf_speedup_p50"] == pytest.approx(
            figures[f"{lib}_exact_search_p50_ms"] / figures[f"{lib}_ivf_search_p50_ms"])
        assert figures[f"{lib}_embed_plus_ivf_p50_vs_goal"] == figures[f"{lib}_embed_plus_ivf_p50_ms"] / GOAL_MS
    assert figures["warehouse_exact_recall_vs_numpy_exact"] == 1.0
    assert 0 < figures["warehouse_exact_search_p50_ms"] <= figures["warehouse_exact_search_p99_ms"]
    assert "hnsw_search_p50_ms" not in figures


def test_calibrated_nprobe_and_bad_arguments(alphaops_home):
    from pipelines.app.bench_patterns import pattern_bench

    figures = pattern_bench(n_windows=1200, dim=8, k=5, n_queries=3, libraries=("random",), n_lists=16, epochs=1,
                            warehouse=False)
    assert "market_ivf_nprobe" not in figures and "warehouse_insert_s" not in figures
    assert 1 <= figures["random_ivf_nprobe"] <= 2  # the cap is an eighth of the lists
    assert 0.0 <= figures["random_ivf_recall_at_k"] <= 1.0
    with pytest.raises(ValueError, match="libraries"):
        pattern_bench(n_windows=1200, libraries=("faiss",))
    with pytest.raises(ValueError, match="windows"):
        pattern_bench(n_windows=5)
