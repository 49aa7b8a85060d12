"""The validate step: score a registered version on its purged holdout and gate it.

Everything here is out of sample: the holdout is the last part of the window, after a purge
gap of the label horizon, and tuning never saw it. The version's own ONNX bundle is what is
scored, so the numbers describe what serving will run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.timeframes import timeframe_hours
from models.catalog import spec_by_name
from models.cv import InsufficientDataError, take_rows
from models.naive import NaiveContext, naive_predictions
from models.parallel import ordered_map
from models.search import fit_and_score
from models.specs import ModelSpec
from pipelines.config import Settings
from pipelines.evaluation.datasets import Dataset
from pipelines.evaluation.metrics import (
    NullTest,
    block_permutation,
    classification_metrics,
    classifier_position,
    hold_for_horizon,
    holdout_permutation_test,
    periods_per_year,
    regression_metrics,
    sharpe_statistics,
    strategy_pnl,
    trading_metrics,
)
from pipelines.evaluation.scoring import bundle_scores, dataset_for_version
from pipelines.evaluation.walkforward import is_direction_like
from pipelines.steps.model_card import log_holdout_plots, model_card
from pipelines.tracking import use_experiment
from pipelines.values import finite_or_none, json_safe
from registry import Registry
from warehouse import open_warehouse

log = logging.getLogger(__name__)


def naive_context(settings: Settings, data: Dataset, *, symbol: str, timeframe: str, as_of: pd.Timestamp,
                  horizon: int, spec: ModelSpec | None = None) -> NaiveContext:
    """The bars and rows that the spec's naive rules see (bars up to ``as_of`` only)."""
    with open_warehouse(settings) as warehouse:
        bars = warehouse.read_bars(tenant=settings.scope, symbol=symbol, timeframe=timeframe, end=as_of)
    X = data.X[:, -1, :] if data.X.ndim == 3 else data.X  # sequence rows: the window's last bar
    return NaiveContext(bars=bars, index=data.index, y=data.y, X=X, feature_names=data.feature_names,
                        train_idx=data.train_idx, holdout_idx=data.holdout_idx, horizon=horizon,
                        windows=data.X if data.X.ndim == 3 else None,
                        target_horizons=target_horizons(spec) if spec is not None else (),
                        bar_hours=timeframe_hours(timeframe) if spec is not None and spec.targets else 0.0)


def target_horizons(spec: ModelSpec) -> tuple[int, ...]:
    """Horizon in bars of each target of a multi-output spec (its declared outputs), else ``()``."""
    by_name = {o["name"]: o for o in spec.schema_extras.get("outputs", [])}
    return tuple(int(by_name[t]["horizon_bars"]) for t in spec.targets) if spec.targets else ()


def naive_rule_metrics(spec: ModelSpec, ctx: NaiveContext) -> dict[str, float]:
    """The primary metric of each naive rule of the spec's family, on the model's holdout rows."""
    from models.metrics import primary_score

    y = ctx.y[ctx.holdout_idx]
    return {f"naive_{name}_{spec.metric}": primary_score(spec, y, prediction)
            for name, prediction in naive_predictions(spec.family, ctx).items()}


def walk_forward_metrics(settings: Settings, spec: ModelSpec, data: Dataset, params: dict[str, Any]) -> Any:
    """The version's parameters refit and scored on ``walk_forward_folds`` later blocks of the holdout
    (None, logged, where the holdout is too short to cut)."""
    from pipelines.evaluation.walkforward import walk_forward

    try:
        return walk_forward(spec, params, data, n_folds=settings.walk_forward_folds,
                            cost_per_turnover=(settings.commission_bps + settings.spread_bps) / 1e4,
                            bars_per_year=periods_per_year(data.index[data.holdout_idx]), n_jobs=settings.n_jobs)
    except InsufficientDataError as exc:
        log.warning("%s: no walk-forward folds: %s", spec.name, exc)
        return None


