"""The monitor step: is each champion still the model it was validated as?

For every ``champion`` of the tenant, over a window of its prediction log (``ml_predictions``,
written by :mod:`pipelines.live.prediction_sink`):

- **Data drift** (Evidently: the per-feature ``ValueDrift`` tests that ``DataDriftPreset``
  generates, plus ``DriftedColumnsCount``; the preset itself with ``drift_preset``): the logged
  feature rows against the model's training reference (a seeded sample of at most
  ``reference_rows`` rows of the version's own training window, in the bundle's feature
  order). ``drift_share`` is the share of features whose Evidently test failed.
- **Prediction drift** (Evidently ``ValueDrift``): the logged primary output against the
  bundle's predictions on the same reference rows.
- **Live quality**: :func:`pipelines.live.outcomes.fill_outcomes` writes each prediction's outcome (the spec's own
  label, e.g. ``close[t+h] > close[t]``) once the later bars are in the warehouse; live
  accuracy is computed over the rows whose outcome is known.
- **Serving health**: latency p50/p95/p99, error rate and fallback rate of the logged calls.

Retraining is requested when any trigger fires (:func:`pipelines.live.retrain.decide_retrain`): the drifted share
exceeds ``drift_share_threshold``; live accuracy falls below ``baseline_factor`` × the
holdout majority-class baseline, or more than ``backtest_margin`` below the holdout accuracy;
a scheduled check finds the newest version older than ``max_model_age_hours``; or a manual
request names the model. Within ``retrain_cooldown_hours`` of a check that requested retraining
of a model, automatic triggers are recorded but request nothing new (:func:`pipelines.live.retrain.apply_cooldown`);
manual requests always go through. Results go to ``monitor_history``; each check is a run in the
MLflow experiment ``<tenant>/monitoring``, with the Evidently HTML report as an artifact when the
check saw drift or a trigger, or when the model had no report in ``report_interval_hours``.
The ``monitor_drift`` DAG turns the requests into one Airflow Asset event on
``alphaops://retrain-request`` (:mod:`pipelines.live.retrain`);
``train_models`` retrains, and its deploy step replaces the champion only if the new version
beats it on the shared holdout.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import Settings
from pipelines.live.drift import OUTPUT_COLUMN, drift_report
from pipelines.live.metrics import live_metrics
from pipelines.live.retrain import apply_cooldown, decide_retrain
from pipelines.live.thresholds import MonitorConfig
from pipelines.values import as_timestamp, finite_or_none, json_safe

log = logging.getLogger(__name__)

DEFAULT_WINDOW = pd.Timedelta(hours=24)


def primary_outputs(bundle: Path, X: np.ndarray) -> np.ndarray:
    """The bundle's primary output per row, as the prediction sink stores it (``output``)."""
    import serving

    from pipelines.live.prediction_sink import prediction_rows

    result = serving.Predictor.load(bundle).predict(np.ascontiguousarray(X, dtype=np.float32))
    rows = prediction_rows([{"model": "reference", "features": None, "output": result.to_dict()}], tenant="")
    return rows["output"].to_numpy(dtype=float)


def _window_rows(warehouse: Any, tenant: str, model: str, as_of: pd.Timestamp,
                 window: pd.Timedelta | int) -> pd.DataFrame:
    if isinstance(window, (int, np.integer)) and not isinstance(window, bool):
        return warehouse.read_predictions(tenant=tenant, model=model, end=as_of, limit=int(window))
    start = as_of - pd.Timedelta(window) + pd.Timedelta(microseconds=1)
    return warehouse.read_predictions(tenant=tenant, model=model, start=start, end=as_of)


