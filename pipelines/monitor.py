"""The monitor step: is each champion still the model it was validated as?

For every ``champion`` of the tenant, over a window of its prediction log (``ml_predictions``,
written by :mod:`pipelines.prediction_sink`):

- **Data drift** (Evidently: the per-feature ``ValueDrift`` tests that ``DataDriftPreset``
  generates, plus ``DriftedColumnsCount``; the preset itself with ``drift_preset``): the logged
  feature rows against the model's training reference (a seeded sample of at most
  ``reference_rows`` rows of the version's own training window, in the bundle's feature
  order). ``drift_share`` is the share of features whose Evidently test failed.
- **Prediction drift** (Evidently ``ValueDrift``): the logged primary output against the
  bundle's predictions on the same reference rows.
- **Live quality**: :func:`fill_outcomes` writes each prediction's outcome (the spec's own
  label, e.g. ``close[t+h] > close[t]``) once the later bars are in the warehouse; live
  accuracy is computed over the rows whose outcome is known.
- **Serving health**: latency p50/p95/p99, error rate and fallback rate of the logged calls.

Retraining is requested when any trigger fires (:func:`decide_retrain`): the drifted share
exceeds ``drift_share_threshold``; live accuracy falls below ``baseline_factor`` × the
holdout majority-class baseline, or more than ``backtest_margin`` below the holdout accuracy;
a scheduled check finds the newest version older than ``max_model_age_hours``; or a manual
request names the model. Within ``retrain_cooldown_hours`` of a check that requested retraining
of a model, automatic triggers are recorded but request nothing new (:func:`apply_cooldown`);
manual requests always go through. Results go to ``monitor_history``; each check is a run in the
MLflow experiment ``<tenant>/monitoring``, with the Evidently HTML report as an artifact when the
check saw drift or a trigger, or when the model had no report in ``report_interval_hours``.
The ``monitor_drift`` DAG turns the requests into one Airflow Asset event on
``alphaops://retrain-request`` (:func:`request_retrain`, :func:`retrain_event_extra`);
``train_models`` retrains, and its deploy step replaces the champion only if the new version
beats it on the shared holdout.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import Settings

log = logging.getLogger(__name__)

RETRAIN_REQUEST_URI = "alphaops://retrain-request"  # the Asset train_models is scheduled on
DEFAULT_WINDOW = pd.Timedelta(hours=24)
OUTPUT_COLUMN = "model_output"


@dataclass(frozen=True)
class MonitorConfig:
    """Thresholds of the monitor (defaults measured on the synthetic market; see docs/monitoring.md)."""

    drift_share_threshold: float = 0.3      # retrain when more than this share of features drifted
    feature_drift_method: str = "wasserstein"  # Evidently stattest per feature (and for the output)
    feature_drift_threshold: float = 0.2    # normed Wasserstein distance that counts as drift
    baseline_factor: float = 0.9            # live accuracy < factor x holdout majority baseline
    backtest_margin: float = 0.05           # live accuracy more than this below holdout accuracy
    min_predictions: int = 200              # fewer valid rows: no drift check
    min_outcomes: int = 100                 # fewer known outcomes: no accuracy trigger
    reference_rows: int = 5000              # training rows sampled as the drift reference
    drift_preset: bool = False              # True: DataDriftPreset (adds its legacy summary table to the
                                            # HTML; same per-feature tests, ~1.8x the CPU and HTML size)
    max_model_age_hours: float = 168.0      # scheduled checks retrain older models
    retrain_cooldown_hours: float = 12.0    # no new automatic request this soon after the last (0: off)
    report_interval_hours: float = 24.0     # HTML report of a quiet check at most this often per model
                                            # (always on drift or a retrain trigger; 0: every check)
    max_latency_p99_us: float = 5000.0      # alert above (pipelines.alerts)
    max_error_rate: float = 0.01            # alert above (pipelines.alerts)
    seed: int = 42


# -- small pure helpers --------------------------------------------------------------------

def _num(value: Any) -> float | None:
    """JSON-safe float: None for missing or non-finite."""
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def predicted_up(frame: pd.DataFrame) -> np.ndarray:
    """For binary classifiers: did the call predict the positive (last) class?

    ``output`` is P(last class) and ``confidence`` the probability of the predicted class, so
    the call said "up" exactly when they are equal (this also holds with a decision threshold).
    Without a confidence, ``output >= 0.5``.
    """
    output = frame["output"].to_numpy(dtype=float)
    confidence = frame["confidence"].to_numpy(dtype=float)
    same = np.isclose(output, confidence, rtol=0.0, atol=1e-9)
    return np.where(np.isfinite(confidence), same, output >= 0.5)


def live_metrics(frame: pd.DataFrame, *, binary: bool = True) -> dict[str, Any]:
    """Serving health and live quality of a prediction-log frame (e.g. one canary arm).

    ``live_accuracy`` (binary classifiers only) is over rows with a known outcome that were
    answered by the model (no error, no fallback); ``hit_rate`` is the same share, the name the
    canary decision uses.
    """
    n = len(frame)
    out: dict[str, Any] = {"n_predictions": n, "n_outcomes": 0, "live_accuracy": None, "hit_rate": None,
                           "latency_p50_us": None, "latency_p95_us": None, "latency_p99_us": None,
                           "error_rate": 0.0, "fallback_rate": 0.0}
    if n == 0:
        return out
    latency = frame["latency_us"].to_numpy(dtype=float)
    latency = latency[np.isfinite(latency)]
    if len(latency):
        p50, p95, p99 = np.percentile(latency, [50, 95, 99])
        out.update(latency_p50_us=float(p50), latency_p95_us=float(p95), latency_p99_us=float(p99))
    errors = frame["error"].astype(str).str.len().to_numpy() > 0
    fallback = frame["fallback"].astype(bool).to_numpy()
    out["error_rate"] = float(errors.mean())
    out["fallback_rate"] = float(fallback.mean())
    known = frame[(~errors) & (~fallback) & frame["outcome"].notna().to_numpy()
                  & np.isfinite(frame["output"].to_numpy(dtype=float))]
    out["n_outcomes"] = int(len(known))
    if binary and len(known):
        correct = predicted_up(known) == (known["outcome"].to_numpy(dtype=float) == 1.0)
        out["live_accuracy"] = out["hit_rate"] = float(correct.mean())
    return out


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


# -- drift ---------------------------------------------------------------------------------

@dataclass
class DriftResult:
    drift_share: float
    n_drifted: int
    n_features: int
    drifted_features: list[str]
    prediction_drift: bool
    prediction_drift_score: float | None
    snapshot: Any  # the Evidently snapshot (HTML report)


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, features: Sequence[str],
                 config: MonitorConfig) -> DriftResult:
    """Evidently data drift of ``features`` and drift of ``OUTPUT_COLUMN``, current vs reference.

    A feature counts as drifted when its Evidently drift test fails (``feature_drift_method``
    at ``feature_drift_threshold``).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift
    from evidently.presets import DataDriftPreset

    features = list(features)
    columns = features + [OUTPUT_COLUMN]
    definition = DataDefinition(numerical_columns=columns)
    method, threshold = config.feature_drift_method, config.feature_drift_threshold
    if config.drift_preset:
        metrics: list[Any] = [DataDriftPreset(columns=features, drift_share=config.drift_share_threshold,
                                              method=method, threshold=threshold)]
    else:  # the metrics DataDriftPreset generates, without its legacy summary widgets
        metrics = [DriftedColumnsCount(columns=features, drift_share=config.drift_share_threshold, method=method,
                                       threshold=threshold)]
        metrics += [ValueDrift(column=f, method=method, threshold=threshold) for f in features]
    metrics.append(ValueDrift(column=OUTPUT_COLUMN, method=method, threshold=threshold))
    report = Report(metrics, include_tests=True)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        snapshot = report.run(Dataset.from_pandas(current[columns].astype(float), data_definition=definition),
                              Dataset.from_pandas(reference[columns].astype(float), data_definition=definition))
    payload = snapshot.dict()
    scores: dict[str, float] = {}
    for metric in payload["metrics"]:
        config_ = metric.get("config", {})
        if str(config_.get("type", "")).endswith("ValueDrift"):
            scores[config_["column"]] = _num(metric.get("value"))  # type: ignore[assignment]
    failed: dict[str, bool] = {}
    for test in payload.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if str(params.get("type", "")).endswith("ValueDrift"):
            status = getattr(test.get("status"), "value", test.get("status"))
            failed[params["column"]] = str(status) == "FAIL"
    drifted = [f for f in features if failed.get(f, False)]
    return DriftResult(drift_share=len(drifted) / len(features) if features else 0.0, n_drifted=len(drifted),
                       n_features=len(features), drifted_features=drifted,
                       prediction_drift=failed.get(OUTPUT_COLUMN, False),
                       prediction_drift_score=scores.get(OUTPUT_COLUMN), snapshot=snapshot)


