"""Model specs: what each family trains on, how it is searched, scored and gated.

A spec names its family, its label, its estimator and search space, and its primary
metric. Families are picked by name through ``FAMILIES``: an explicit dict, not import
strings. ``specs_for(["all"])`` selects every family.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

Task = Literal["classifier", "regressor", "anomaly"]


@dataclass(frozen=True)
class Gates:
    """Per-spec validation gates; each one can fail."""

    max_null_p_value: float = 0.05      # real model vs block-permuted-label retrains
    must_beat_baselines: bool = True    # primary metric beats every baseline on the holdout
    must_beat_naive_rules: bool = True  # ... and every naive rule of its field (models.naive)
    must_beat_buy_hold: bool = True     # trading specs: Sharpe after costs above buy and hold's
    max_drawdown: float = 0.5           # of the signal's equity curve after costs (fraction)
    max_pbo: float = 0.2                # traded signals: probability of backtest overfitting (CSCV)
    max_onnx_abs_diff: float = 1e-5     # ONNX vs native on the holdout
    max_latency_p50_us: float = 1000.0  # one-row onnxruntime latency


@dataclass(frozen=True)
class ModelSpec:
    """One trainable model: a family's estimator on one label."""

    name: str
    family: str
    task: Task
    label: str
    horizon: int
    make_label: Callable[[pd.DataFrame], pd.Series]
    build: Callable[[dict[str, Any]], Any]
    search_space: Callable[[Any], dict[str, Any]]
    metric: str
    greater_is_better: bool = True
    class_names: tuple[str, ...] = ()
    gates: Gates = field(default_factory=Gates)
    description: str = ""
    # Sequence models: rows become windows of this many consecutive feature vectors, X [n, window, f].
    window: int = 0
    # Extra fields for schema.json (thresholds, fallback rule, output meanings, ...).
    schema_extras: dict[str, Any] = field(default_factory=dict)
    # Named baseline predictions on the holdout, fitted on the training window only:
    # (y_train, y_holdout, train_returns, holdout_returns) -> {"garch": array, ...}
    baselines: Callable[..., dict[str, np.ndarray]] | None = None
    # CPU budget of expensive families: train (and CV, and null-test) on the most recent rows of
    # the training window only, and cap the Optuna trials. The holdout is never cut.
    max_train_rows: int | None = None
    max_trials: int | None = None
    # Independent fits (CV folds, null-test retrains) may run on threads (see models.parallel);
    # False for estimators with process-wide state (torch's seed and thread count).
    parallel_fits: bool = True
    # Null-test retrains at most (None: the setting ``null_permutations``), for costly families.
    max_null_retrains: int | None = None

    def fit_threads(self, n_jobs: int) -> int:
        """Threads for this spec's independent fits: ``n_jobs``, or 1 without ``parallel_fits``."""
        return n_jobs if self.parallel_fits else 1

    def label_for(self, bars: pd.DataFrame) -> pd.Series:
        return self.make_label(bars).rename(self.label)


# -- direction ---------------------------------------------------------------------------

def _forward_return(bars: pd.DataFrame, horizon: int) -> pd.Series:
    from features.labels import forward_return

    return forward_return(bars["close"], horizon)


def _binary_direction(horizon: int) -> Callable[[pd.DataFrame], pd.Series]:
    def make(bars: pd.DataFrame) -> pd.Series:
        fwd = _forward_return(bars, horizon)
        return (fwd > 0).astype(float).where(fwd.notna())
    return make


def _three_class_direction(horizon: int, threshold: float) -> Callable[[pd.DataFrame], pd.Series]:
    def make(bars: pd.DataFrame) -> pd.Series:
        fwd = _forward_return(bars, horizon)
        label = np.select([fwd > threshold, fwd < -threshold], [2.0, 0.0], 1.0)
        return pd.Series(label, index=bars.index).where(fwd.notna())
    return make


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


def _direction_classifier(params: dict[str, Any]) -> Any:
    from models.families.direction import DirectionClassifier

    return DirectionClassifier(**params)


def direction_specs() -> list[ModelSpec]:
    specs = [
        ModelSpec(
            name=f"direction_h{h}", family="direction", task="classifier", label=f"dir_up_h{h}",
            horizon=h, make_label=_binary_direction(h), build=_direction_classifier,
            search_space=lightgbm_space, metric="auc", class_names=("down", "up"),
            description=f"P(close[t+{h}] > close[t]), LightGBM",
        )
        for h in (1, 5)
    ]
    specs.append(ModelSpec(
        name="direction3_h5", family="direction", task="classifier", label="dir3_h5_0.001",
        horizon=5, make_label=_three_class_direction(5, 0.001), build=_direction_classifier,
        search_space=lightgbm_space, metric="auc", class_names=("down", "flat", "up"), max_train_rows=8000,
        description="down / flat / up over 5 bars with a ±0.1% band, LightGBM",
    ))
    return specs


FAMILIES: dict[str, Callable[[], list[ModelSpec]]] = {
    "direction": direction_specs,
}


def all_families() -> dict[str, Callable[[], list[ModelSpec]]]:
    """``direction`` plus the families of :mod:`models.family_specs` (imported lazily: it imports this module)."""
    from models.family_specs import EXTRA_FAMILIES

    return {**FAMILIES, **EXTRA_FAMILIES}


def family_names() -> list[str]:
    return sorted(all_families())


def specs_for(families: Sequence[str]) -> list[ModelSpec]:
    """Specs of the named families (``all`` for every family) or single specs by name.

    Unknown names raise ValueError listing what is known.
    """
    registry = all_families()
    names = sorted(registry) if "all" in families else list(dict.fromkeys(families))
    by_spec = {spec.name: spec for build in registry.values() for spec in build()}
    unknown = [n for n in names if n not in registry and n not in by_spec]
    if unknown:
        raise ValueError(f"unknown model family {', '.join(unknown)}; known families: "
                         f"{', '.join(family_names())}, all (or a spec name such as direction_h1)")
    chosen: list[ModelSpec] = []
    for name in names:
        for spec in registry[name]() if name in registry else [by_spec[name]]:
            if spec.name not in {c.name for c in chosen}:
                chosen.append(spec)
    return chosen


def spec_by_name(name: str) -> ModelSpec:
    for builder in all_families().values():
        for spec in builder():
            if spec.name == name:
                return spec
    raise ValueError(f"unknown model spec {name!r}")

