"""False discoveries across a run: every hypothesis in a ledger, Benjamini–Hochberg, deflated Sharpe.

One run of ``train_models`` tests many versions (specs × symbols), each after an Optuna search,
and ranking then picks the best of them on the same holdouts. Each validated version passed its
own gates at 5%; across the run, some would pass by luck. This step, between validate and rank:

1. records every tested version in the warehouse's ``hypothesis_ledger`` (per tenant and run):
   its p-value (the holdout permutation screen's: the fixed model's output against permuted
   holdout labels, which every version gets) with the draws behind it, and its Optuna trials;
2. computes Benjamini–Hochberg q-values over all of the run's hypotheses and rejects validated
   versions whose q-value is above ``fdr_level``. A version is kept only if BH rejects its null
   *and* its own gates pass (the retrain test among them): a subset of BH's discoveries, so the
   false discovery rate stays controlled;
3. for direction-like signals, computes the deflated Sharpe ratio of the holdout Sharpe after
   costs against the best of N zero-skill trials, N being every Optuna trial of the run, and
   rejects those below ``min_deflated_sharpe``.

Both outcomes are tagged on the version (``q_value``, ``deflated_sharpe``, gates ``fdr`` and
``deflated_sharpe``), logged to its MLflow run, and appended to its model card.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import Settings
from pipelines.evaluation.metrics import benjamini_hochberg, deflated_sharpe_ratio

log = logging.getLogger(__name__)

TESTED = ("validated", "rejected")


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and np.isfinite(float(value)) else None


def assess_hypotheses(results: list[dict[str, Any]], *, fdr_level: float,
                      min_deflated_sharpe: float) -> list[dict[str, Any]]:
    """One assessment per tested result: p, q, deflated Sharpe and the decision (pure: no I/O)."""
    tested = [r for r in results if r.get("status") in TESTED and "model_name" in r]
    # A version's hypothesis p-value: the holdout screen's, which every tested version has.
    p_values = np.array([_finite(r["metrics"].get("null_screen_p_value")) or 1.0 for r in tested])
    q_values = benjamini_hochberg(p_values)
    n_trials_run = int(sum(int(_finite(r["metrics"].get("n_trials")) or 1) for r in tested))
    out = []
    for result, p, q in zip(tested, p_values, q_values):
        m = result["metrics"]
        sr, n_obs = _finite(m.get("trading_sr_per_bar")), _finite(m.get("trading_pnl_n"))
        dsr = None
        if sr is not None and n_obs:
            dsr = deflated_sharpe_ratio(sr, int(n_obs), _finite(m.get("trading_pnl_skew")) or 0.0,
                                        _finite(m.get("trading_pnl_kurtosis")) or 3.0, n_trials_run)
        failed = []
        if result["status"] == "validated":
            if q > fdr_level:
                failed.append("fdr")
            if dsr is not None and dsr < min_deflated_sharpe:
                failed.append("deflated_sharpe")
        decision = "rejected" if result["status"] == "rejected" or failed else "validated"
        out.append({"result": result, "p_value": float(p), "q_value": float(q), "deflated_sharpe": dsr,
                    "n_trials": int(_finite(m.get("n_trials")) or 1), "n_trials_run": n_trials_run,
                    "n_permutations": int(_finite(m.get("null_screen_n")) or 0),
                    "failed": failed, "decision": decision})
    return out


def control_false_discoveries(settings: Settings, *, results: list[dict[str, Any]], run_id: str,
                              recorded_at: pd.Timestamp | None = None) -> list[dict[str, Any]]:
    """Ledger, q-values and deflated Sharpe over the run's results; returns them with updated statuses."""
    from registry import Registry
    from warehouse import open_warehouse

    assessed = assess_hypotheses(results, fdr_level=settings.fdr_level,
                                 min_deflated_sharpe=settings.min_deflated_sharpe)
    if not assessed:
        return results
    registry = Registry.from_settings(settings)
    updated: dict[tuple[str, str], dict[str, Any]] = {}
    for a in assessed:
        r = a["result"]
        _record_on_version(registry, r, a, settings)
        updated[(r["model_name"], str(r["version"]))] = {
            **r, "status": a["decision"], "failed_gates": list(r.get("failed_gates") or []) + a["failed"],
            "q_value": a["q_value"], "deflated_sharpe": a["deflated_sharpe"]}
        log.info("hypothesis %s v%s: p=%.4g (%d permutations) q=%.4g dsr=%s -> %s%s", r["model_name"], r["version"],
                 a["p_value"], a["n_permutations"], a["q_value"],
                 "n/a" if a["deflated_sharpe"] is None else f"{a['deflated_sharpe']:.3f}", a["decision"],
                 f" (failed {', '.join(a['failed'])})" if a["failed"] else "")
    when = recorded_at if recorded_at is not None else pd.Timestamp.now(tz="UTC")
    with open_warehouse(settings) as warehouse:
        warehouse.write_hypotheses([{
            "run_id": run_id, "model": a["result"]["model_name"], "model_version": str(a["result"]["version"]),
            "spec": a["result"].get("spec", ""), "symbol": a["result"].get("symbol", ""),
            "status": a["result"]["status"], "p_value": a["p_value"], "n_permutations": a["n_permutations"],
            "n_trials": a["n_trials"], "q_value": a["q_value"], "deflated_sharpe": a["deflated_sharpe"],
            "n_trials_run": a["n_trials_run"], "decision": a["decision"], "recorded_at": when,
        } for a in assessed], tenant=settings.scope)
    return [updated.get((r.get("model_name"), str(r.get("version"))), r) for r in results]


