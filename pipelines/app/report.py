"""What is registered: one JSON-safe dict per model version, for `alphaops models` and `make run`."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.config import Settings
from registry import Registry, scope_of_name

MAIN_METRICS = ("auc", "accuracy", "n_test", "null_p_value", "trading_sharpe", "trading_max_drawdown",
                "rmse", "qlike", "r2")


def _clean(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def list_versions(settings: Settings, *, with_history: bool = False) -> list[dict[str, Any]]:
    registry = Registry.from_settings(settings)
    out = []
    for name in registry.visible_model_names():  # a user's own models and the tenant's shared ones
        history = registry.history(name) if with_history else None
        aliases = registry.aliases(name)
        for mv in registry.versions(name):
            run = registry.client.get_run(mv.run_id)
            metrics = {k.removeprefix("holdout_"): _clean(v) for k, v in run.data.metrics.items()
                       if k.startswith("holdout_")}
            gates = {k.removeprefix("gate_"): bool(v) for k, v in run.data.metrics.items() if k.startswith("gate_")}
            metrics["gates"] = gates
            evidence = version_evidence(mv.tags.get("primary_metric"), metrics, mv.tags.get("spec"))
            entry = {
                "name": name, "version": str(mv.version), "aliases": sorted(aliases.get(str(mv.version), [])),
                "family": mv.tags.get("family"), "spec": mv.tags.get("spec"), "symbol": mv.tags.get("symbol"),
                "timeframe": mv.tags.get("timeframe"), "tenant": registry.tenant,
                "user": registry.user, "scope": scope_of_name(name),
                "validation_status": mv.tags.get("validation_status", "pending"),
                "lifecycle": mv.tags.get("lifecycle"), "failed_gates": mv.tags.get("failed_gates"),
                "rank": int(mv.tags["rank"]) if "rank" in mv.tags else None,
                "run_id": mv.run_id, "data_fingerprint": mv.tags.get("data_fingerprint"),
                "metrics": metrics, "evidence": evidence,
            }
            if with_history:
                entry["alias_history"] = [e for e in history if e["version"] == str(mv.version)]
            out.append(entry)
    return out


def version_evidence(metric: str | None, metrics: dict[str, Any], spec_name: str | None) -> dict[str, Any]:
    """Why a version was kept or rejected, in one place: its score beside its field's best naive
    rule, the null test's p-value and draws, the run's q-value and deflated Sharpe, and the
    walk-forward folds' mean ± std."""
    if not metric:
        return {}
    from models.catalog import spec_by_name

    higher_better = spec_by_name(spec_name).greater_is_better if spec_name else True
    naive = {k.removeprefix("naive_").removesuffix(f"_{metric}"): v for k, v in metrics.items()
             if k.startswith("naive_") and k.endswith(f"_{metric}") and v is not None}
    best = (max if higher_better else min)(naive.items(), key=lambda kv: kv[1]) if naive else (None, None)
    draws = (metrics.get("null_screen_n") or 0) + (metrics.get("null_n") or 0)
    return {"metric": metric, "score": metrics.get(metric), "naive_rule": best[0], "naive_score": best[1],
            "null_p_value": metrics.get("null_p_value"), "null_permutations": int(draws) if draws else None,
            "q_value": metrics.get("q_value"), "deflated_sharpe": metrics.get("deflated_sharpe"),
            "n_trials_run": metrics.get("n_trials_run"),
            "folds_mean": metrics.get(f"wf_{metric}_mean"), "folds_std": metrics.get(f"wf_{metric}_std"),
            "folds_sharpe_mean": metrics.get("wf_sharpe_mean"), "folds_sharpe_std": metrics.get("wf_sharpe_std"),
            "pbo": metrics.get("pbo")}