def _training_inputs(settings: Settings, registry: Any, spec: Any, name: str, version: str, run: Any
                     ) -> tuple[np.ndarray, list[str], Path]:
    """The version's training inputs (bundle feature order), their names and its bundle.

    Row specs: the training rows of its dataset. Episodic specs (execution): the states its own
    ONNX policy passes through on episodes of its training bars, which is what it is sent live."""
    from pipelines.evaluation.scoring import dataset_for_version, version_bundle

    as_of, holdout = as_timestamp(run.data.tags["as_of"]), float(run.data.params["holdout_fraction"])
    if spec.episode_costs is None:
        _, data, bundle = dataset_for_version(settings, registry, name, version, as_of, holdout)
        return data.X[data.train_idx], list(data.feature_names), bundle
    from models.families.execution import onnx_policy, policy_states
    from models.families.execution_env import STATE_NAMES
    from pipelines.evaluation.replay import episode_bars, episode_split

    mv = registry.client.get_model_version(name, version)
    bars = episode_bars(settings, spec, symbol=mv.tags["symbol"], timeframe=mv.tags["timeframe"], as_of=as_of)
    train_stop, _ = episode_split(len(bars), holdout, spec.horizon)
    bundle = version_bundle(settings, registry, name, version)
    states = policy_states(onnx_policy((bundle / "model.onnx").read_bytes()), bars, train_stop,
                           json.loads(run.data.tags["best_params"]))
    return states, list(STATE_NAMES), bundle


def _reference(settings: Settings, registry: Any, spec: Any, name: str, version: str, run: Any,
               config: MonitorConfig) -> tuple[pd.DataFrame, list[str]]:
    """A seeded sample of the version's training inputs (:func:`_training_inputs`) with its outputs."""
    inputs, names, bundle = _training_inputs(settings, registry, spec, name, version, run)
    rng = np.random.default_rng(config.seed)
    rows = np.sort(rng.choice(len(inputs), size=min(config.reference_rows, len(inputs)), replace=False))
    X = inputs[rows]
    reference = pd.DataFrame(X.astype(np.float64), columns=names)
    reference[OUTPUT_COLUMN] = primary_outputs(bundle, X)
    return reference, names


def _model_age_hours(registry: Any, name: str, as_of: pd.Timestamp) -> float | None:
    versions = registry.versions(name)
    if not versions:
        return None
    newest = max(int(mv.creation_timestamp or 0) for mv in versions)
    return max(0.0, (as_of - pd.Timestamp(newest, unit="ms", tz="UTC")).total_seconds() / 3600.0)


def _log_monitoring_run(settings: Settings, registry: Any, result: dict[str, Any], snapshot: Any) -> str:
    """A run in ``<tenant>/monitoring`` with the metrics and (with a ``snapshot``) the Evidently
    HTML; returns the report URI, or "" without a snapshot."""
    from pipelines.tracking import use_experiment

    client = registry.client
    experiment_id = use_experiment(settings, f"{settings.scope}/monitoring")
    run = client.create_run(experiment_id, run_name=f"monitor.{result['spec']}.{result['symbol']}", tags={
        "model": result["model"], "model_version": result["version"], "symbol": result["symbol"],
        "spec": result["spec"], "as_of": result["checked_at"], "retrain": str(result["retrain"]).lower(),
        "triggers": ",".join(result["triggers"]) or "none"})
    run_id = run.info.run_id
    for key in ("drift_share", "n_drifted", "n_features", "prediction_drift_score", "n_predictions", "n_outcomes",
                "live_accuracy", "backtest_accuracy", "baseline_accuracy", "live_mae", "live_rmse", "backtest_mae",
                "latency_p50_us", "latency_p95_us",
                "latency_p99_us", "error_rate", "fallback_rate"):
        if finite_or_none(result.get(key)) is not None:
            client.log_metric(run_id, key, float(result[key]))
    uri = ""
    if snapshot is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "data_drift.html"
            snapshot.save_html(str(path))
            client.log_artifact(run_id, str(path), "evidently")
        uri = f"{run.info.artifact_uri.rstrip('/')}/evidently/data_drift.html"
    client.log_text(run_id, json.dumps({**result, "report_uri": uri}, indent=2, sort_keys=True), "monitor_result.json")
    client.set_terminated(run_id)
    return uri


