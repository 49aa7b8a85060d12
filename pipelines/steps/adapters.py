"""Adapters between Airflow tasks and the typed steps: plain, JSON-safe dicts in and out.

DAG tasks call one function here each; the CLI calls the same functions. Settings come
from the environment (``ALPHAOPS_*``), run parameters from the DAG params.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipelines.config import Settings, get_settings
from pipelines.values import as_timestamp


def run_params(params: dict[str, Any], asset_events: Any) -> dict[str, Any]:
    """The run's parameters: the DAG params, narrowed by any retrain-request Asset events
    (:func:`pipelines.live.retrain.retrain_params`). The extract and label tasks each call
    this with the same params and events, so both see the same symbols and families."""
    from pipelines.live.retrain import retrain_params

    return retrain_params(params, asset_events)


def resolve_datasets(settings: Settings, symbols: list[str], as_of: pd.Timestamp) -> list[dict[str, Any]]:
    """Ingest the bundled sample symbols (idempotent) and find every symbol's timeframes."""
    from pipelines.ingest.sources import SAMPLE_SYMBOLS
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
    list the datasets; a retrain request narrows the symbols."""
    from pipelines.orchestration.reaper import reap_orphans_quietly

    settings = get_settings()
    reap_orphans_quietly(settings)
    params = run_params(params, asset_events)
    return resolve_datasets(settings, list(params["symbols"]), as_timestamp(as_of))


def features(dataset: dict[str, Any], as_of: Any) -> dict[str, Any]:
    """Featurize one (symbol, timeframe): the DAG maps this over the datasets, so that a task
    holds one symbol's series at a time."""
    from pipelines.steps.build import build_features

    return build_features(get_settings(), symbol=dataset["symbol"], timeframe=dataset["timeframe"],
                          as_of=as_timestamp(as_of))


def label(feature_refs: list[dict[str, Any]] | dict[str, Any], params: dict[str, Any], as_of: Any,
          asset_events: Any = None) -> list[dict[str, Any]]:
    """Write the labels of one featurized (symbol, timeframe), or of each in a list, and return
    one train job per (spec, symbol, timeframe)."""
    from models.catalog import specs_for
    from pipelines.steps.build import build_labels

    settings = get_settings()
    params = run_params(params, asset_events)
    from pipelines.universes import universes_covered

    specs = specs_for(list(params["families"]))
    jobs = []
    for ref in [feature_refs] if isinstance(feature_refs, dict) else feature_refs:
        build_labels(settings, symbol=ref["symbol"], timeframe=ref["timeframe"],
                     spec_names=[s.name for s in specs], as_of=as_timestamp(as_of))
        # A universe spec trains once per universe whose members are all in the run (under its name).
        targets = [(s, ref["symbol"]) for s in specs if not s.universe] + [
            (s, name) for s in specs if s.universe
            for name in universes_covered(list(params["symbols"]), ref["symbol"], ref["timeframe"])]
        jobs += [{"spec_name": s.name, "symbol": symbol, "timeframe": ref["timeframe"],
                  "feature_set_version": ref["feature_set_version"], "trials": int(params["trials"]),
                  "holdout_fraction": float(params["holdout_fraction"]),
                  "trigger": str(params.get("reason") or "schedule")} for s, symbol in targets]
    return jobs


def plan(job_lists: Any) -> list[dict[str, Any]]:
    """The train jobs of every (symbol, timeframe), in one list for the mapped train task; a universe
    job, which each member's label task emits, is kept once."""
    import json

    unique = {json.dumps(job, sort_keys=True): job for jobs in job_lists for job in jobs}
    return list(unique.values())


def train(job: dict[str, Any], as_of: Any) -> dict[str, Any]:
    """Train one spec; a spec without enough labelled rows is skipped (logged), not a failed run."""
    import logging

    from models.cv import InsufficientDataError
    from pipelines.orchestration.reaper import process_tags
    from pipelines.steps.train import train_spec

    try:
        with process_tags():  # its runs carry this process and task, for the reaper
            return train_spec(get_settings(), as_of=as_timestamp(as_of), **job)
    except InsufficientDataError as exc:
        logging.getLogger(__name__).warning("skipped %s on %s: %s", job["spec_name"], job["symbol"], exc)
        return {"skipped": str(exc), "spec": job["spec_name"], "symbol": job["symbol"]}


def validate(trained: dict[str, Any], params: dict[str, Any], as_of: Any) -> dict[str, Any]:
    from pipelines.steps.validate import validate_version

    if "skipped" in trained:
        return {**trained, "status": "skipped"}
    return validate_version(get_settings(), model_name=trained["model_name"], version=trained["version"],
                            as_of=as_timestamp(as_of), holdout_fraction=float(params["holdout_fraction"]))


def rank(validated: list[dict[str, Any]], run_id: str = "manual") -> list[dict[str, Any]]:
    """Control false discoveries over every hypothesis of the run, then rank what survives."""
    from pipelines.steps.discoveries import control_false_discoveries
    from pipelines.steps.rank import rank_models

    settings = get_settings()
    survivors = control_false_discoveries(settings, results=validated, run_id=run_id)
    return rank_models(settings, validated=[v for v in survivors if v["status"] == "validated"])


def deploy(ranking: list[dict[str, Any]], as_of: Any, run_id: str) -> list[dict[str, Any]]:
    from pipelines.steps.deploy import deploy_models

    return deploy_models(get_settings(), ranking=ranking, as_of=as_timestamp(as_of), run_id=run_id)


def canary(as_of: Any, run_id: str) -> list[dict[str, Any]]:
    from pipelines.steps.canary import evaluate_canaries

    return evaluate_canaries(get_settings(), as_of=as_timestamp(as_of), run_id=run_id)


def fill_outcomes(as_of: Any) -> int:
    """The monitor DAG's first task: outcomes of logged predictions from later bars."""
    from pipelines.live.outcomes import fill_outcomes as fill

    return fill(get_settings(), as_timestamp(as_of))


def pattern_windows(as_of: Any) -> list[dict[str, Any]]:
    """The monitor DAG's pattern task: history and closed trades' windows into the served pattern libraries."""
    from pipelines.steps.patterns import fill_pattern_library

    return fill_pattern_library(get_settings(), as_of=as_timestamp(as_of))


def monitor(params: dict[str, Any], as_of: Any, *, scheduled: bool) -> list[dict[str, Any]]:
    """Check every champion (drift, live metrics, triggers), sending alerts through the webhook."""
    from pipelines.live.alerts import hook_for
    from pipelines.live.monitor import monitor_models

    settings = get_settings()
    return monitor_models(settings, as_of=as_timestamp(as_of), manual=list(params.get("manual") or []),
                          scheduled=scheduled, alert_hook=hook_for(settings.alert_webhook_url))


def request_retrain(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The retraining requests among the monitor results (one per model with ``retrain`` set)."""
    from pipelines.live.retrain import request_retrain as requests_in

    return requests_in(results)


def retrain_event_extra(requests: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``extra`` of the retrain-request Asset event for these requests."""
    from pipelines.live.retrain import retrain_event_extra as extra_for

    return extra_for(requests)
