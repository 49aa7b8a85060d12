"""The real train_models DAG on markets whose truth is known: a planted AR(1) signal is found and
deployed; on i.i.d. random walks (daily and intraday), nothing is validated or deployed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines.config import get_settings

pytestmark = pytest.mark.slow

AS_OF = pd.Timestamp("2040-01-01", tz="UTC")
PLANTED, WALK_DAILY, WALK_MINUTES = "ARPLANT", "RWDAY", "RWMIN"


@pytest.fixture(scope="module")
def run(alphaops_home: Path) -> dict:
    from pipelines.orchestration.airflow_runner import run_dag
    from pipelines.ingest.ingestion import ingest
    from pipelines.ingest.sources import FrameSource
    from pipelines.ingest.synthetic import autoregressive_market

    settings = get_settings()
    markets = {
        PLANTED: ("1m", autoregressive_market(101, 5000, phi=0.6, microstructure=True)),
        WALK_DAILY: ("1d", autoregressive_market(102, 2500, phi=0.0, freq="1D", sigma=0.01)),
        WALK_MINUTES: ("1m", autoregressive_market(103, 6000, phi=0.0, microstructure=True)),
    }
    for symbol, (timeframe, bars) in markets.items():
        ingest(FrameSource(bars, name=f"generated:{symbol}"), symbol=symbol, timeframe=timeframe, settings=settings,
               as_of=AS_OF)
    state, run_id = run_dag(settings, "train_models", {
        "symbols": list(markets), "families": ["direction", "gate"], "trials": 2, "holdout_fraction": 0.25,
        "reason": "honesty test"})
    cli = Path(sys.executable).with_name("alphaops")
    listed = subprocess.run([str(cli), "models", "--json"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "ALPHAOPS_HOME": str(alphaops_home)})
    assert listed.returncode == 0, listed.stderr
    versions = [v for v in json.loads(listed.stdout) if v["symbol"] in markets]
    return {"state": state, "run_id": run_id, "versions": versions, "settings": settings}


def test_the_planted_signal_is_validated_deployed_and_strongly_evidenced(run):
    assert run["state"] == "success"
    planted = {v["spec"]: v for v in run["versions"] if v["symbol"] == PLANTED}
    v = planted["direction_h1"]
    assert v["validation_status"] == "validated", v["failed_gates"]
    assert v["aliases"] == ["champion"]
    m, e = v["metrics"], v["evidence"]
    assert m["accuracy"] >= 0.65 and m["auc"] > m["naive_last_return_sign_auc"]
    assert m["null_p_value"] < 0.01 and m["null_screen_n"] == 9999 and m["null_n"] >= 100
    assert e["q_value"] < 0.05 and e["deflated_sharpe"] >= 0.95 and e["null_permutations"] >= 9999
    assert m["gates"]["fdr"] and m["gates"]["deflated_sharpe"] and m["gates"]["beats_naive_rule"]


def test_nothing_is_validated_or_deployed_on_random_walks(run):
    walks = [v for v in run["versions"] if v["symbol"] in (WALK_DAILY, WALK_MINUTES)]
    assert len(walks) >= 7  # 4 specs per walk; a spec may be skipped for too few rows
    for v in walks:
        assert v["validation_status"] == "rejected", (v["name"], v["metrics"])
        assert v["aliases"] == [], v["name"]
    gate = next(v for v in walks if v["symbol"] == WALK_MINUTES and v["spec"] == "gate_h20")
    assert gate["metrics"]["naive_label_scale_logit_auc"] > 0.55  # its label is predictable from its own scale


def test_every_hypothesis_of_the_run_is_in_the_ledger(run):
    from warehouse import open_warehouse

    with open_warehouse(run["settings"]) as warehouse:
        ledger = warehouse.read_hypotheses(tenant=run["settings"].tenant, run_id=run["run_id"])
    tested = {(v["name"], v["version"]) for v in run["versions"]}
    assert set(zip(ledger["model"], ledger["model_version"])) == tested
    assert (ledger["n_trials"] == 2).all() and (ledger["n_trials_run"] == 2 * len(tested)).all()
    assert ledger["q_value"].notna().all() and set(ledger["decision"]) == {"validated", "rejected"}
    kept = ledger[ledger["decision"] == "validated"]
    # AR(1) returns make every horizon's direction predictable: several planted versions may be kept
    assert set(kept["symbol"]) == {PLANTED} and "direction_h1" in set(kept["spec"])
    assert (kept["q_value"] <= 0.05).all()


def test_the_model_card_explains_the_run_scale_outcome(run, tmp_path):
    from registry import Registry

    registry = Registry.from_settings(run["settings"])
    v = next(v for v in run["versions"] if v["symbol"] == PLANTED and v["spec"] == "direction_h1")
    card = Path(registry.client.download_artifacts(v["run_id"], "model_card.md", str(tmp_path))).read_text()
    assert "## Naive rules of the field" in card and "last_return_sign" in card
    assert "## Walk-forward folds" in card and "Probability of backtest overfitting" in card
    assert "## Multiple testing across the run" in card and "Benjamini–Hochberg q-value" in card
    assert "Outcome: kept." in card
    assert registry.client.get_model_version(v["name"], v["version"]).tags["q_value"] == f"{v['evidence']['q_value']:.6g}"