def selection_overfitting(settings: Settings, spec: ModelSpec, data: Dataset, run_tags: dict[str, str],
                          folds: Any) -> dict[str, float]:
    """PBO by CSCV over the version's Optuna trials and their luck twins (``pipelines.evaluation.walkforward``)."""
    from pipelines.evaluation.pbo import pbo_for_version, trial_params_of

    try:
        return pbo_for_version(spec, trial_params_of(run_tags), data,
                               cost_per_turnover=(settings.commission_bps + settings.spread_bps) / 1e4,
                               n_folds=settings.walk_forward_folds, n_jobs=settings.n_jobs, reuse=folds).as_metrics()
    except InsufficientDataError as exc:
        log.warning("%s: no PBO: %s", spec.name, exc)
        return {}


def one_row_latency_us(bundle: Path, X: np.ndarray, n: int = 300) -> float:
    """p50 of one-row ``serving.Predictor.predict`` calls on holdout rows."""
    import serving

    predictor = serving.Predictor.load(bundle)
    rows = X[np.arange(n) % len(X)]
    timings = np.empty(n)
    for i, row in enumerate(rows):
        start = time.perf_counter_ns()
        predictor.predict(row)
        timings[i] = (time.perf_counter_ns() - start) / 1e3
    return float(np.median(timings))


def null_test(spec: ModelSpec, data: Dataset, params: dict[str, Any], real: float, n: int, seed: int,
              n_jobs: int = 1, stop_after: int | None = None) -> NullTest:
    """Scores of the spec retrained on block-permuted training labels, on the same holdout.

    At most ``n`` retrains (``spec.max_null_retrains`` caps costly families) and, with
    ``stop_after``, only until that many retrains score at least as well as the real model
    (a sequential test: see :class:`NullTest`; the pass/fail decision is unchanged).
    """
    rng = np.random.default_rng(seed)
    block = null_block(spec)
    hold_y = data.y[data.holdout_idx]
    n = min(n, spec.max_null_retrains or n)
    X_train, y_train = take_rows(data.X, data.train_idx), data.y[data.train_idx]
    X_hold = take_rows(data.X, data.holdout_idx)
    train_returns = data.next_return[data.train_idx]
    # Draw every permutation first: the null scores then do not depend on n_jobs.
    permuted = [block_permutation(y_train, block, rng) for _ in range(n)]

    def null_score(y_permuted: np.ndarray) -> float:
        return fit_and_score(spec, params, data.feature_names, X_train, y_permuted, X_hold, hold_y, train_returns)

    result = NullTest(real=real, null_scores=[], greater_is_better=spec.greater_is_better, stop_after=stop_after)
    with closing(ordered_map(null_score, permuted, spec.fit_threads(n_jobs, X_train.nbytes))) as scores:
        for score in scores:  # in permutation order, whatever n_jobs
            result.null_scores.append(score)
            if result.stopped_early:
                break
    return result


def null_block(spec: ModelSpec) -> int:
    """Block length of the label permutations: long enough to keep the label's autocorrelation."""
    return max(20, 5 * spec.horizon)


def screen_test(settings: Settings, spec: ModelSpec, data: Dataset, holdout_output: np.ndarray) -> dict[str, float]:
    """The fixed model's holdout output against block-permuted holdout labels.

    Up to ``null_screen_permutations`` draws (sequential), so its p-value resolves to 1e-4.
    It is the version's hypothesis p-value in the run's ledger (``pipelines.steps.discoveries``),
    and the first half of the null-test gate.
    """
    screen = holdout_permutation_test(spec, data.y[data.holdout_idx], holdout_output,
                                      n=settings.null_screen_permutations, block=null_block(spec),
                                      rng=np.random.default_rng(settings.seed + 1), stop_after=settings.null_stop_after)
    return {"null_screen_p_value": screen.p_value, "null_screen_n": float(len(screen.null_scores))}


