"""The train step: Optuna on purged walk-forward CV, refit, ONNX export, MLflow run, registered version.

The step is idempotent under retries. Its inputs (model, as_of, feature set, trials, holdout,
seed, data fingerprint) make a train key, tagged on the MLflow run and the version. An attempt
first looks for earlier attempts with its key: a version registered by one is returned as is
(a worker killed after registering costs no duplicate); an attempt that died before
registering is marked superseded (its run and open trial runs end FAILED) and training starts
over. An attempt presumed dead that is in fact still running sees the mark before it
registers and gives up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.bundle import spec_schema, write_bundle
from models.catalog import spec_by_name
from models.cv import InsufficientDataError, PurgedWalkForward, take_rows
from models.outputs import build_estimator, fit_estimator, native_output
from models.parallel import ordered_map
from models.search import tune
from models.selection import FeatureSelection, TooFewRowsToSelect, select_features
from models.specs import ModelSpec
from pipelines.config import Settings
from pipelines.evaluation.datasets import Dataset, load_dataset, restrict_features
from pipelines.evaluation.pbo import TRIAL_PARAMS_TAG, trial_params_tag
from pipelines.evaluation.scoring import onnx_outputs, onnx_primary_output
from pipelines.tracking import code_version, use_experiment
from registry import CHAMPION, Registry, model_name
from warehouse import open_warehouse

log = logging.getLogger(__name__)

TRAIN_KEY_TAG = "train_key"
SUPERSEDED_TAG = "superseded"


class AttemptSupersededError(RuntimeError):
    """A later attempt with the same train key took over; this one must not register."""


def train_key(name: str, *, timeframe: str, feature_set_version: str, as_of: pd.Timestamp, trials: int,
              holdout_fraction: float, seed: int, data_fingerprint: str, select_features: bool = False,
              warm_start: str | None = None) -> str:
    """Deterministic key of one train job: every retry of the job computes the same key.

    ``warm_start`` (a user's run: the shared champion it starts from) is part of the key when given."""
    job = {"name": name, "timeframe": timeframe, "feature_set_version": feature_set_version,
           "as_of": as_of.isoformat(), "trials": trials, "holdout_fraction": holdout_fraction,
           "seed": seed, "data_fingerprint": data_fingerprint}
    if select_features:
        job["select_features"] = True
    if warm_start is not None:
        job["warm_start"] = warm_start
    payload = json.dumps(job, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _earlier_attempt(registry: Registry, experiment_id: str, name: str, key: str) -> tuple[str, str] | None:
    """(run id, version) of an earlier attempt that registered ``key``; attempts that died first are marked."""
    client = registry.client
    runs = client.search_runs([experiment_id], filter_string=f"tags.{TRAIN_KEY_TAG} = '{key}'",
                              order_by=["attributes.start_time ASC"])
    for run in runs:
        version = registry.version_of_run(name, run.info.run_id)
        if version is not None:
            if run.info.status == "RUNNING":  # killed after registering: close what it left open
                client.set_tag(run.info.run_id, "registered_version", version)
                _end_open_runs(client, experiment_id, run.info.run_id, "FINISHED")
            return run.info.run_id, version
    for run in runs:
        if SUPERSEDED_TAG not in run.data.tags:
            client.set_tag(run.info.run_id, SUPERSEDED_TAG, "died before registering; a retry took over")
        _end_open_runs(client, experiment_id, run.info.run_id, "FAILED")
    return None


def registered_by_earlier_attempt(registry: Registry, experiment_id: str, name: str, key: str,
                                  result: dict[str, Any]) -> dict[str, Any] | None:
    """``result`` with the version an earlier attempt of ``key`` registered, or None: the retry's resume point."""
    earlier = _earlier_attempt(registry, experiment_id, name, key)
    if earlier is None:
        return None
    log.info("%s: an earlier attempt registered v%s for train key %s; returning it", name, earlier[1], key)
    return {**result, "version": earlier[1], "run_id": earlier[0]}


def _end_open_runs(client: Any, experiment_id: str, run_id: str, status: str) -> None:
    """End ``run_id`` and its still-open nested trial runs."""
    children = client.search_runs([experiment_id], filter_string=(
        f"tags.mlflow.parentRunId = '{run_id}' and attributes.status = 'RUNNING'"))
    for child in children:
        client.set_terminated(child.info.run_id, "FAILED" if status == "FAILED" else "KILLED")
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, status)


def train_spec(settings: Settings, *, spec_name: str, symbol: str, timeframe: str, feature_set_version: str,
               as_of: pd.Timestamp, trials: int | None = None, holdout_fraction: float | None = None,
               trigger: str = "schedule") -> dict[str, Any]:
    """Tune, refit on the whole training window, export and register one spec on one symbol."""
    import mlflow

    import features
    from pipelines.memory import require_memory

    spec = spec_by_name(spec_name, timeframe)
    trials = min(trials or settings.trials, spec.max_trials or 10**9)
    holdout_fraction = holdout_fraction or settings.holdout_fraction
    if spec.episode_costs is not None:  # fitted on replayed episodes, not on rows
        from pipelines.steps.episodes import train_episodes

        return train_episodes(settings, spec, symbol=symbol, timeframe=timeframe,
                              feature_set_version=feature_set_version, as_of=as_of, trials=trials,
                              holdout_fraction=holdout_fraction, trigger=trigger)
    with open_warehouse(settings) as warehouse:
        require_memory(settings, "train", rows=warehouse.count_bars(
            tenant=settings.scope, symbol=symbol, timeframe=timeframe, end=as_of), n_features=len(features.catalog()))
        data = load_dataset(warehouse, spec, tenant=settings.scope, symbol=symbol, timeframe=timeframe,
                            feature_set_version=feature_set_version, as_of=as_of,
                            holdout_fraction=holdout_fraction, max_bytes=settings.max_train_bytes)
    X_train, y_train = take_rows(data.X, data.train_idx), data.y[data.train_idx]
    if spec.task == "classifier":
        missing = sorted(set(range(len(spec.class_names))) - set(np.unique(y_train).astype(int).tolist()))
        if missing:
            raise InsufficientDataError(
                f"{spec.name} on {symbol}: the training window has no rows of class "
                f"{', '.join(spec.class_names[k] for k in missing)}; a model cannot learn a class it never saw")
    cv = PurgedWalkForward(n_splits=settings.cv_folds, purge=spec.horizon)
    name = model_name(settings.scope, spec.name, symbol)
    experiment_id = use_experiment(settings, f"{settings.scope}/{spec.family}")
    registry = Registry.from_settings(settings)
    # A user's model starts from the tenant's shared champion of the same spec and symbol.
    warm_start = shared_champion_start(registry, spec.name, symbol) if settings.user else None
    key = train_key(name, timeframe=timeframe, feature_set_version=feature_set_version, as_of=as_of,
                    trials=trials, holdout_fraction=holdout_fraction, seed=settings.seed,
                    data_fingerprint=data.fingerprint,
                    select_features=spec.select_features and settings.feature_selection and not spec.window,
                    warm_start=(f"{warm_start['model']}@{warm_start['version']}" if warm_start else "none")
                    if settings.user else None)
    result = {"model_name": name, "spec": spec.name, "family": spec.family, "symbol": symbol,
              "timeframe": timeframe, "feature_set_version": feature_set_version}
    earlier = registered_by_earlier_attempt(registry, experiment_id, name, key, result)
    if earlier is not None:
        return earlier
    selection = None
    if spec.select_features and settings.feature_selection and not spec.window:
        try:
            selection = select_features(spec, X_train, y_train, data.feature_names,
                                        next_return=data.next_return[data.train_idx], purge=spec.horizon,
                                        seed=settings.seed)
        except TooFewRowsToSelect as exc:
            log.info("%s: every feature kept: %s", name, exc)
    if selection is not None:
        log.info("%s: kept %d of %d features (noise level %.2e, %d training rows)", name, len(selection.kept),
                 len(data.feature_names), selection.noise_level, selection.rows_used)
        data = restrict_features(data, selection.kept)
        X_train = take_rows(data.X, data.train_idx)

    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{spec.name}.{symbol}") as parent:
        run_id = parent.info.run_id
        mlflow.set_tags({
            TRAIN_KEY_TAG: key,
            "tenant": settings.tenant, **({"user": settings.user} if settings.user else {}),
            "family": spec.family, "spec": spec.name, "symbol": symbol,
            "timeframe": timeframe, "feature_set_version": feature_set_version, "label": spec.label,
            "data_fingerprint": data.fingerprint, "code_version": code_version(),
            "as_of": as_of.isoformat(), "trigger": trigger,
            "train_start": data.index[0].isoformat(), "train_end": data.train_end.isoformat(),
            "holdout_start": data.holdout_start.isoformat(), "holdout_end": data.index[-1].isoformat(),
        })
        if selection is not None:
            mlflow.set_tag("feature_selection", json.dumps(selection.summary(), sort_keys=True))
            _log_selection(selection)
        if settings.user:
            mlflow.set_tags(warm_start_tags(warm_start, model_name(settings.tenant, spec.name, symbol)))
        mlflow.log_params({"trials": trials, "cv_folds": cv.n_splits, "purge_bars": cv.purge,
                           "holdout_fraction": holdout_fraction, "n_train": len(data.train_idx),
                           "n_holdout": len(data.holdout_idx), "n_features": len(data.feature_names)})

        def log_trial(number: int, params: dict[str, Any], value: float, state: str) -> None:
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"trial-{number:03d}", nested=True):
                mlflow.log_params(params)
                mlflow.log_metric(f"cv_{spec.metric}", value)
                mlflow.set_tag("trial_state", state)

        search = tune(spec, X_train, y_train, n_trials=trials, cv=cv, seed=settings.seed, log_trial=log_trial,
                      feature_names=data.feature_names, next_return=data.next_return[data.train_idx],
                      n_jobs=settings.n_jobs, start_params=warm_start["params"] if warm_start else None)
        mlflow.log_params({f"best_{k}": v for k, v in search.best_params.items()})
        mlflow.set_tag("best_params", json.dumps(search.best_params, sort_keys=True))
        # Every completed trial's parameters, best first: the candidates of the walk-forward PBO.
        mlflow.set_tag(TRIAL_PARAMS_TAG, trial_params_tag(search.completed_params))
        mlflow.log_metrics({f"cv_{spec.metric}": search.best_cv_score, "trials_pruned": search.n_pruned})

        model = fit_estimator(spec, build_estimator(spec, search.best_params, data.feature_names), X_train,
                              y_train, data.next_return[data.train_idx])
        onnx_model = model.to_onnx()
        X_hold = take_rows(data.X, data.holdout_idx)
        parity = float(np.max(np.abs(
            onnx_primary_output(spec, onnx_outputs(onnx_model.SerializeToString(), X_hold))
            - native_output(spec, model, X_hold))))
        mlflow.log_metrics({"onnx_max_abs_diff": parity, "onnx_parity_tolerance": spec.gates.max_onnx_abs_diff})

        with tempfile.TemporaryDirectory() as tmp:
            schema = spec_schema(
                spec, feature_set_version=feature_set_version, features=data.feature_names,
                model={"name": name, "family": spec.family, "spec": spec.name, "tenant": settings.tenant,
                       "user": settings.user, "symbol": symbol, "timeframe": timeframe, "run_id": run_id, "version": ""},
            )
            # A fitted estimator may add fields of its own (pattern_similarity: its library of windows).
            if hasattr(model, "bundle_schema"):
                schema.update(model.bundle_schema())
            bundle = write_bundle(Path(tmp) / "bundle", onnx_model, schema)
            mlflow.log_artifacts(str(bundle), "bundle")
            _log_importance(spec, model, data, Path(tmp), settings.n_jobs)
        if SUPERSEDED_TAG in registry.client.get_run(run_id).data.tags:
            raise AttemptSupersededError(f"{name}: a later attempt took over train key {key}; not registering")
        version = registry.register(name, run_id, tags={
            "family": spec.family, "spec": spec.name, "symbol": symbol, "timeframe": timeframe,
            "feature_set_version": feature_set_version, "data_fingerprint": data.fingerprint,
            "train_end": data.train_end.isoformat(), "holdout_start": data.holdout_start.isoformat(),
            TRAIN_KEY_TAG: key,
            "features_selected": (f"{len(selection.kept)}/{len(selection.kept) + len(selection.dropped)}"
                                  if selection is not None else "all"),
        })
        mlflow.set_tag("registered_version", version)
    log.info("trained %s v%s: cv %s=%.4f (%d trials, %d pruned), onnx parity %.2e",
             name, version, spec.metric, search.best_cv_score, search.n_trials, search.n_pruned, parity)
    return {**result, "version": version, "run_id": run_id}