def _monitor_one(settings: Settings, registry: Any, name: str, version: str, as_of: pd.Timestamp,
                 window: pd.Timedelta | int, *, manual: bool, scheduled: bool, config: MonitorConfig,
                 last_request: pd.Timestamp | None, report_due: bool) -> dict[str, Any]:
    """One champion's check; ``last_request``: its latest retrain request within the
    cool-down, ``report_due``: no HTML report of it within ``report_interval_hours``."""
    from models.catalog import spec_by_name
    from warehouse import open_warehouse

    mv = registry.client.get_model_version(name, version)
    run = registry.client.get_run(mv.run_id)
    spec = spec_by_name(mv.tags["spec"], mv.tags.get("timeframe"))
    binary = spec.task == "classifier" and len(spec.class_names) == 2
    with open_warehouse(settings) as warehouse:
        frame = _window_rows(warehouse, settings.scope, name, as_of, window)
    frame = frame[frame["model_version"] == str(version)]
    live = live_metrics(frame, binary=binary, regression=spec.task == "regressor")
    result: dict[str, Any] = {
        "model": name, "version": str(version), "symbol": mv.tags.get("symbol"), "spec": spec.name,
        "family": spec.family, "timeframe": mv.tags.get("timeframe"), "checked_at": as_of.isoformat(),
        "status": "ok", "drift_share": 0.0, "drifted": False, "n_drifted": 0, "n_features": 0,
        "drifted_features": [], "prediction_drift": False, "prediction_drift_score": None,
        **live,
        "backtest_accuracy": finite_or_none(run.data.metrics.get("holdout_accuracy")),
        "baseline_accuracy": finite_or_none(run.data.metrics.get("holdout_baseline_majority_accuracy")),
        # The holdout MAE of what live_mae measures: the output, or a multi-output model's first target.
        "backtest_mae": finite_or_none(run.data.metrics.get(
            f"holdout_mae_{spec.targets[0]}" if spec.targets else "holdout_mae")) if spec.task == "regressor" else None,
        "model_age_hours": _model_age_hours(registry, name, as_of),
        "retrain": False, "triggers": [], "reasons": [], "report_uri": "", "error": None,
    }
    valid = frame[(frame["error"].astype(str) == "") & (~frame["fallback"].astype(bool))]
    snapshot = None
    if len(valid) >= config.min_predictions:
        reference, names = _reference(settings, registry, spec, name, version, run, config)
        widths = valid["features"].map(len).to_numpy()
        valid = valid[widths == len(names)]
        if len(valid) >= config.min_predictions:
            current = pd.DataFrame(np.vstack(valid["features"].to_numpy()), columns=names)
            current[OUTPUT_COLUMN] = valid["output"].to_numpy(dtype=float)
            drift = drift_report(reference, current, names, config)
            snapshot = drift.snapshot
            result.update(drift_share=drift.drift_share, n_drifted=drift.n_drifted, n_features=drift.n_features,
                          drifted=drift.drift_share > config.drift_share_threshold,
                          drifted_features=drift.drifted_features, prediction_drift=drift.prediction_drift,
                          prediction_drift_score=finite_or_none(drift.prediction_drift_score))
    if snapshot is None:
        result["status"] = "insufficient_data"
    triggers, reasons = decide_retrain(
        drift_share=result["drift_share"], n_features=result["n_features"], n_outcomes=result["n_outcomes"],
        live_accuracy=result["live_accuracy"], backtest_accuracy=result["backtest_accuracy"],
        baseline_accuracy=result["baseline_accuracy"], model_age_hours=result["model_age_hours"],
        scheduled=scheduled, manual=manual, config=config)
    result.update(retrain=bool(triggers), triggers=triggers, reasons=reasons)
    # Before the MLflow run is logged, so that its tags and JSON say what the result says.
    result = apply_cooldown(result, last_request, config)
    if snapshot is not None:
        # Each HTML report is ~9 MB (144 features): a quiet check writes one only when none
        # was written in the last report_interval_hours; its metrics are logged either way.
        notable = result["drifted"] or result["prediction_drift"] or bool(result["triggers"])
        with_html = snapshot if notable or report_due else None
        result["report_uri"] = _log_monitoring_run(settings, registry, result, with_html)
    return result


