"""The rank step: keep the top K validated versions per (tenant, family, symbol), archive the rest.

Score (documented in README): the primary holdout metric's edge over the best baseline or
naive rule on the same holdout, ``score − max(baselines)`` for metrics where higher is better and
``min(baselines) − score`` otherwise. Versions are ordered by that edge; ties go to the newer
version. Champions and challengers are never archived by ranking.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from pipelines.config import Settings
from registry import CHALLENGER, CHAMPION, Registry

log = logging.getLogger(__name__)


def version_edge(registry: Registry, mv: Any) -> float | None:
    """Primary-metric edge over the best baseline or naive rule, from the version's run (None if unscored)."""
    from models.catalog import spec_by_name

    metric = mv.tags.get("primary_metric")
    if not metric:
        return None
    metrics = registry.client.get_run(mv.run_id).data.metrics
    score = metrics.get(f"holdout_{metric}")
    rivals = [v for k, v in metrics.items()
              if k.startswith(("holdout_baseline_", "holdout_naive_")) and k.endswith(f"_{metric}")]
    if score is None:
        return None
    if not rivals:
        return float(score)
    higher_better = spec_by_name(mv.tags["spec"]).greater_is_better
    return float(score - max(rivals)) if higher_better else float(min(rivals) - score)


def rank_models(settings: Settings, *, validated: list[dict[str, Any]], top_k: int | None = None
                ) -> list[dict[str, Any]]:
    """Rank every validated version in the (family, symbol) groups that this run validated."""
    top_k = top_k or settings.top_k
    registry = Registry.from_settings(settings)
    groups: dict[tuple[str, str], list[tuple[float, int, str, Any]]] = defaultdict(list)
    touched = {(v["family"], v["symbol"]) for v in validated}
    this_run = {(v["model_name"], str(v["version"])) for v in validated}
    aliases: dict[str, dict[str, list[str]]] = {}
    for name in registry.model_names():
        aliases[name] = registry.aliases(name)
        for mv in registry.versions(name):
            key = (mv.tags.get("family", ""), mv.tags.get("symbol", ""))
            if key not in touched or mv.tags.get("validation_status") != "validated":
                continue
            if "q_value" not in mv.tags and (name, str(mv.version)) not in this_run:
                continue  # validated by an earlier run that died before its false-discovery control
            if mv.tags.get("lifecycle") == "archived":
                continue
            edge = version_edge(registry, mv)
            if edge is not None:
                groups[key].append((edge, int(mv.version), name, mv))
    table = []
    for (family, symbol), entries in sorted(groups.items()):
        entries.sort(key=lambda e: (e[0], e[1]), reverse=True)
        for rank, (edge, _, name, mv) in enumerate(entries, start=1):
            deployed = {CHAMPION, CHALLENGER} & set(aliases[name].get(str(mv.version), []))
            keep = rank <= top_k or bool(deployed)
            registry.tag(name, str(mv.version), rank=rank, rank_edge=f"{edge:.6f}")
            if not keep:
                registry.archive(name, str(mv.version), reason=f"rank {rank} > top {top_k} in {family}/{symbol}")
            table.append({"family": family, "symbol": symbol, "rank": rank, "model_name": name,
                          "version": str(mv.version), "edge": edge, "kept": keep})
    for row in table:
        log.info("rank %(family)s/%(symbol)s #%(rank)d %(model_name)s v%(version)s edge=%(edge)+.4f kept=%(kept)s", row)
    return table