def null_tests(settings: Settings, spec: ModelSpec, data: Dataset, params: dict[str, Any], real: float,
               screen: dict[str, float]) -> dict[str, float]:
    """The null-test gate's p-value: the larger of the screen's and the retrain test's (both nulls must fall).

    The retrain test: the spec retrained on block-permuted training labels, up to
    ``null_permutations`` times (sequential), run when the screen passes. An unsupervised
    (anomaly) model never sees labels, so the screen is its whole test.
    """
    out = {"null_p_value": screen["null_screen_p_value"], "null_n": 0.0}
    if spec.task == "anomaly" or screen["null_screen_p_value"] >= spec.gates.max_null_p_value:
        return out
    if settings.null_permutations == 0:
        log.warning("%s: the retrain null test is off (ALPHAOPS_NULL_PERMUTATIONS=0); the gate uses the screen's "
                    "p-value alone", spec.name)
        return out
    retrain = null_test(spec, data, params, real, settings.null_permutations, settings.seed,
                        n_jobs=settings.n_jobs, stop_after=settings.null_stop_after).as_metrics()
    out.update(retrain)
    out["null_retrain_p_value"] = retrain["null_p_value"]
    out["null_p_value"] = max(screen["null_screen_p_value"], retrain["null_p_value"])
    return out


def trading_metrics_for(settings: Settings, data: Dataset, position: np.ndarray) -> dict[str, float]:
    hold = data.holdout_idx
    cost = (settings.commission_bps + settings.spread_bps) / 1e4
    bars_per_year = periods_per_year(data.index[hold])
    trade = trading_metrics(position, data.next_return[hold], cost_per_turnover=cost, bars_per_year=bars_per_year)
    hold_and_buy = trading_metrics(np.ones(len(hold)), data.next_return[hold], cost_per_turnover=cost,
                                   bars_per_year=bars_per_year)
    return {**{f"trading_{k}": v for k, v in trade.items()},
            **{f"baseline_buy_hold_{k}": v for k, v in hold_and_buy.items()}}


def evaluate_classifier(settings: Settings, spec: ModelSpec, data: Dataset, proba: np.ndarray) -> dict[str, float]:
    """Holdout metrics and baselines; for direction-like classes, trading metrics after costs too."""
    y = data.y[data.holdout_idx]
    metrics = classification_metrics(y, proba, threshold=float(spec.schema_extras.get("thresholds", {})
                                                                .get("decision", 0.5)))
    majority = np.bincount(data.y[data.train_idx].astype(int), minlength=proba.shape[1]).argmax()
    metrics["baseline_majority_accuracy"] = float(np.mean(y == majority))
    metrics["baseline_coin_flip_auc"] = 0.5
    metrics["baseline_majority_auc"] = 0.5  # a constant score ranks nothing
    if spec.class_names and spec.class_names[0] == "down" and spec.class_names[-1] == "up":
        # An h-bar forecast is traded as h overlapping positions, each held h bars.
        position = hold_for_horizon(classifier_position(proba), spec.horizon)
        metrics.update(trading_metrics_for(settings, data, position))
        pnl = strategy_pnl(position, data.next_return[data.holdout_idx],
                           (settings.commission_bps + settings.spread_bps) / 1e4)
        metrics.update({f"trading_{k}": v for k, v in sharpe_statistics(pnl).items()})
    return metrics