def primary_outputs(bundle: Path, X: np.ndarray) -> np.ndarray:
    """The bundle's primary output per row, as the prediction sink stores it (``output``)."""
    import serving

    from pipelines.prediction_sink import prediction_rows

    result = serving.Predictor.load(bundle).predict(np.ascontiguousarray(X, dtype=np.float32))
    rows = prediction_rows([{"model": "reference", "features": None, "output": result.to_dict()}], tenant="")
    return rows["output"].to_numpy(dtype=float)


# -- outcomes ------------------------------------------------------------------------------

def _model_tags(registry: Any, name: str) -> dict[str, str] | None:
    from mlflow.exceptions import MlflowException

    try:
        return dict(registry.client.get_registered_model(name).tags)
    except MlflowException:
        return None


def fill_outcomes(settings: Settings, as_of: pd.Timestamp, *,
                  lookback: pd.Timedelta = pd.Timedelta(days=30)) -> int:
    """Write the outcome of every logged prediction (of the last ``lookback``) whose label is
    known from bars up to ``as_of``; returns the rows filled.

    The outcome is the model spec's own label at the prediction's bar (the bar with
    ``ts <= prediction ts < ts + timeframe``), e.g. ``1.0`` if ``close[t+h] > close[t]`` for a
    direction model with horizon ``h``. Rows are rewritten with a higher ``version``
    (ReplacingMergeTree upsert), so running it again is a no-op.
    """
    from models.catalog import spec_by_name
    from pipelines.sources import timeframe_delta
    from registry import Registry
    from warehouse import open_warehouse

    as_of = _utc(as_of)
    registry = Registry.from_settings(settings)
    filled = 0
    # The warehouse is held only to read and to write; registry look-ups and labels happen outside it.
    with open_warehouse(settings) as warehouse:
        pending = warehouse.read_predictions(tenant=settings.tenant, start=as_of - lookback, end=as_of,
                                             missing_outcome=True)
    outcomes = []
    for (model, symbol), rows in pending.groupby(["model", "symbol"], sort=True):
        tags = _model_tags(registry, str(model))
        if tags is None or "spec" not in tags or "timeframe" not in tags:
            log.warning("fill_outcomes: %s is not a registered model with spec and timeframe tags; skipped", model)
            continue
        try:
            spec = spec_by_name(tags["spec"])
        except (KeyError, ValueError):
            log.warning("fill_outcomes: %s has unknown spec %r; skipped", model, tags["spec"])
            continue
        step = timeframe_delta(tags["timeframe"])
        with open_warehouse(settings) as warehouse:
            bars = warehouse.read_bars(tenant=settings.tenant, symbol=str(symbol), timeframe=tags["timeframe"],
                                       start=rows["ts"].min() - step, end=as_of)
        if bars.empty:
            continue
        labels = spec.label_for(bars).dropna()  # only labels whose future bars are known by as_of
        if labels.empty:
            continue
        table = labels.rename("label").rename_axis("bar_ts").reset_index()
        table["bar_ts"] = pd.DatetimeIndex(table["bar_ts"]).astype("datetime64[us, UTC]")
        ordered = rows.sort_values("ts").reset_index(drop=True)
        ordered["ts"] = pd.DatetimeIndex(ordered["ts"]).astype("datetime64[us, UTC]")
        matched = pd.merge_asof(ordered, table, left_on="ts", right_on="bar_ts", direction="backward",
                                tolerance=step - pd.Timedelta(microseconds=1))
        done = matched[matched["label"].notna()].copy()
        if done.empty:
            continue
        done["outcome"] = done["label"].astype(float)
        done["version"] = np.uint64(time.time_ns())
        outcomes.append(done.drop(columns=["label", "bar_ts"]))
    if outcomes:
        with open_warehouse(settings) as warehouse:
            for frame in outcomes:
                filled += warehouse.write_predictions(frame)
    log.info("fill_outcomes as of %s: %d outcome(s) written", as_of.isoformat(), filled)
    return filled


