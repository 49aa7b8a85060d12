"""The canary decision: at the end of a challenger's window, promote it or roll it back.

Live metrics per arm come from the prediction log (``ml_predictions``): calls routed to the
champion and to the challenger during the window, their error rate and latency, and the hit
rate once outcomes are known (filled from later bars by the monitor).
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from pipelines.config import Settings
from pipelines.live.metrics import decide_canary, live_metrics
from registry import CHALLENGER, CHAMPION, Registry
from warehouse import open_warehouse

log = logging.getLogger(__name__)


def canary_started(registry: Registry, name: str, version: str) -> pd.Timestamp | None:
    events = [e for e in registry.history(name)
              if e["alias"] == CHALLENGER and e["action"] == "set" and e["version"] == version]
    return pd.Timestamp(events[-1]["at"]) if events else None


def evaluate_canaries(settings: Settings, *, as_of: pd.Timestamp, window_hours: float | None = None,
                      run_id: str = "") -> list[dict[str, Any]]:
    """For every challenger whose window has ended: promote, roll back, or keep waiting."""
    window = pd.Timedelta(hours=window_hours if window_hours is not None else settings.canary_window_hours)
    registry = Registry.from_settings(settings)
    decisions = []
    for name in registry.model_names():
        registry.sync_legacy_stages(name)
        challenger = registry.alias_version(name, CHALLENGER)
        champion = registry.alias_version(name, CHAMPION)
        if challenger is None or champion is None:
            continue
        started = canary_started(registry, name, challenger)
        if started is not None and as_of - started < window:
            decisions.append({"model_name": name, "challenger": challenger, "decision": "wait",
                              "reason": f"canary window ends {started + window}"})
            continue
        with open_warehouse(settings) as warehouse:
            frame = warehouse.canary_predictions(tenant=settings.scope, model=name,
                                                 since=started or as_of - window)
        arms = {v: live_metrics(frame[frame["model_version"] == v]) for v in (champion, challenger)}
        decision, reason = decide_canary(arms[champion], arms[challenger])
        if decision == "promote":
            registry.promote(name, reason=f"canary: {reason}", run_id=run_id)
        elif decision == "rollback":
            registry.rollback(name, reason=f"canary: {reason}", run_id=run_id)
        decisions.append({"model_name": name, "challenger": challenger, "champion": champion,
                          "decision": decision, "reason": reason, "live": arms})
        log.info("canary %s v%s: %s (%s)", name, challenger, decision, reason)
    return decisions