def evaluate_regressor(spec: ModelSpec, data: Dataset, prediction: np.ndarray,
                       settings: Settings | None = None) -> dict[str, float]:
    """RMSE, MAE, R² (QLIKE for volatility) and the spec's baselines, fitted on the training window only.

    Multi-output specs (``spec.targets``) also get each target's RMSE, MAE and R², and R² of the
    training-window mean; the primary metric is the mean over targets. A spec with a
    ``traded_output`` has that forecast's sign traded after costs (held for its horizon), with
    the trading metrics and gates of the direction family.
    """
    from models.builders import train_mean_baseline
    from models.metrics import regressor_score
    from sklearn.metrics import r2_score

    train, hold = data.train_idx, data.holdout_idx
    y = data.y[hold].astype(float)
    metrics = regression_metrics(y, prediction)
    if spec.metric in ("qlike", "rmsle"):
        metrics[spec.metric] = regressor_score(spec.metric, y, prediction)
    baselines = spec.baselines(data.y[train].astype(float), y, data.next_return[train], data.next_return[hold]) \
        if spec.baselines else train_mean_baseline(data.y[train].astype(float), y)
    for name, forecast in baselines.items():
        metrics[f"baseline_{name}_{spec.metric}"] = regressor_score(spec.metric, y, np.asarray(forecast))
    if spec.targets:
        mean_forecast = train_mean_baseline(data.y[train].astype(float), y)["train_mean"]
        metrics["baseline_train_mean_r2"] = float(r2_score(y, mean_forecast))
        for k, target in enumerate(spec.targets):
            for name, value in regression_metrics(y[:, k], prediction[:, k]).items():
                if name != "n_test":
                    metrics[f"{name}_{target}"] = value
            metrics[f"baseline_train_mean_r2_{target}"] = float(r2_score(y[:, k], mean_forecast[:, k]))
    traded = spec.schema_extras.get("traded_output")
    if traded and settings is not None:
        k = list(spec.targets).index(traded)
        horizon = next(int(o["horizon_bars"]) for o in spec.schema_extras["outputs"] if o["name"] == traded)
        position = hold_for_horizon(np.sign(prediction[:, k]), horizon)
        metrics.update(trading_metrics_for(settings, data, position))
        pnl = strategy_pnl(position, data.next_return[hold], (settings.commission_bps + settings.spread_bps) / 1e4)
        metrics.update({f"trading_{name}": v for name, v in sharpe_statistics(pnl).items()})
    return metrics


def evaluate_anomaly(spec: ModelSpec, data: Dataset, score: np.ndarray) -> dict[str, float]:
    """Event AUC of the anomaly score against recorded events; precision and recall at the threshold."""
    from models.metrics import event_auc

    y = data.y[data.holdout_idx].astype(int)
    threshold = float(spec.schema_extras.get("anomaly_threshold", 0.99))
    flagged = score > threshold
    n_events = int(y.sum())
    if n_events == 0:  # event_auc is NaN then: the model cannot beat its baseline, so it is rejected
        log.warning("%s: no recorded market events in the holdout; the anomaly model cannot be validated "
                    "on this symbol (record events, or use a synthetic symbol)", spec.name)
    return {"n_test": float(len(y)), "n_event_bars": float(n_events), "event_auc": event_auc(y, score),
            "precision": float(y[flagged].mean()) if flagged.any() else 0.0,
            "recall": float(flagged[y == 1].mean()), "flagged_share": float(flagged.mean()),
            "baseline_coin_flip_event_auc": 0.5}


def holdout_check_metrics(settings: Settings, spec: ModelSpec, data: Dataset, bundle: Path, X_hold: np.ndarray,
                          *, symbol: str) -> dict[str, float]:
    """``spec.holdout_checks`` on every output of the bundle and the symbol's recorded market events."""
    from pipelines.evaluation.scoring import onnx_outputs

    with open_warehouse(settings) as warehouse:
        events = warehouse.read_market_events(tenant=settings.scope, symbol=symbol)
    outputs = onnx_outputs((bundle / "model.onnx").read_bytes(), X_hold)
    return spec.holdout_checks(spec, data.index[data.holdout_idx], outputs, events)


