"""The benchmark helper runs and reports sane numbers (no timing assertions)."""

from __future__ import annotations

from serving._bench_core import run_benchmark


def test_run_benchmark_reports_all_figures(clf_bundle) -> None:
    r = run_benchmark(clf_bundle, n_calls=200, warmup=20, batch_rows=500, batch_repeats=1)
    for key in (
        "raw_p50_us",
        "raw_p99_us",
        "predict_p50_us",
        "predict_p99_us",
        "predict_dict_p50_us",
        "ratio_p50",
        "batch_rows_per_s",
        "raw_batch_rows_per_s",
    ):
        assert r[key] > 0, key
    assert r["raw_p99_us"] >= r["raw_p50_us"] and r["predict_p99_us"] >= r["predict_p50_us"]
    assert (r["n_features"], r["n_calls"], r["batch_rows"]) == (60, 200, 500)
    assert r["model"] == "default.direction.SPX.1d@1"
