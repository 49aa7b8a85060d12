"""Optuna search spaces of the spec catalog (:mod:`models.catalog`): ``trial -> params``."""

from __future__ import annotations

from typing import Any


def lightgbm_space(trial: Any) -> dict[str, Any]:
    """The LightGBM search space shared by the LightGBM-based families."""
    return {
        "n_estimators": trial.suggest_int("n_estimators", 50, 200, step=50),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 4, 31),
        "min_child_samples": trial.suggest_int("min_child_samples", 20, 200, log=True),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
    }


def small_lightgbm_space(trial: Any) -> dict[str, Any]:
    """For small training sets (a trade log has hundreds of rows, not thousands)."""
    return {
        "n_estimators": trial.suggest_int("n_estimators", 30, 200, step=10),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 3, 15),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 50, log=True),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
    }


def anomaly_space(trial: Any) -> dict[str, Any]:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 100, 200, step=50),
        "max_samples": trial.suggest_categorical("max_samples", [128, 256, 512]),
        "max_features": trial.suggest_float("max_features", 0.5, 1.0),
    }


def forest_space(trial: Any) -> dict[str, Any]:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 50, 100, step=25),
        "max_depth": trial.suggest_int("max_depth", 4, 8),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 20, 200, log=True),
        "max_features": trial.suggest_float("max_features", 0.1, 0.4),
    }


def svm_space(trial: Any) -> dict[str, Any]:
    return {
        "C": trial.suggest_float("C", 0.1, 10.0, log=True),
        "gamma": trial.suggest_float("gamma", 1e-3, 3e-2, log=True),
    }


def gbm_space(trial: Any) -> dict[str, Any]:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 50, 150, step=50),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "max_depth": trial.suggest_int("max_depth", 2, 4),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "max_features": trial.suggest_float("max_features", 0.1, 0.5),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 20, 200, log=True),
    }


def sequence_space(trial: Any) -> dict[str, Any]:
    return {
        "hidden_size": trial.suggest_categorical("hidden_size", [16, 32]),
        "epochs": trial.suggest_int("epochs", 3, 5),
        "learning_rate": trial.suggest_float("learning_rate", 5e-4, 5e-3, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
    }


def chart_pattern_space(trial: Any) -> dict[str, Any]:
    return {
        "channels": trial.suggest_categorical("channels", [8, 16]),
        "epochs": trial.suggest_int("epochs", 6, 10),
        "learning_rate": trial.suggest_float("learning_rate", 3e-3, 1e-2, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
    }


def logistic_space(trial: Any) -> dict[str, Any]:
    return {"C": trial.suggest_float("C", 1e-3, 1.0, log=True)}


def ensemble_space(trial: Any) -> dict[str, Any]:
    method = trial.suggest_categorical("method", ["mean", "vote", "stack", "regime"])
    params: dict[str, Any] = {"method": method}
    if method == "stack":
        params["stack_C"] = trial.suggest_float("stack_C", 0.01, 10.0, log=True)
    if method == "regime":
        params["regime_depth"] = trial.suggest_int("regime_depth", 1, 3)
    return params


def fixed_parameters(trial: Any) -> dict[str, Any]:
    """No search: specs trained once with their builder's defaults (a PPO run per trial is too costly)."""
    return {}
