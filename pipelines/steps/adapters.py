"""Adapters between Airflow tasks and the typed steps: plain, JSON-safe dicts in and out.

DAG tasks call one function here each; the CLI calls the same functions. Settings come
from the environment (``ALPHAOPS_*``), run parameters from the DAG params.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipelines.config import Settings, get_settings
from pipelines.values import as_timestamp


def run_scopes(params: dict[str, Any], asset_events: Any) -> list[dict[str, Any]]:
    """The run's parameters per scope (user of the tenant; empty: its shared models): the DAG
    params, or per user the retrain-request Asset events they name
    (:func:`pipelines.live.retrain.retrain_scopes`). The extract and label tasks each call this
    with the same params and events, so both see the same users, symbols and families."""
    from pipelines.live.retrain import retrain_scopes

    return retrain_scopes(params, asset_events)


def scope_settings(user: str | None) -> Settings:
    """Settings from the environment, in the scope of ``user`` when the task's input names one
    (``""``: the tenant's shared scope; None: the environment's ``ALPHAOPS_USER``)."""
    return get_settings() if user is None else get_settings(user=user)


def _by_user(rows: list[dict[str, Any]]) -> dict[str | None, list[dict[str, Any]]]:
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row.get("user"), []).append(row)
    return groups


def resolve_datasets(settings: Settings, symbols: list[str], as_of: pd.Timestamp) -> list[dict[str, Any]]:
    """Ingest the bundled sample symbols (idempotent) and find every symbol's timeframes."""
    from pipelines.ingest.samples import SAMPLE_SYMBOLS
    from pipelines.steps.extract import extract_samples
    from warehouse import open_warehouse

    from pipelines.universes import expand_symbols

    symbols = expand_symbols(symbols)  # a universe name stands for its members
    samples = [s for s in symbols if s in SAMPLE_SYMBOLS]
    if samples:
        extract_samples(settings, samples, as_of)
    with open_warehouse(settings) as warehouse:
        inventory = warehouse.inventory(settings.scope)
    datasets = []
    for symbol in symbols:
        rows = inventory[inventory["symbol"] == symbol]
        if rows.empty:
            known = ", ".join(sorted(set(inventory["symbol"]) | set(SAMPLE_SYMBOLS))) or "none"
            if settings.user:  # a user's run reads the user's own rows only
                raise ValueError(f"symbol {symbol!r} has no data of user {settings.user!r} of tenant "
                                 f"{settings.tenant!r}; ingest it with `alphaops --user {settings.user} ingest` "
                                 f"(known: {known})")
            raise ValueError(f"symbol {symbol!r} has no data; ingest it with `alphaops ingest` (known: {known})")
        datasets += [{"symbol": symbol, "timeframe": tf} for tf in rows["timeframe"]]
    return datasets


def extract(params: dict[str, Any], as_of: Any, asset_events: Any = None) -> list[dict[str, Any]]:
    """End what killed runs left behind (``pipelines.orchestration.reaper``), then ingest the sample symbols and
    list the datasets of each scope (``user``); a retrain request narrows the symbols."""
    from pipelines.orchestration.reaper import reap_orphans_quietly

    reap_orphans_quietly(get_settings())
    datasets = []
    for scope in run_scopes(params, asset_events):
        settings = scope_settings(scope["user"])
        datasets += [{**d, "user": settings.user}
                     for d in resolve_datasets(settings, list(scope["symbols"]), as_timestamp(as_of))]
    return datasets


def features(dataset: dict[str, Any], as_of: Any) -> dict[str, Any]:
    """Featurize one (symbol, timeframe): the DAG maps this over the datasets, so that a task
    holds one symbol's series at a time."""
    from pipelines.steps.build import build_features

    built = build_features(scope_settings(dataset.get("user")), symbol=dataset["symbol"],
                           timeframe=dataset["timeframe"], as_of=as_timestamp(as_of))
    return {**built, "user": dataset.get("user")} if "user" in dataset else built


def label(feature_refs: list[dict[str, Any]] | dict[str, Any], params: dict[str, Any], as_of: Any,
          asset_events: Any = None) -> list[dict[str, Any]]:
    """Write the labels of one featurized (symbol, timeframe), or of each in a list, and return
    one train job per (spec, symbol, timeframe), in the scope (``user``) of its dataset."""
    from models.catalog import specs_for
    from pipelines.steps.build import build_labels
    from pipelines.universes import universes_covered

    scopes = {scope["user"]: scope for scope in run_scopes(params, asset_events)}
    jobs = []
    for ref in [feature_refs] if isinstance(feature_refs, dict) else feature_refs:
        settings = scope_settings(ref.get("user"))
        scope = scopes.get(settings.user) or next(iter(scopes.values()))
        specs = specs_for(list(scope["families"]))
        built = build_labels(settings, symbol=ref["symbol"], timeframe=ref["timeframe"],
                             spec_names=[s.name for s in specs], as_of=as_timestamp(as_of))
        # A spec that cannot run on these bars (build_labels logs why) gets no train job.
        specs = [s for s in specs if s.name not in built["skipped"]]
        # A universe spec trains once per universe whose members are all in the run (under its name).
        targets = [(s, ref["symbol"]) for s in specs if not s.universe] + [
            (s, name) for s in specs if s.universe
            for name in universes_covered(list(scope["symbols"]), ref["symbol"], ref["timeframe"])]
        jobs += [{"spec_name": s.name, "symbol": symbol, "timeframe": ref["timeframe"],
                  "feature_set_version": ref["feature_set_version"], "trials": int(scope["trials"]),
                  "holdout_fraction": float(scope["holdout_fraction"]),
                  "trigger": str(scope.get("reason") or "schedule"), "user": settings.user}
                 for s, symbol in targets]
    return jobs


