"""The deploy step.

Deploy: per trained model, the best version this run validated becomes ``challenger`` if it
beats the current ``champion`` on a holdout both were scored on (rows after both training
windows). With no champion yet, it becomes challenger and is promoted at once (first deploy).
The canary DAG later promotes or rolls back (:func:`pipelines.live.metrics.decide_canary`).
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from models.catalog import spec_by_name
from models.metrics import primary_score
from pipelines.config import Settings
from pipelines.evaluation.scoring import bundle_scores, dataset_for_version
from registry import CHALLENGER, CHAMPION, Registry

log = logging.getLogger(__name__)


def trained_holdout_fraction(registry: Registry, name: str, version: str, settings: Settings) -> float:
    """The holdout fraction ``version`` was trained with (the setting for versions that did not log it)."""
    run = registry.client.get_run(registry.client.get_model_version(name, version).run_id)
    return float(run.data.params.get("holdout_fraction", settings.holdout_fraction))


def compare_on_shared_holdout(settings: Settings, registry: Registry, name: str, new: str, incumbent: str,
                              as_of: pd.Timestamp) -> dict[str, Any]:
    """Score both versions on holdout rows later than both training windows.

    Each version's rows are rebuilt with the holdout fraction it was trained with (its run's
    ``holdout_fraction`` param), so "unseen by both" starts after both real training windows
    and their purge gaps, whatever the current setting.
    """
    spec = spec_by_name(registry.client.get_model_version(name, new).tags["spec"])
    if spec.episode_costs is not None:  # policies: compared on the held-out episodes after both training windows
        from pipelines.steps.episodes import compare_episodes

        return compare_episodes(settings, registry, spec, name, new, incumbent, as_of, tuple(
            trained_holdout_fraction(registry, name, v, settings) for v in (new, incumbent)))
    spec, new_data, new_bundle = dataset_for_version(settings, registry, name, new, as_of,
                                                     trained_holdout_fraction(registry, name, new, settings))
    _, old_data, old_bundle = dataset_for_version(settings, registry, name, incumbent, as_of,
                                                  trained_holdout_fraction(registry, name, incumbent, settings))
    start = max(new_data.holdout_start, old_data.holdout_start)
    rows_new = new_data.holdout_idx[new_data.index[new_data.holdout_idx] >= start]
    shared = new_data.index[rows_new].intersection(old_data.index)
    if len(shared) < 30:
        return {"shared_rows": len(shared), "better": False,
                "reason": f"only {len(shared)} holdout rows are unseen by both versions; keep the champion"}
    new_rows = new_data.index.get_indexer(shared)
    old_rows = old_data.index.get_indexer(shared)
    y = new_data.y[new_rows]
    new_score = primary_score(spec, y, bundle_scores(spec, new_bundle, new_data.X[new_rows]))
    old_score = primary_score(spec, y, bundle_scores(spec, old_bundle, old_data.X[old_rows]))
    better = new_score > old_score if spec.greater_is_better else new_score < old_score
    return {"shared_rows": int(len(shared)), "new_score": new_score, "champion_score": old_score,
            "better": bool(better), "metric": spec.metric,
            "reason": f"{spec.metric} {new_score:.4f} vs champion {old_score:.4f} on {len(shared)} shared rows"}


def deploy_models(settings: Settings, *, ranking: list[dict[str, Any]], as_of: pd.Timestamp,
                  run_id: str = "") -> list[dict[str, Any]]:
    """Set ``challenger`` (or, on a first deploy, ``champion``) for each model ranked in this run."""
    registry = Registry.from_settings(settings)
    best: dict[str, dict[str, Any]] = {}
    for row in ranking:
        if row["kept"] and (row["model_name"] not in best or row["edge"] > best[row["model_name"]]["edge"]):
            best[row["model_name"]] = row
    actions = []
    for name, row in sorted(best.items()):
        version = row["version"]
        champion = registry.alias_version(name, CHAMPION)
        if champion == version or registry.alias_version(name, CHALLENGER) == version:
            actions.append({"model_name": name, "version": version, "action": "none",
                            "reason": "already deployed"})
            continue
        if champion is None:
            registry.set_challenger(name, version, reason="first deploy", run_id=run_id)
            registry.promote(name, reason="first deploy: no champion to compare with", run_id=run_id)
            actions.append({"model_name": name, "version": version, "action": "champion",
                            "reason": "first deploy"})
            continue
        verdict = compare_on_shared_holdout(settings, registry, name, version, champion, as_of)
        if verdict["better"]:
            registry.set_challenger(name, version, reason=f"canary: {verdict['reason']}", run_id=run_id)
            actions.append({"model_name": name, "version": version, "action": "challenger", **verdict})
        else:
            registry.tag(name, version, not_deployed=verdict["reason"])
            actions.append({"model_name": name, "version": version, "action": "kept_champion", **verdict})
    for a in actions:
        log.info("deploy %s v%s: %s (%s)", a["model_name"], a["version"], a["action"], a["reason"])
    return actions