def monitor_models(settings: Settings, *, as_of: pd.Timestamp, window: pd.Timedelta | int = DEFAULT_WINDOW,
                   manual: Sequence[str] = (), scheduled: bool = False, config: MonitorConfig | None = None,
                   alert_hook: Any = None) -> list[dict[str, Any]]:
    """Check every champion of the tenant over the prediction-log ``window`` ending at ``as_of``
    (a duration, or a number of most recent rows); one JSON-safe dict per champion, also
    written to ``monitor_history``. ``manual`` names models to retrain regardless
    (``spec.symbol`` or the full name); ``scheduled`` enables the model-age trigger. With an
    ``alert_hook`` (:mod:`pipelines.live.alerts`), the alerts of each result are sent through it.
    """
    from registry import CHAMPION, Registry
    from warehouse import open_warehouse

    config = config or MonitorConfig()
    as_of = as_timestamp(as_of)
    registry = Registry.from_settings(settings)
    champions = {}
    for name in registry.model_names():
        version = registry.alias_version(name, CHAMPION)
        if version is not None:
            champions[name] = version
    wanted = {registry.qualify(m) for m in manual}
    unknown = sorted(wanted - set(champions))
    if unknown:
        raise ValueError(f"cannot request retraining of {', '.join(unknown)}: no champion of that name "
                         f"(champions: {', '.join(sorted(champions)) or 'none'})")
    last_requests: dict[str, pd.Timestamp] = {}
    last_reports: dict[str, pd.Timestamp] = {}
    with open_warehouse(settings) as warehouse:
        if config.retrain_cooldown_hours > 0:
            last_requests = warehouse.last_monitor_checks(
                tenant=settings.scope, since=as_of - pd.Timedelta(hours=config.retrain_cooldown_hours),
                before=as_of, that="requested_retrain")
        if config.report_interval_hours > 0:
            last_reports = warehouse.last_monitor_checks(
                tenant=settings.scope, since=as_of - pd.Timedelta(hours=config.report_interval_hours),
                before=as_of, that="wrote_report")
    results = []
    for name, version in sorted(champions.items()):
        try:
            result = _monitor_one(settings, registry, name, version, as_of, window, manual=name in wanted,
                                  scheduled=scheduled, config=config, last_request=last_requests.get(name),
                                  report_due=name not in last_reports)
        except Exception as exc:  # one broken model must not hide the others
            log.exception("monitoring %s v%s failed", name, version)
            triggers, reasons = (["manual"], ["manual: retraining requested"]) if name in wanted else ([], [])
            result = {"model": name, "version": version, "checked_at": as_of.isoformat(), "status": "error",
                      "error": f"{type(exc).__name__}: {exc}", "drift_share": 0.0, "drifted": False,
                      "retrain": bool(triggers), "triggers": triggers, "reasons": reasons, "report_uri": "",
                      "n_predictions": 0, "error_rate": 0.0, "fallback_rate": 0.0}
        results.append(json_safe(result))
        log.info("%s v%s: %s, drift %.0f%% (%s/%s features), prediction drift %s, live accuracy %s over %s outcomes, "
                 "retrain=%s %s; report %s", name, version, result.get("status"),
                 100 * (result.get("drift_share") or 0),
                 result.get("n_drifted"), result.get("n_features"), result.get("prediction_drift"),
                 result.get("live_accuracy"), result.get("n_outcomes"), result.get("retrain"), result.get("reasons"),
                 result.get("report_uri") or "none")
    with open_warehouse(settings) as warehouse:
        warehouse.write_monitor_history(results, tenant=settings.scope)
    if alert_hook is not None:
        from pipelines.live.alerts import alerts_for

        for result in results:
            for alert in alerts_for(result, max_latency_p99_us=config.max_latency_p99_us,
                                    max_error_rate=config.max_error_rate):
                alert_hook.send(alert)
    return results


