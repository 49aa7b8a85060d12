"""The model benchmark's report: the summary over seeds, the runs not run yet, the feature-set column."""

from __future__ import annotations

import pytest

from pipelines.app.bench_models import gain
from pipelines.app.bench_report import benchmark_markdown, missing_runs, missing_sentence, summarize


def test_summary_is_mean_and_std_over_seeds_and_keeps_skipped_reasons():
    def run(seed, score, status="validated"):
        return {"spec": "volatility_h5", "family": "volatility", "dataset": "SPX", "seed": seed, "metric": "qlike",
                "greater_is_better": False, "status": status, "failed_gates": [] if status == "validated" else ["null_test"],
                "score": score, "rival": "garch", "rival_score": 0.6, "gain": gain(score, 0.6, False),
                "wf_mean": score, "wf_std": 0.01, "seconds": 10.0}

    rows = [run(1, 0.5), run(2, 0.52), run(3, 0.54, "rejected"),
            {"spec": "anomaly_iforest", "family": "anomaly", "dataset": "SPX", "seed": 1, "metric": "event_auc",
             "greater_is_better": True, "status": "skipped", "reason": "no recorded market events", "seconds": 0.0}]
    lines = {line["spec"]: line for line in summarize(rows)}
    vol = lines["volatility_h5"]
    assert vol["score"] == pytest.approx(0.52) and vol["score_std"] == pytest.approx(0.02)
    assert vol["validated_share"] == pytest.approx(2 / 3) and vol["failed_gates"] == {"null_test": 1}
    assert vol["gain"] == pytest.approx((0.6 - 0.52) / 0.6) and vol["wf_std"] == pytest.approx(0.01)
    assert lines["anomaly_iforest"]["status"] == "skipped" and "events" in lines["anomaly_iforest"]["reason"]


def test_missing_runs_lists_what_a_resumed_bench_still_has_to_run():
    rows = [{"dataset": "SPX", "seed": 42, "spec": "a", "status": "validated"},
            {"dataset": "SPX", "seed": 43, "spec": "a", "status": "error"},
            {"dataset": "SPX", "seed": 42, "spec": "b", "status": "skipped"}]
    plan = {"SPX": ["a", "b"], "VIX": ["a", "b"], "SYNX": ["b"]}
    missing = missing_runs(rows, plan, [42, 43])
    assert missing == {"a": {"SPX": [43], "VIX": [42, 43]},  # an error row runs again
                       "b": {"SPX": [43], "VIX": [42, 43], "SYNX": [42, 43]}}
    assert missing_sentence(missing, plan, [42, 43]) == "`a`: SPX (seed 43), VIX; `b`: SPX (seed 43), VIX, SYNX"
    assert missing_sentence({"b": {d: [42, 43] for d in plan}}, plan, [42, 43]) == "`b`: every dataset"
    assert missing_runs(rows[:1], {"SPX": ["a"]}, [42]) == {}


def test_the_table_names_each_lines_feature_set_when_a_resumed_bench_spans_two():
    def run(seed, version):
        return {"spec": "volatility_h5", "family": "volatility", "dataset": "SPX", "seed": seed, "metric": "qlike",
                "greater_is_better": False, "status": "validated", "failed_gates": [], "score": 0.5,
                "rival": "garch", "rival_score": 0.6, "gain": gain(0.5, 0.6, False), "wf_mean": 0.5, "wf_std": 0.01,
                "seconds": 10.0, "feature_set_version": version}

    lines = summarize([run(42, "fs-1.1"), run(43, "fs-1.2")])
    assert lines[0]["feature_sets"] == ["fs-1.1", "fs-1.2"]
    meta = {"date": "2026-12-03", "machine": "m", "seeds": [42, 43], "trials": 6, "holdout_fraction": 0.2,
            "walk_forward_folds": 3, "wall_seconds": 60.0, "n_runs": 2, "n_scored": 2, "code_version": "c2",
            "feature_set_version": "fs-1.2", "code_versions": {"c1": 1, "c2": 1}, "feature_sets": {"fs-1.1": 1, "fs-1.2": 1}}
    text = benchmark_markdown(lines, meta, chart=None)
    assert "feature set `fs-1.1` (1 runs), `fs-1.2` (1 runs)" in text and "code `c1` (1 runs), `c2` (1 runs)" in text
    assert text.rstrip().endswith("| fs-1.1, fs-1.2 |")
