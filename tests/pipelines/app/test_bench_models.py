"""``alphaops bench models``: the quick subset end to end (a real process, real steps), the plan, the gain."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.app.bench_models import bench_plan, gain, stale_runs

CLI = Path(sys.executable).with_name("alphaops")
ROOT = Path(__file__).resolve().parents[3]


def test_quick_bench_writes_the_table_json_and_chart(tmp_path):
    out = tmp_path / "docs" / "benchmarks.md"
    env = {k: v for k, v in os.environ.items() if k != "ALPHAOPS_HOME"}  # each (dataset, seed) gets its own home
    result = subprocess.run([str(CLI), "bench", "models", "--quick", "--out", str(out), "--root", str(tmp_path / "homes")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    # Not a terminal: one progress line per run in place of a bar.
    assert re.search(r"\[1/2\] SPX seed 42 volatility_h5: (validated|rejected) 0\.\d+ \(\d+ s\)", result.stderr), result.stderr
    assert "[2/2] SPX seed 42 direction_h1: " in result.stderr
    payload = json.loads(out.with_suffix(".json").read_text())
    runs = {(r["spec"], r["dataset"]): r for r in payload["runs"]}
    assert set(runs) == {("volatility_h5", "SPX"), ("direction_h1", "SPX")}
    assert (tmp_path / "homes" / "SPX-seed42" / "warehouse").exists()
    vol = runs[("volatility_h5", "SPX")]
    assert vol["status"] in ("validated", "rejected") and vol["rival"] in ("garch", "egarch", "har_rv", "last_h_rv")
    assert vol["rival_score"] == min(v for k, v in vol["rivals"].items())
    assert vol["gain"] == pytest.approx((vol["rival_score"] - vol["score"]) / vol["rival_score"])
    assert math.isfinite(vol["wf_mean"]) and vol["seconds"] > 0
    text = out.read_text()
    assert "| volatility | `volatility_h5` | SPX | qlike ↓ |" in text and "`direction_h1` | SPX | auc ↑" in text
    assert "Wall time:" in text and "this project's machine" in text and "benchmarks_gains.png" in text
    assert out.with_name("benchmarks_gains.png").stat().st_size > 1000
    assert payload["meta"]["quick"] is True and payload["sessions"][0]["wall_seconds"] > 0
    # --resume with nothing left to run re-renders the table and adds no session.
    again = subprocess.run([str(CLI), "bench", "models", "--quick", "--resume", "--out", str(out),
                            "--root", str(tmp_path / "homes")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    rerendered = json.loads(out.with_suffix(".json").read_text())
    assert rerendered["runs"] == payload["runs"] and len(rerendered["sessions"]) == 1

    # --rerun-stale runs again only the row trained on an older feature set.
    import features

    for row in rerendered["runs"]:
        if row["spec"] == "direction_h1":
            row["feature_set_version"] = "fs-0.9"
    out.with_suffix(".json").write_text(json.dumps(rerendered))
    refused = subprocess.run([str(CLI), "bench", "models", "--quick", "--rerun-stale", "--out", str(out)], cwd=ROOT,
                             capture_output=True, text=True, timeout=300, env={**env, "COLUMNS": "200"})
    assert refused.returncode == 2 and "--rerun-stale reruns rows of an earlier bench: it needs --resume" in refused.stderr
    rerun = subprocess.run([str(CLI), "bench", "models", "--quick", "--resume", "--rerun-stale", "--out", str(out),
                            "--root", str(tmp_path / "homes")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env=env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "[1/1] SPX seed 42 direction_h1: " in rerun.stderr and "volatility_h5:" not in rerun.stderr
    refreshed = json.loads(out.with_suffix(".json").read_text())
    by_spec = {r["spec"]: r for r in refreshed["runs"]}
    assert len(refreshed["runs"]) == 2 and by_spec["volatility_h5"] == runs[("volatility_h5", "SPX")]
    assert by_spec["direction_h1"]["feature_set_version"] == features.FEATURE_SET_VERSION
    assert refreshed["sessions"][-1]["rerun_stale"] == 1 and len(refreshed["sessions"]) == 2
    assert "1 runs trained on an older feature set were run again" in out.read_text()


def test_gain_is_positive_when_the_model_is_better():
    assert gain(0.45, 0.5, greater_is_better=False) == pytest.approx(0.1)
    assert gain(0.55, 0.5, greater_is_better=True) == pytest.approx(0.1)
    assert gain(0.55, 0.5, greater_is_better=False) == pytest.approx(-0.1)
    assert math.isnan(gain(float("nan"), 0.5, greater_is_better=True))


def test_family_markets_are_benched_for_their_families_only():
    specs = ["volatility_h5", "liquidity_volume", "returns_mlp", "sentiment_h10", "chart_pattern_cnn"]
    plan = bench_plan(["SPX", "SYNLIQ", "NASDAQ", "SYNNEWS"], specs)
    assert plan["SPX"] == specs
    assert plan["SYNLIQ"] == ["liquidity_volume", "returns_mlp"] and plan["SYNNEWS"] == ["sentiment_h10"]
    # chart_pattern_cnn generates its own rows: once, on the first general dataset
    assert plan["NASDAQ"] == ["volatility_h5", "liquidity_volume", "returns_mlp", "sentiment_h10"]


def test_monthly_bars_skip_the_specs_whose_horizons_are_in_hours(tmp_path):
    from pipelines.app.bench_models import run_model_bench

    rows = run_model_bench(plan={"CRUDE": ["liquidity_volume", "volatility_h5"]}, seeds=[42], root=tmp_path)
    by_spec = {r["spec"]: r for r in rows}
    assert by_spec["liquidity_volume"]["status"] == "skipped"
    assert "horizons are in hours and cannot be resolved on 1mo bars" in by_spec["liquidity_volume"]["reason"]
    assert by_spec["volatility_h5"]["status"] == "skipped" and "feature warm-up" in by_spec["volatility_h5"]["reason"]


def _row(dataset: str, seed: int, spec: str, status: str = "validated", feature_set: str | None = "fs-1.0") -> dict:
    return {"dataset": dataset, "seed": seed, "spec": spec, "status": status, "feature_set_version": feature_set}


def test_stale_runs_are_the_scored_rows_of_the_plan_on_another_feature_set():
    rows = [_row("SPX", 42, "volatility_h5"), _row("SPX", 42, "direction_h1", feature_set="fs-2.0"),
            _row("SYNNEWS", 42, "sentiment_h10", feature_set="fs-2.0+news-1"),
            _row("SPX", 43, "volatility_h5", status="skipped", feature_set=None),
            _row("NASDAQ", 42, "volatility_h5"), _row("SPX", 44, "volatility_h5")]
    plan = {"SPX": ["volatility_h5", "direction_h1"], "SYNNEWS": ["sentiment_h10"]}
    stale = stale_runs(rows, plan, [42, 43], "fs-2.0")
    # NASDAQ is not asked for, seed 44 is not asked for, a skipped row has no features to refresh.
    assert stale == [rows[0]]


def test_an_interrupted_rerun_keeps_the_stale_rows_it_has_not_replaced(tmp_path, monkeypatch):
    import pipelines.app.bench_models as bench_models

    out = tmp_path / "benchmarks.md"
    old = [_row("SPX", 42, "volatility_h5"), _row("SPX", 42, "direction_h1")]
    out.with_suffix(".json").write_text(json.dumps({"runs": old, "sessions": [{"wall_seconds": 5.0}]}))

    def interrupted(*, done, on_row, **_):
        assert done == []  # both rows are stale: both are to run again
        on_row([{**old[0], "feature_set_version": "fs-new", "seconds": 1.0, "score": 0.5}])
        raise KeyboardInterrupt

    monkeypatch.setattr(bench_models, "run_model_bench", interrupted)
    monkeypatch.setattr("features.FEATURE_SET_VERSION", "fs-new")
    with pytest.raises(KeyboardInterrupt):
        bench_models.model_bench(out=out, datasets=["SPX"], families=["volatility_h5", "direction_h1"], seeds=1,
                                 resume=True, rerun_stale=True, root=tmp_path / "homes")
    saved = json.loads(out.with_suffix(".json").read_text())
    assert [(r["spec"], r["feature_set_version"]) for r in saved["runs"]] == [("volatility_h5", "fs-new"),
                                                                             ("direction_h1", "fs-1.0")]
    assert saved["sessions"][-1]["rerun_stale"] == 1  # the rows actually run again, not the ones planned