def plan(job_lists: Any) -> list[dict[str, Any]]:
    """The train jobs of every (symbol, timeframe), in one list for the mapped train task; a universe
    job, which each member's label task emits, is kept once."""
    import json

    unique = {json.dumps(job, sort_keys=True): job for jobs in job_lists for job in jobs}
    return list(unique.values())


def train(job: dict[str, Any], as_of: Any) -> dict[str, Any]:
    """Train one spec in its job's scope; a spec without enough labelled rows is skipped (logged), not a failed run."""
    import logging

    from models.cv import InsufficientDataError
    from pipelines.orchestration.reaper import process_tags
    from pipelines.steps.train import train_spec

    job = dict(job)
    user = job.pop("user", None)
    scope = {} if user is None else {"user": user}
    try:
        with process_tags():  # its runs carry this process and task, for the reaper
            return {**train_spec(scope_settings(user), as_of=as_timestamp(as_of), **job), **scope}
    except InsufficientDataError as exc:
        logging.getLogger(__name__).warning("skipped %s on %s: %s", job["spec_name"], job["symbol"], exc)
        return {"skipped": str(exc), "spec": job["spec_name"], "symbol": job["symbol"], **scope}


def validate(trained: dict[str, Any], params: dict[str, Any], as_of: Any) -> dict[str, Any]:
    from pipelines.steps.validate import validate_version

    if "skipped" in trained:
        return {**trained, "status": "skipped"}
    scope = {"user": trained["user"]} if "user" in trained else {}
    result = validate_version(scope_settings(trained.get("user")), model_name=trained["model_name"],
                              version=trained["version"], as_of=as_timestamp(as_of),
                              holdout_fraction=float(params["holdout_fraction"]))
    return {**result, **scope}


def rank(validated: list[dict[str, Any]], run_id: str = "manual") -> list[dict[str, Any]]:
    """Per scope, control false discoveries over every hypothesis of the run, then rank what survives."""
    from pipelines.steps.discoveries import control_false_discoveries
    from pipelines.steps.rank import rank_models

    table = []
    for user, results in sorted(_by_user(list(validated)).items(), key=lambda item: item[0] or ""):
        settings = scope_settings(user)
        survivors = control_false_discoveries(settings, results=results, run_id=run_id)
        ranked = rank_models(settings, validated=[v for v in survivors if v["status"] == "validated"])
        table += [{**row, "user": user} for row in ranked] if user is not None else ranked
    return table


def deploy(ranking: list[dict[str, Any]], as_of: Any, run_id: str) -> list[dict[str, Any]]:
    from pipelines.steps.deploy import deploy_models

    deployed = []
    for user, rows in sorted(_by_user(list(ranking)).items(), key=lambda item: item[0] or ""):
        deployed += deploy_models(scope_settings(user), ranking=rows, as_of=as_timestamp(as_of), run_id=run_id)
    return deployed


def canary(as_of: Any, run_id: str) -> list[dict[str, Any]]:
    from pipelines.steps.canary import evaluate_canaries

    return evaluate_canaries(get_settings(), as_of=as_timestamp(as_of), run_id=run_id)


def fill_outcomes(as_of: Any, user: str | None = None) -> int:
    """The monitor DAG's first task: outcomes of logged predictions from later bars."""
    from pipelines.live.outcomes import fill_outcomes as fill

    return fill(scope_settings(user), as_timestamp(as_of))


def pattern_windows(as_of: Any, user: str | None = None) -> list[dict[str, Any]]:
    """The monitor DAG's pattern task: history and closed trades' windows into the served pattern libraries."""
    from pipelines.steps.patterns import fill_pattern_library

    return fill_pattern_library(scope_settings(user), as_of=as_timestamp(as_of))


def monitor(params: dict[str, Any], as_of: Any, *, scheduled: bool) -> list[dict[str, Any]]:
    """Check every champion (drift, live metrics, triggers), sending alerts through the webhook."""
    from pipelines.live.alerts import hook_for
    from pipelines.live.monitor import monitor_models

    settings = scope_settings(params.get("user") or "")
    return monitor_models(settings, as_of=as_timestamp(as_of), manual=list(params.get("manual") or []),
                          scheduled=scheduled, alert_hook=hook_for(settings.alert_webhook_url))


def request_retrain(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The retraining requests among the monitor results (one per model with ``retrain`` set)."""
    from pipelines.live.retrain import request_retrain as requests_in

    return requests_in(results)


def retrain_event_extra(requests: list[dict[str, Any]], user: str | None = None) -> dict[str, Any]:
    """The ``extra`` of the retrain-request Asset event for these requests of ``user``'s scope."""
    from pipelines.live.retrain import retrain_event_extra as extra_for

    return extra_for(requests, scope_settings(user).user)