def _log_selection(selection: FeatureSelection) -> None:
    """Every candidate feature's importance on the training window, whether it was kept, and the shadows'."""
    import mlflow

    table = pd.DataFrame({"feature": list(selection.importance), "importance": list(selection.importance.values())})
    table["kept"] = table["feature"].isin(set(selection.kept))
    shadows = pd.DataFrame({"feature": [f"shadow_{i}" for i in range(len(selection.shadow_importance))],
                            "importance": selection.shadow_importance, "kept": False})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "feature_selection.csv"
        pd.concat([table, shadows]).sort_values("importance", ascending=False).to_csv(path, index=False)
        mlflow.log_artifact(str(path), "selection")


WARM_START_TAG = "warm_start"


def shared_champion_start(registry: Registry, spec_name: str, symbol: str) -> dict[str, Any] | None:
    """Where a user's training of ``spec_name`` on ``symbol`` starts: the tenant's shared champion.

    Returns the shared model's name, champion version, run id and best parameters (the
    ``best_params`` tag its train run recorded in MLflow), or None when the tenant has no
    champion of that spec and symbol (the user's study then starts from scratch)."""
    shared = model_name(registry.tenant, spec_name, symbol)
    version = registry.alias_version(shared, CHAMPION)
    if version is None:
        return None
    run_id = registry.client.get_model_version(shared, version).run_id
    recorded = registry.client.get_run(run_id).data.tags.get("best_params")
    if not recorded:
        return None
    return {"model": shared, "version": version, "run_id": run_id, "params": json.loads(recorded)}