# -- the monitor ---------------------------------------------------------------------------

def _window_rows(warehouse: Any, tenant: str, model: str, as_of: pd.Timestamp,
                 window: pd.Timedelta | int) -> pd.DataFrame:
    if isinstance(window, (int, np.integer)) and not isinstance(window, bool):
        return warehouse.read_predictions(tenant=tenant, model=model, end=as_of, limit=int(window))
    start = as_of - pd.Timedelta(window) + pd.Timedelta(microseconds=1)
    return warehouse.read_predictions(tenant=tenant, model=model, start=start, end=as_of)


def _reference(settings: Settings, registry: Any, name: str, version: str, run: Any,
               config: MonitorConfig) -> tuple[pd.DataFrame, list[str]]:
    """A seeded sample of the version's training rows (bundle feature order) with its outputs."""
    from pipelines.validate import dataset_for_version

    _, data, bundle = dataset_for_version(settings, registry, name, version, _utc(run.data.tags["as_of"]),
                                          float(run.data.params["holdout_fraction"]))
    rng = np.random.default_rng(config.seed)
    rows = np.sort(rng.choice(data.train_idx, size=min(config.reference_rows, len(data.train_idx)), replace=False))
    X = data.X[rows]
    reference = pd.DataFrame(X.astype(np.float64), columns=data.feature_names)
    reference[OUTPUT_COLUMN] = primary_outputs(bundle, X)
    return reference, list(data.feature_names)


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
    experiment_id = use_experiment(settings, f"{settings.tenant}/monitoring")
    run = client.create_run(experiment_id, run_name=f"monitor.{result['spec']}.{result['symbol']}", tags={
        "model": result["model"], "model_version": result["version"], "symbol": result["symbol"],
        "spec": result["spec"], "as_of": result["checked_at"], "retrain": str(result["retrain"]).lower(),
        "triggers": ",".join(result["triggers"]) or "none"})
    run_id = run.info.run_id
    for key in ("drift_share", "n_drifted", "n_features", "prediction_drift_score", "n_predictions", "n_outcomes",
                "live_accuracy", "backtest_accuracy", "baseline_accuracy", "latency_p50_us", "latency_p95_us",
                "latency_p99_us", "error_rate", "fallback_rate"):
        if _num(result.get(key)) is not None:
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
    spec = spec_by_name(mv.tags["spec"])
    binary = spec.task == "classifier" and len(spec.class_names) == 2
    with open_warehouse(settings) as warehouse:
        frame = _window_rows(warehouse, settings.tenant, name, as_of, window)
    frame = frame[frame["model_version"] == str(version)]
    live = live_metrics(frame, binary=binary)
    result: dict[str, Any] = {
        "model": name, "version": str(version), "symbol": mv.tags.get("symbol"), "spec": spec.name,
        "family": spec.family, "timeframe": mv.tags.get("timeframe"), "checked_at": as_of.isoformat(),
        "status": "ok", "drift_share": 0.0, "drifted": False, "n_drifted": 0, "n_features": 0,
        "drifted_features": [], "prediction_drift": False, "prediction_drift_score": None,
        **live,
        "backtest_accuracy": _num(run.data.metrics.get("holdout_accuracy")),
        "baseline_accuracy": _num(run.data.metrics.get("holdout_baseline_majority_accuracy")),
        "model_age_hours": _model_age_hours(registry, name, as_of),
        "retrain": False, "triggers": [], "reasons": [], "report_uri": "", "error": None,
    }
    valid = frame[(frame["error"].astype(str) == "") & (~frame["fallback"].astype(bool))]
    snapshot = None
    if len(valid) >= config.min_predictions:
        reference, names = _reference(settings, registry, name, version, run, config)
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
                          prediction_drift_score=_num(drift.prediction_drift_score))
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
    ``alert_hook`` (:mod:`pipelines.alerts`), the alerts of each result are sent through it.
    """
    from registry import CHAMPION, Registry
    from warehouse import open_warehouse

    config = config or MonitorConfig()
    as_of = _utc(as_of)
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
                tenant=settings.tenant, since=as_of - pd.Timedelta(hours=config.retrain_cooldown_hours),
                before=as_of, that="requested_retrain")
        if config.report_interval_hours > 0:
            last_reports = warehouse.last_monitor_checks(
                tenant=settings.tenant, since=as_of - pd.Timedelta(hours=config.report_interval_hours),
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
        warehouse.write_monitor_history(results, tenant=settings.tenant)
    if alert_hook is not None:
        from pipelines.alerts import alerts_for

        for result in results:
            for alert in alerts_for(result, max_latency_p99_us=config.max_latency_p99_us,
                                    max_error_rate=config.max_error_rate):
                alert_hook.send(alert)
    return results


def json_safe(value: Any) -> Any:
    """Plain JSON types: numpy scalars unwrapped, non-finite floats as None."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _num(value)
    return value


