"""What is registered: one JSON-safe dict per model version, for `alphaops models` and `make run`."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.config import Settings
from registry import Registry

MAIN_METRICS = ("auc", "accuracy", "n_test", "null_p_value", "trading_sharpe", "trading_max_drawdown",
                "rmse", "qlike", "r2")


def _clean(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def list_versions(settings: Settings, *, with_history: bool = False) -> list[dict[str, Any]]:
    registry = Registry.from_settings(settings)
    out = []
    for name in registry.model_names():
        history = registry.history(name) if with_history else None
        aliases = registry.aliases(name)
        for mv in registry.versions(name):
            run = registry.client.get_run(mv.run_id)
            metrics = {k.removeprefix("holdout_"): _clean(v) for k, v in run.data.metrics.items()
                       if k.startswith("holdout_")}
            gates = {k.removeprefix("gate_"): bool(v) for k, v in run.data.metrics.items() if k.startswith("gate_")}
            metrics["gates"] = gates
            entry = {
                "name": name, "version": str(mv.version), "aliases": sorted(aliases.get(str(mv.version), [])),
                "family": mv.tags.get("family"), "spec": mv.tags.get("spec"), "symbol": mv.tags.get("symbol"),
                "timeframe": mv.tags.get("timeframe"), "tenant": registry.tenant,
                "validation_status": mv.tags.get("validation_status", "pending"),
                "lifecycle": mv.tags.get("lifecycle"), "failed_gates": mv.tags.get("failed_gates"),
                "rank": int(mv.tags["rank"]) if "rank" in mv.tags else None,
                "run_id": mv.run_id, "data_fingerprint": mv.tags.get("data_fingerprint"),
                "metrics": metrics,
            }
            if with_history:
                entry["alias_history"] = [e for e in history if e["version"] == str(mv.version)]
            out.append(entry)
    return out
