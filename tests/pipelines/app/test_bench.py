from pipelines.app.bench import serving_bench


def test_serving_bench_reports_ratios_against_baselines_in_one_process():
    figures = serving_bench(n_features=16, n_trees=20, n_calls=300)
    assert figures["n_trees"] == 20 and figures["n_features"] == 16
    for key in ("raw_p50_us", "predict_p50_us", "pyfunc_p50_us", "batch_rows_per_s"):
        assert figures[key] > 0, key
    assert figures["ratio_p50"] == figures["predict_p50_us"] / figures["raw_p50_us"]
    assert figures["pyfunc_over_predict_p50"] == figures["pyfunc_p50_us"] / figures["predict_p50_us"]