# -- retraining requests -------------------------------------------------------------------

def request_retrain(results: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The retraining requests in monitor results: one per model with ``retrain`` set."""
    return [{"model": r["model"], "version": r.get("version"), "symbol": r.get("symbol"), "spec": r.get("spec"),
             "family": r.get("family"), "timeframe": r.get("timeframe"), "triggers": list(r.get("triggers") or []),
             "reasons": list(r.get("reasons") or [])}
            for r in results if r.get("retrain")]


def retrain_event_extra(requests: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``extra`` of the retrain-request Asset event: the models with their reasons, plus the
    ``symbols``, ``families`` (spec names: ``specs_for`` accepts them) and a one-line ``reason``
    that ``train_models`` uses as its run parameters (see :func:`retrain_params`)."""
    return json_safe({
        "models": [dict(r) for r in requests],
        "symbols": sorted({r["symbol"] for r in requests if r.get("symbol")}),
        "families": sorted({r["spec"] for r in requests if r.get("spec")}),
        "reason": "monitor: " + "; ".join(f"{r['model']} ({', '.join(r.get('triggers') or [])})" for r in requests),
    })


def retrain_params(params: Mapping[str, Any], triggering_asset_events: Any) -> dict[str, Any]:
    """``train_models`` params for a run started by retrain-request events: the requested
    symbols and specs, and the reason; ``params`` unchanged for any other run."""
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
    if not extras:
        return dict(params)
    symbols = sorted({s for e in extras for s in e.get("symbols", [])})
    families = sorted({f for e in extras for f in e.get("families", [])})
    reason = "; ".join(str(e.get("reason", "retrain request")) for e in extras)
    return {**params, "symbols": symbols or list(params.get("symbols", [])),
            "families": families or list(params.get("families", [])), "reason": reason}


def send_retrain_request(settings: Settings, results: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Outside Airflow (``alphaops monitor``), emit what the ``monitor_drift`` DAG's
    ``request_retrain`` task emits: one event on the retrain-request Asset, with the same
    ``extra``, in the Airflow metadata DB of these settings. The scheduler running on it starts
    ``train_models`` for the requested models alone (:func:`retrain_params`). None when no
    result asks for retraining; LookupError when no Airflow on this state knows the Asset."""
    from pipelines.airflow_runner import emit_asset_event

    requests = request_retrain(results)
    if not requests:
        return None
    extra = {**retrain_event_extra(requests), "source": "alphaops monitor"}
    return {"requests": requests, "extra": extra, **emit_asset_event(settings, RETRAIN_REQUEST_URI, extra)}


# -- adapters for the monitor_drift DAG (settings from the environment) ---------------------

def fill_outcomes_step(as_of: Any) -> int:
    from pipelines.config import get_settings

    return fill_outcomes(get_settings(), _utc(as_of))


def monitor_step(params: Mapping[str, Any], as_of: Any, *, scheduled: bool) -> list[dict[str, Any]]:
    from pipelines.alerts import hook_for
    from pipelines.config import get_settings

    settings = get_settings()
    return monitor_models(settings, as_of=_utc(as_of), manual=list(params.get("manual") or []),
                          scheduled=scheduled, alert_hook=hook_for(settings.alert_webhook_url))


def config_dict(config: MonitorConfig | None = None) -> dict[str, Any]:
    return asdict(config or MonitorConfig())