def gate_results(spec: ModelSpec, metrics: dict[str, float]) -> dict[str, bool]:
    """Every gate's pass/fail; the null-test gate only once ``metrics`` holds its p-value."""
    gates = spec.gates
    primary = metrics[spec.metric]
    baselines = [v for k, v in metrics.items() if k.startswith("baseline_") and k.endswith(f"_{spec.metric}")]
    naive = [v for k, v in metrics.items() if k.startswith("naive_") and k.endswith(f"_{spec.metric}")]
    beats = all(primary > b for b in baselines) if spec.greater_is_better else all(primary < b for b in baselines)
    beats_naive = all(primary > b for b in naive) if spec.greater_is_better else all(primary < b for b in naive)
    return {
        "gate_beats_baselines": beats or not gates.must_beat_baselines,
        # The simple rule of the family's field (models.naive), fitted on the training rows.
        **({"gate_beats_naive_rule": beats_naive or not gates.must_beat_naive_rules} if naive else {}),
        # A direction signal traded after costs must do better than holding the market (on
        # the same holdout, same costs); specs without trading metrics skip this gate.
        **({"gate_beats_buy_hold": metrics["trading_sharpe"] > metrics["baseline_buy_hold_sharpe"]
            or not gates.must_beat_buy_hold} if "trading_sharpe" in metrics else {}),
        **({"gate_pbo": metrics["pbo"] <= gates.max_pbo} if "pbo" in metrics else {}),
        **({"gate_null_test": metrics["null_p_value"] < gates.max_null_p_value} if "null_p_value" in metrics else {}),
        # Recorded switches (synthetic universes): the share flagged within the detection window.
        **({"gate_switch_detection": metrics["switch_detection_rate"] >= gates.min_switch_detection_rate}
           if "switch_detection_rate" in metrics else {}),
        "gate_max_drawdown": metrics.get("trading_max_drawdown", 0.0) <= gates.max_drawdown,
        "gate_onnx_parity": metrics["onnx_max_abs_diff"] <= gates.max_onnx_abs_diff,
        "gate_latency": metrics["latency_p50_us"] <= gates.max_latency_p50_us,
    }


def failed_gates(gates: dict[str, bool]) -> list[str]:
    """Names (without ``gate_``) of the gates that failed."""
    return [g.removeprefix("gate_") for g, ok in gates.items() if not ok]


