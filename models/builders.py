"""The estimator builders, search spaces, label rules and baselines that the spec catalog
(:mod:`models.catalog`) binds into its specs.

Each builder imports its family module on call, so importing the catalog stays cheap (no torch,
LightGBM, scikit-learn or arch at import time). A builder takes the Optuna parameters and returns
an unfitted estimator; a ``*_space`` function draws those parameters from a trial.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from models.specs import ModelSpec


def direction_classifier(params: dict[str, Any]) -> Any:
    from models.families.direction import DirectionClassifier

    return DirectionClassifier(**params)


def volatility(params: dict[str, Any]) -> Any:
    from models.families.volatility import VolatilityRegressor

    return VolatilityRegressor(**params)


def volatility_space(trial: Any) -> dict[str, Any]:
    from models.families.volatility import volatility_space as in_family

    return in_family(trial)


def regime_classifier(params: dict[str, Any]) -> Any:
    from models.families.regime import RegimeClassifier

    return RegimeClassifier(**params)


def anomaly(params: dict[str, Any]) -> Any:
    from models.families.anomaly import AnomalyDetector

    return AnomalyDetector(**params)


def risk_scorer(params: dict[str, Any]) -> Any:
    from models.families.risk import RiskScorer

    return RiskScorer(**params)


def momentum_svm(params: dict[str, Any]) -> Any:
    from models.families.momentum import MomentumSVM

    # The kernel SVM fits on (and predicts with support vectors from) 1,200 evenly spaced rows.
    return MomentumSVM(**{"max_train_rows": 1200, **params})


def gate(params: dict[str, Any]) -> Any:
    from models.families.gate import GateClassifier

    return GateClassifier(**params)


def trade_quality(params: dict[str, Any]) -> Any:
    from models.families.trade_quality import TradeQualityModel

    return TradeQualityModel(**params)


def trade_label(bars: pd.DataFrame) -> pd.Series:
    """:func:`models.families.trade_quality.trade_label`, imported on call like the estimators: the
    label replays the family's sample strategies, and its module loads scikit-learn and onnx."""
    from models.families.trade_quality import trade_label as in_family

    return in_family(bars)


def sequence(arch: str, params: dict[str, Any]) -> Any:
    from models.families.sequence import SequenceModel

    return SequenceModel(arch=arch, **params)


def pattern_similarity(params: dict[str, Any]) -> Any:
    from models.families.pattern_similarity import PatternSimilarityModel

    return PatternSimilarityModel(**params)


def pattern_space(trial: Any) -> dict[str, Any]:
    from models.families.pattern_similarity import pattern_space as in_family

    return in_family(trial)


def sentiment(params: dict[str, Any]) -> Any:
    from models.families.sentiment import SentimentClassifier

    return SentimentClassifier(**params)


def ensemble(params: dict[str, Any]) -> Any:
    from models.families.ensemble import EnsembleClassifier, default_members

    params = dict(params)
    return EnsembleClassifier(members=default_members(int(params.get("random_state", 0))), **params)


def execution_policy(params: dict[str, Any]) -> Any:
    from models.families.execution import ExecutionPolicy

    return ExecutionPolicy(**params)


def execution_costs(*args: Any) -> dict[str, np.ndarray]:
    from models.families.execution import holdout_episode_costs

    return holdout_episode_costs(*args)


def chart_pattern(params: dict[str, Any]) -> Any:
    from models.families.chart_pattern import ChartPatternCNN

    return ChartPatternCNN(**params)


def chart_pattern_rows(holdout_fraction: float, *, horizon: int) -> Any:
    """The chart_pattern spec's generated rows, purged by its ``horizon``."""
    from models.families.chart_pattern import generated_rows

    return generated_rows(holdout_fraction, horizon=horizon)


def chart_pattern_report(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    from models.families.chart_pattern import per_class_report

    return per_class_report(y, proba)


def no_market_label(bars: pd.DataFrame) -> pd.Series:
    from models.families.chart_pattern import no_market_label as in_family

    return in_family(bars)


def correlation_regime(params: dict[str, Any]) -> Any:
    from models.families.correlation_regime import CorrelationRegimeModel

    return CorrelationRegimeModel(**params)


def correlation_regime_space(trial: Any) -> dict[str, Any]:
    from models.families.correlation_regime import correlation_regime_space as in_family

    return in_family(trial)


def correlation_switch_checks(spec: ModelSpec, index: pd.DatetimeIndex, outputs: dict[str, np.ndarray],
                               events: pd.DataFrame) -> dict[str, float]:
    from models.families.correlation_regime import switch_checks

    return switch_checks(spec, index, outputs, events)


def liquidity(params: dict[str, Any]) -> Any:
    from models.families.liquidity import LiquidityRegressor

    return LiquidityRegressor(**params)


def returns_lgbm(params: dict[str, Any]) -> Any:
    from models.families.returns import ReturnsLGBM

    return ReturnsLGBM(**params)


def returns_mlp(params: dict[str, Any]) -> Any:
    from models.families.returns import ReturnsMLP

    return ReturnsMLP(**params)


def returns_mlp_space(trial: Any) -> dict[str, Any]:
    from models.families.returns import returns_mlp_space as in_family

    return in_family(trial)


# -- baselines ---------------------------------------------------------------------------


def train_mean_baseline(y_train: np.ndarray, y_holdout: np.ndarray, train_returns: np.ndarray | None = None,
                        holdout_returns: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``{"train_mean": mean(y_train)}`` on every holdout row (per column when ``y`` is ``[n, n_targets]``)."""
    y_train = np.asarray(y_train, dtype=np.float64)
    if y_train.ndim == 2:
        return {"train_mean": np.tile(y_train.mean(axis=0), (len(y_holdout), 1))}
    return {"train_mean": np.full(len(y_holdout), float(np.mean(y_train)))}
