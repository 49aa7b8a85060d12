"""Optuna search on purged walk-forward CV, one nested MLflow run per trial."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.cv import PurgedWalkForward, take_rows
from models.metrics import primary_score
from models.outputs import build_estimator, fit_estimator, full_proba, native_output
from models.parallel import ordered_map
from models.specs import ModelSpec


@dataclass(frozen=True)
class SearchResult:
    best_params: dict[str, Any]
    best_cv_score: float
    n_trials: int
    n_pruned: int
    trials: list[dict[str, Any]]
    # Each completed trial's parameters exactly as fitted (with the seed), best CV score first.
    completed_params: list[dict[str, Any]] = field(default_factory=list)


def fit_and_score(spec: ModelSpec, params: dict[str, Any], feature_names: list[str], X_train: np.ndarray,
                  y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
                  train_returns: np.ndarray | None = None) -> float:
    """Fit the spec with ``params`` on the training rows; its primary metric on the test rows."""
    model = fit_estimator(spec, build_estimator(spec, params, feature_names), X_train, y_train, train_returns)
    output = full_proba(model, X_test, len(spec.class_names)) if spec.task == "classifier" \
        else native_output(spec, model, X_test)
    return primary_score(spec, y_test, output)


def cv_score(spec: ModelSpec, params: dict[str, Any], X: np.ndarray, y: np.ndarray,
             cv: PurgedWalkForward, report: Callable[[int, float], bool] | None = None,
             feature_names: list[str] | None = None, next_return: np.ndarray | None = None,
             n_jobs: int = 1) -> list[float]:
    """Score ``params`` on each purged fold; ``report(step, running_mean)`` returning True prunes.

    Folds are fitted on up to ``n_jobs`` threads (if the spec allows) and reported in fold
    order, so pruning decisions and scores do not depend on ``n_jobs``."""
    scores: list[float] = []
    names = feature_names or [f"f{i}" for i in range(X.shape[-1])]

    def fold_score(split: tuple[np.ndarray, np.ndarray]) -> float:
        train_idx, test_idx = split
        score = fit_and_score(spec, params, names, take_rows(X, train_idx), take_rows(y, train_idx),
                              take_rows(X, test_idx), take_rows(y, test_idx),
                              None if next_return is None else take_rows(next_return, train_idx))
        return score if np.isfinite(score) else (0.5 if spec.task == "anomaly" else score)

    with closing(ordered_map(fold_score, cv.split(len(X)), spec.fit_threads(n_jobs, X.nbytes))) as fold_scores:
        for step, score in enumerate(fold_scores):
            scores.append(score)
            if report is not None and report(step, float(np.mean(scores))):
                break
    return scores


def tune(spec: ModelSpec, X: np.ndarray, y: np.ndarray, *, n_trials: int, cv: PurgedWalkForward,
         seed: int, log_trial: Callable[[int, dict[str, Any], float, str], None] | None = None,
         feature_names: list[str] | None = None, next_return: np.ndarray | None = None,
         n_jobs: int = 1, start_params: dict[str, Any] | None = None) -> SearchResult:
    """One Optuna study (TPE, median pruner) over the spec's search space.

    ``start_params`` (e.g. another model's best parameters) is enqueued as the study's first
    trial: its values of the spec's parameters are used as they are, and TPE goes on from there.

    Trials run one after another (TPE's suggestions depend on every earlier trial, so this
    keeps a study reproducible); each trial's CV folds use up to ``n_jobs`` threads."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "maximize" if spec.greater_is_better else "minimize"
    study = optuna.create_study(
        direction=direction,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )
    params_seed = {"random_state": seed}
    fitted: dict[int, dict[str, Any]] = {}
    if start_params:
        study.enqueue_trial({k: v for k, v in start_params.items() if k not in params_seed})

    def objective(trial: optuna.Trial) -> float:
        params = {**spec.search_space(trial), **params_seed}
        fitted[trial.number] = params

        def report(step: int, value: float) -> bool:
            trial.report(value, step)
            return trial.should_prune()

        scores = cv_score(spec, params, X, y, cv, report, feature_names, next_return, n_jobs)
        value = float(np.mean(scores))
        if len(scores) < cv.n_splits:
            if log_trial:
                log_trial(trial.number, params, value, "pruned")
            raise optuna.TrialPruned()
        if log_trial:
            log_trial(trial.number, params, value, "complete")
        return value

    study.optimize(objective, n_trials=n_trials, show_progress_bar=False)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise RuntimeError(f"every Optuna trial of {spec.name} was pruned or failed")
    sign = -1.0 if spec.greater_is_better else 1.0
    ranked = sorted(completed, key=lambda t: (sign * float(t.value), t.number))
    return SearchResult(
        best_params={**study.best_params, **params_seed},
        best_cv_score=float(study.best_value),
        n_trials=len(study.trials),
        n_pruned=sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        trials=[{"number": t.number, "value": t.value, "state": t.state.name, **t.params} for t in study.trials],
        completed_params=[fitted[t.number] for t in ranked],
    )