def validate_version(settings: Settings, *, model_name: str, version: str, as_of: pd.Timestamp,
                     holdout_fraction: float | None = None) -> dict[str, Any]:
    """Score, null-test and gate one version; tag it ``validated`` or ``rejected``."""
    import mlflow

    holdout_fraction = holdout_fraction or settings.holdout_fraction
    registry = Registry.from_settings(settings)
    version_tags = registry.client.get_model_version(model_name, version).tags
    version_spec = spec_by_name(version_tags["spec"], version_tags.get("timeframe"))
    if version_spec.episode_costs is not None:  # scored on replayed episodes, not on rows
        from pipelines.steps.episodes import validate_episodes

        return validate_episodes(settings, version_spec, model_name=model_name, version=version, as_of=as_of,
                                 holdout_fraction=holdout_fraction)
    spec, data, bundle = dataset_for_version(settings, registry, model_name, version, as_of, holdout_fraction)
    mv = registry.client.get_model_version(model_name, version)
    run = registry.client.get_run(mv.run_id)
    params = json.loads(run.data.tags["best_params"])
    if run.data.tags.get("data_fingerprint") != data.fingerprint:
        raise RuntimeError(f"{model_name} v{version}: the warehouse slice changed since training "
                           f"(fingerprint {data.fingerprint} != {run.data.tags.get('data_fingerprint')})")
    X_hold = take_rows(data.X, data.holdout_idx)
    output = bundle_scores(spec, bundle, X_hold)
    if spec.task == "classifier":
        metrics = evaluate_classifier(settings, spec, data, output)
    elif spec.task == "anomaly":
        metrics = evaluate_anomaly(spec, data, output)
    else:
        metrics = evaluate_regressor(spec, data, output, settings)
    if spec.holdout_report is not None:  # reported on the card, not gated
        metrics.update(spec.holdout_report(data.y[data.holdout_idx], output))
    metrics.update(naive_rule_metrics(spec, naive_context(settings, data, symbol=mv.tags["symbol"],
                                                          timeframe=mv.tags["timeframe"], as_of=as_of,
                                                          horizon=spec.horizon, spec=spec)))
    if spec.holdout_checks is not None:  # e.g. recorded regime switches flagged by the bundle
        metrics.update(holdout_check_metrics(settings, spec, data, bundle, X_hold, symbol=mv.tags["symbol"]))
    metrics["onnx_max_abs_diff"] = float(run.data.metrics["onnx_max_abs_diff"])
    metrics["latency_p50_us"] = one_row_latency_us(bundle, X_hold)
    metrics["n_trials"] = float(run.data.params.get("trials", 1))
    # The retrain test costs up to a hundred fits: run it only if the version passes every other
    # gate (else it is rejected whatever it says, and the card says so).
    metrics.update(screen_test(settings, spec, data, output))  # cheap: every version gets one
    folds = walk_forward_metrics(settings, spec, data, params)
    metrics.update(folds.as_metrics() if folds else {})
    if folds and all(gate_results(spec, metrics).values()) and is_direction_like(spec):
        metrics.update(selection_overfitting(settings, spec, data, run.data.tags, folds))
    if all(gate_results(spec, metrics).values()):
        metrics.update(null_tests(settings, spec, data, params, metrics[spec.metric], metrics))
    def log_holdout_artifacts(gates: dict[str, bool]) -> None:
        log_holdout_plots(spec, data, output)
        mlflow.log_text(model_card(model_name, version, spec, data, metrics, gates, run.data.tags), "model_card.md")

    result = record_verdict(settings, registry, spec, mv, metrics, log_holdout_artifacts)
    log.info("%s v%s %s: %s=%.4f null p=%.3f gates failed=%s", model_name, version, result["status"], spec.metric,
             metrics[spec.metric], metrics.get("null_p_value", float("nan")), result["failed_gates"] or "none")
    return result


def record_verdict(settings: Settings, registry: Registry, spec: ModelSpec, mv: Any, metrics: dict[str, float],
                   log_artifacts: Callable[[dict[str, bool]], None]) -> dict[str, Any]:
    """Gate ``metrics``, log them (and the caller's artifacts) to the version's run, tag the version.

    The status tag is written before deploy moves any alias. Returns the step's result, which
    carries what the run-level false-discovery control needs (``RESULT_METRICS``).
    """
    import mlflow

    gates = gate_results(spec, metrics)
    status = "validated" if all(gates.values()) else "rejected"
    failed = failed_gates(gates)
    use_experiment(settings, f"{settings.scope}/{spec.family}")
    with mlflow.start_run(run_id=mv.run_id):
        mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_metrics({k: float(v) for k, v in gates.items()})
        mlflow.set_tag("validation_status", status)
        log_artifacts(gates)
    registry.tag(mv.name, mv.version, validation_status=status,
                 lifecycle="validated" if status == "validated" else "rejected",
                 failed_gates=",".join(failed) or "none",
                 holdout_score=f"{metrics[spec.metric]:.6f}", primary_metric=spec.metric)
    return {"model_name": mv.name, "version": mv.version, "status": status, "family": spec.family,
            "symbol": mv.tags["symbol"], "spec": spec.name, "metric": spec.metric,
            "score": finite_or_none(metrics[spec.metric]), "failed_gates": failed,
            "metrics": json_safe({k: metrics.get(k, float("nan")) for k in RESULT_METRICS + (spec.metric,)})}


# Carried in the step's result for the run-level false-discovery control (pipelines.steps.discoveries).
RESULT_METRICS = ("n_test", "null_p_value", "null_screen_p_value", "null_screen_n", "null_n", "n_trials", "trading_sr_per_bar",
                  "trading_pnl_skew", "trading_pnl_kurtosis", "trading_pnl_n", "trading_sharpe")
