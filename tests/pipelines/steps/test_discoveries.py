"""False-discovery control across a run: q-values, deflated Sharpe, decisions and the ledger."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.steps.discoveries import assess_hypotheses


def result(name: str, status: str, p: float | None, trials: int = 6, **metrics: float) -> dict:
    return {"model_name": name, "version": "1", "status": status, "spec": name, "symbol": "S",
            "failed_gates": [] if status == "validated" else ["beats_baselines"],
            "metrics": {"null_screen_p_value": p, "n_trials": trials, "null_screen_n": 9999.0, **metrics}}


def test_a_lone_p_of_002_among_many_hypotheses_is_not_a_discovery():
    results = [result("lucky", "validated", 0.02)] + [result(f"n{i}", "rejected", 0.5) for i in range(19)]
    lucky = assess_hypotheses(results, fdr_level=0.05, min_deflated_sharpe=0.95)[0]
    assert lucky["q_value"] > 0.05 and lucky["failed"] == ["fdr"] and lucky["decision"] == "rejected"


def test_strong_evidence_survives_the_run_and_skipped_specs_are_not_hypotheses():
    results = [result("strong", "validated", 0.0001)] + [result(f"n{i}", "rejected", 0.5) for i in range(27)]
    results.append({"skipped": "too few rows", "spec": "trade_quality", "symbol": "S", "status": "skipped"})
    assessed = assess_hypotheses(results, fdr_level=0.05, min_deflated_sharpe=0.95)
    assert len(assessed) == 28 and assessed[0]["q_value"] < 0.01 and assessed[0]["decision"] == "validated"
    assert assessed[0]["n_trials_run"] == 28 * 6 and assessed[0]["n_permutations"] == 9999
    assert all(a["decision"] == "rejected" and not a["failed"] for a in assessed[1:])  # rejected by their own gates


def test_a_trading_signal_needs_a_sharpe_that_beats_the_runs_luck():
    rng = np.random.default_rng(0)
    sharpe = {"trading_sr_per_bar": 0.03, "trading_pnl_n": 3000.0, "trading_pnl_skew": 0.0, "trading_pnl_kurtosis": 3.0}
    weak = [result("weak", "validated", 0.0001, **sharpe)] + [result(f"n{i}", "rejected", float(p))
                                                              for i, p in enumerate(rng.uniform(size=20))]
    a = assess_hypotheses(weak, fdr_level=0.05, min_deflated_sharpe=0.95)[0]
    assert a["q_value"] < 0.05 and a["deflated_sharpe"] < 0.95 and a["failed"] == ["deflated_sharpe"]
    strong = [result("strong", "validated", 0.0001, **{**sharpe, "trading_sr_per_bar": 0.15})] + weak[1:]
    b = assess_hypotheses(strong, fdr_level=0.05, min_deflated_sharpe=0.95)[0]
    assert b["deflated_sharpe"] > 0.99 and b["decision"] == "validated"


def test_the_ledger_keeps_one_row_per_hypothesis_and_run(alphaops_home):
    from pipelines.config import get_settings
    from warehouse import open_warehouse

    settings = get_settings()
    rows = [{"run_id": "ledger-test", "model": f"default.direction_h1.S{i}", "model_version": "1",
             "spec": "direction_h1", "symbol": f"S{i}", "status": "validated", "p_value": 0.001 * (i + 1),
             "n_permutations": 9999, "n_trials": 6, "q_value": 0.002 * (i + 1), "deflated_sharpe": None,
             "n_trials_run": 12, "decision": "validated", "recorded_at": pd.Timestamp("2026-01-01", tz="UTC")}
            for i in range(2)]
    with open_warehouse(settings) as warehouse:
        warehouse.write_hypotheses(rows, tenant="ledger-tenant")
        warehouse.write_hypotheses([{**rows[0], "decision": "rejected"}], tenant="ledger-tenant")  # replaces
        ledger = warehouse.read_hypotheses(tenant="ledger-tenant", run_id="ledger-test")
        other = warehouse.read_hypotheses(tenant="another-tenant")
    assert len(ledger) == 2 and other.empty
    assert ledger.set_index("symbol").loc["S0", "decision"] == "rejected"
    assert ledger["deflated_sharpe"].isna().all() and (ledger["n_permutations"] == 9999).all()