def _record_on_version(registry: Any, result: dict[str, Any], a: dict[str, Any], settings: Settings) -> None:
    """Tags, metrics and a model-card section on the version; a newly failed gate rejects it."""
    name, version = result["model_name"], str(result["version"])
    mv = registry.client.get_model_version(name, version)
    metrics = {"holdout_q_value": a["q_value"], "holdout_n_trials_run": float(a["n_trials_run"])}
    if a["deflated_sharpe"] is not None:
        metrics["holdout_deflated_sharpe"] = a["deflated_sharpe"]
    if result["status"] == "validated":
        metrics["gate_fdr"] = float("fdr" not in a["failed"])
        if a["deflated_sharpe"] is not None:
            metrics["gate_deflated_sharpe"] = float("deflated_sharpe" not in a["failed"])
    for key, value in metrics.items():
        registry.client.log_metric(mv.run_id, key, value)
    tags: dict[str, str] = {"q_value": f"{a['q_value']:.6g}", "n_trials_run": str(a["n_trials_run"])}
    if a["deflated_sharpe"] is not None:
        tags["deflated_sharpe"] = f"{a['deflated_sharpe']:.6g}"
    if a["failed"]:
        failed = [g for g in (mv.tags.get("failed_gates") or "none").split(",") if g and g != "none"] + a["failed"]
        tags.update(validation_status="rejected", lifecycle="rejected", failed_gates=",".join(failed))
        registry.client.set_tag(mv.run_id, "validation_status", "rejected")
    registry.tag(name, version, **tags)
    _append_to_card(registry, mv.run_id, a, settings)


def _append_to_card(registry: Any, run_id: str, a: dict[str, Any], settings: Settings) -> None:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:  # through the registry's client: its tracking URI
        try:
            card = Path(registry.client.download_artifacts(run_id, "model_card.md", tmp)).read_text()
        except Exception:  # a version validated before model cards existed has none
            card = ""
    dsr = "not a trading signal" if a["deflated_sharpe"] is None else \
        f"{a['deflated_sharpe']:.4f} (at least {settings.min_deflated_sharpe:g} needed)"
    verdict = f"rejected: failed {', '.join(a['failed'])}" if a["failed"] else \
        ("rejected earlier, by its own gates" if a["result"]["status"] == "rejected" else "kept")
    section = f"""
## Multiple testing across the run

| quantity | value |
|---|---|
| hypothesis p-value (holdout screen) | {a['p_value']:.4g} ({a['n_permutations']} permutations) |
| Benjamini–Hochberg q-value | {a['q_value']:.4g} (at most {settings.fdr_level:g} needed) |
| deflated Sharpe ratio | {dsr} |
| Optuna trials behind this version | {a['n_trials']} |
| trials in the run (N of the deflated Sharpe) | {a['n_trials_run']} |

Outcome: {verdict}.
"""
    registry.client.log_text(run_id, card.split("\n## Multiple testing across the run")[0] + section,
                             "model_card.md")
