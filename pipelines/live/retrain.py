"""Retraining requests: the triggers, the cool-down, and the Asset event train_models is scheduled on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from pipelines.config import RETRAIN_REQUEST_URI, Settings
from pipelines.live.thresholds import MonitorConfig
from pipelines.values import json_safe


def decide_retrain(*, drift_share: float, n_features: int, n_outcomes: int, live_accuracy: float | None,
                   backtest_accuracy: float | None, baseline_accuracy: float | None,
                   model_age_hours: float | None, scheduled: bool, manual: bool,
                   config: MonitorConfig) -> tuple[list[str], list[str]]:
    """``(triggers, reasons)``: trigger codes and one readable reason per trigger that fired."""
    fired: list[tuple[str, str]] = []
    if n_features and drift_share > config.drift_share_threshold:
        fired.append(("drift", f"drift: {drift_share:.0%} of {n_features} features drifted "
                               f"(> {config.drift_share_threshold:.0%})"))
    if live_accuracy is not None and n_outcomes >= config.min_outcomes:
        if baseline_accuracy is not None and live_accuracy < config.baseline_factor * baseline_accuracy:
            fired.append(("accuracy_vs_baseline",
                          f"accuracy_vs_baseline: live accuracy {live_accuracy:.3f} < {config.baseline_factor:g} x "
                          f"majority baseline {baseline_accuracy:.3f} ({n_outcomes} outcomes)"))
        if backtest_accuracy is not None and live_accuracy < backtest_accuracy - config.backtest_margin:
            fired.append(("accuracy_vs_backtest",
                          f"accuracy_vs_backtest: live accuracy {live_accuracy:.3f} is more than "
                          f"{config.backtest_margin * 100:.0f} points below the backtest {backtest_accuracy:.3f} "
                          f"({n_outcomes} outcomes)"))
    if scheduled and model_age_hours is not None and model_age_hours > config.max_model_age_hours:
        fired.append(("schedule", f"schedule: newest version is {model_age_hours:.0f} h old "
                                  f"(> {config.max_model_age_hours:.0f} h)"))
    if manual:
        fired.append(("manual", "manual: retraining requested"))
    return [code for code, _ in fired], [text for _, text in fired]


def apply_cooldown(result: dict[str, Any], last_request: pd.Timestamp | None,
                   config: MonitorConfig) -> dict[str, Any]:
    """``result`` without its retraining request if retraining of the model was already
    requested at ``last_request``, less than ``retrain_cooldown_hours`` before this check.

    The triggers stay in the result (and in ``monitor_history``); one reason says until when
    no new request is made. Manual requests are never held back. A retrain that is already
    queued or running (``train_models`` runs one at a time) would otherwise be requested
    again by every hourly check while the drift lasts.
    """
    if not result.get("retrain") or last_request is None or "manual" in result.get("triggers", []):
        return result
    until = last_request + pd.Timedelta(hours=config.retrain_cooldown_hours)
    if pd.Timestamp(result["checked_at"]) >= until:
        return result
    reason = (f"cool-down: retraining was requested at {last_request:%Y-%m-%d %H:%M} UTC, less than "
              f"{config.retrain_cooldown_hours:g} h ago; no new request before {until:%Y-%m-%d %H:%M} UTC")
    return {**result, "retrain": False, "cooldown_until": until.isoformat(), "reasons": [*result["reasons"], reason]}


def request_retrain(results: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The retraining requests in monitor results: one per model with ``retrain`` set."""
    return [{"model": r["model"], "version": r.get("version"), "symbol": r.get("symbol"), "spec": r.get("spec"),
             "family": r.get("family"), "timeframe": r.get("timeframe"), "triggers": list(r.get("triggers") or []),
             "reasons": list(r.get("reasons") or [])}
            for r in results if r.get("retrain")]


def retrain_event_extra(requests: Sequence[Mapping[str, Any]], user: str = "") -> dict[str, Any]:
    """The ``extra`` of the retrain-request Asset event: the models with their reasons, plus the
    ``user`` whose scope they are in (empty: the tenant's shared models), the ``symbols``,
    ``families`` (spec names: ``specs_for`` accepts them) and a one-line ``reason`` that
    ``train_models`` uses as its run parameters (see :func:`retrain_scopes`)."""
    return json_safe({
        "user": user,
        "models": [dict(r) for r in requests],
        "symbols": sorted({r["symbol"] for r in requests if r.get("symbol")}),
        "families": sorted({r["spec"] for r in requests if r.get("spec")}),
        "reason": "monitor: " + "; ".join(f"{r['model']} ({', '.join(r.get('triggers') or [])})" for r in requests),
    })


def _event_extras(triggering_asset_events: Any) -> list[Mapping[str, Any]]:
    """The ``extra`` of every retrain-request event among a run's triggering Asset events."""
    extras: list[Mapping[str, Any]] = []
    for asset, events in dict(triggering_asset_events or {}).items():
        names = {str(getattr(asset, "uri", asset)).rstrip("/"), str(getattr(asset, "name", ""))}
        if RETRAIN_REQUEST_URI not in names:  # Airflow normalises the URI with a trailing slash
            continue
        for event in events:
            extra = getattr(event, "extra", None)
            extra = event.get("extra") if extra is None and isinstance(event, Mapping) else extra
            if extra:
                extras.append(extra)
    return extras


def retrain_scopes(params: Mapping[str, Any], triggering_asset_events: Any) -> list[dict[str, Any]]:
    """``train_models`` params per scope: for a run started by retrain-request events, one entry
    per ``user`` the events name (empty: the tenant's shared models), with that user's requested
    symbols and specs and the reasons; for any other run, ``params`` alone (its ``user``, or
    the tenant's shared scope when it has none). Sorted by user, shared scope first."""
    extras = _event_extras(triggering_asset_events)
    if not extras:
        return [{**params, "user": str(params.get("user") or "")}]
    by_user: dict[str, list[Mapping[str, Any]]] = {}
    for extra in extras:
        by_user.setdefault(str(extra.get("user") or ""), []).append(extra)
    scopes = []
    for user, group in sorted(by_user.items()):
        symbols = sorted({s for e in group for s in e.get("symbols", [])})
        families = sorted({f for e in group for f in e.get("families", [])})
        reason = "; ".join(str(e.get("reason", "retrain request")) for e in group)
        scopes.append({**params, "user": user, "symbols": symbols or list(params.get("symbols", [])),
                       "families": families or list(params.get("families", [])), "reason": reason})
    return scopes


def send_retrain_request(settings: Settings, results: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Outside Airflow (``alphaops monitor``), emit what the ``monitor_drift`` DAG's
    ``request_retrain`` task emits: one event on the retrain-request Asset, with the same
    ``extra``, in the Airflow metadata DB of these settings. The scheduler running on it starts
    ``train_models`` for the requested models alone (:func:`retrain_scopes`). None when no
    result asks for retraining; LookupError when no Airflow on this state knows the Asset."""
    from pipelines.orchestration.airflow_runner import emit_asset_event

    requests = request_retrain(results)
    if not requests:
        return None
    extra = {**retrain_event_extra(requests, settings.user), "source": "alphaops monitor"}
    return {"requests": requests, "extra": extra, **emit_asset_event(settings, RETRAIN_REQUEST_URI, extra)}