def warm_start_tags(start: dict[str, Any] | None, shared: str) -> dict[str, str]:
    """MLflow run tags that record what a user's training started from."""
    if start is None:
        return {WARM_START_TAG: f"none: {shared} has no champion; the study starts from scratch"}
    return {WARM_START_TAG: f"{start['model']}@{CHAMPION}", "warm_start_version": start["version"],
            "warm_start_run_id": start["run_id"],
            "warm_start_params": json.dumps(start["params"], sort_keys=True)}


PERMUTATION_TOP = 20      # permutation importance for the top features by gain
PERMUTATION_REPEATS = 2


def _score(spec: ModelSpec, model: Any, X: np.ndarray, y: np.ndarray) -> float:
    """Primary metric, oriented so that higher is better."""
    from models.metrics import primary_score

    value = primary_score(spec, y, native_output(spec, model, X))
    return value if spec.greater_is_better else -value


def _log_importance(spec: ModelSpec, model: Any, data: Dataset, tmp: Path, n_jobs: int = 1) -> None:
    """Gain importance, and permutation importance on the holdout (explanation only: nothing is selected on it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    hold = data.holdout_idx
    X_hold, y_hold = take_rows(data.X, hold), data.y[hold]
    n_features = len(data.feature_names)
    gain = np.asarray(getattr(model, "feature_importances_", np.ones(n_features)), dtype=float).reshape(-1)
    if gain.shape[0] != n_features:  # e.g. ensembles: importance over members, not features
        gain = np.ones(n_features)
    top = np.argsort(gain)[::-1][:PERMUTATION_TOP]
    rng = np.random.default_rng(0)
    orders = {column: [rng.permutation(len(X_hold)) for _ in range(PERMUTATION_REPEATS)] for column in top}
    base = _score(spec, model, X_hold, y_hold)

    def mean_drop(column: int) -> float:
        shuffled = np.array(X_hold, copy=True)
        losses = []
        for order in orders[column]:
            shuffled[..., column] = X_hold[order, ..., column]
            losses.append(base - _score(spec, model, shuffled, y_hold))
        return float(np.mean(losses))

    drops = np.zeros(len(data.feature_names))
    # Predictions release the GIL (except torch's, which run one at a time).
    drops[top] = list(ordered_map(mean_drop, top, spec.fit_threads(n_jobs)))
    table = pd.DataFrame({"feature": data.feature_names, "gain": gain, "permutation": drops})
    table = table.sort_values("permutation", ascending=False)
    table.to_csv(tmp / "feature_importance.csv", index=False)
    mlflow.log_artifact(str(tmp / "feature_importance.csv"), "importance")
    shown = table.head(PERMUTATION_TOP).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.barh(shown["feature"], shown["permutation"])
    ax.set_title(f"{spec.name}: permutation importance (top 20)")
    fig.tight_layout()
    mlflow.log_figure(fig, "importance/permutation_top20.png")
    plt.close(fig)
