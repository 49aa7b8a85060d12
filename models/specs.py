"""What a model spec is: the types of the spec catalog (:mod:`models.catalog`).

A spec names its family, its label, its estimator and search space, and its primary metric;
:class:`Gates` are the validation gates it must pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

# Above this many bytes of training matrix, a spec's independent fits run one at a time.
PARALLEL_FIT_MAX_BYTES = 256 * 1024 * 1024

Task = Literal["classifier", "regressor", "anomaly"]


@dataclass(frozen=True)
class SuppliedRows:
    """Rows a spec supplies itself (``ModelSpec.rows``) in place of the warehouse's features and
    labels, e.g. generated samples with known ground truth. ``index`` orders the rows (unique,
    ascending); ``next_return`` is what follows each row (a sequence-style spec's ``forward_return``);
    ``train_idx`` and ``holdout_idx`` are positions, the holdout after the training rows."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    next_return: np.ndarray
    index: pd.DatetimeIndex
    train_idx: np.ndarray
    holdout_idx: np.ndarray


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
    # Specs whose holdout checks measure recorded switches (``switch_detection_rate``): the share
    # of recorded switches the model must flag within the spec's detection window.
    min_switch_detection_rate: float = 0.8


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
    # Drop inputs whose permutation importance on the training window is indistinguishable from
    # shadow (row-permuted) features: models.selection. Tabular specs only.
    select_features: bool = False
    # Families fitted on episodes replayed from the bars (reinforcement learning), not on
    # (features, label) rows: ``(policy, bars, train_stop, holdout_start, params)`` -> per-episode
    # costs on the held-out episodes of the policy (``"policy"``) and of each rule of the field.
    # When set, the train, validate and deploy steps take their episodic path (pipelines.steps.episodes),
    # and ``rule_to_beat`` names the rule of the paired test.
    episode_costs: Callable[..., dict[str, np.ndarray]] | None = None
    rule_to_beat: str = ""
    # Specs that do not learn from market labels: ``(holdout_fraction) -> SuppliedRows`` gives the
    # training and holdout rows (the train, validate and deploy steps use them as they are).
    rows: Callable[[float], SuppliedRows] | None = None
    # Extra holdout metrics, reported on the model card and not gated: (y_holdout, primary output) -> {name: value}.
    holdout_report: Callable[[np.ndarray, np.ndarray], dict[str, float]] | None = None
    # Universe specs: one model over every member of a universe (pipelines.universes), trained
    # under the universe's name as a pseudo-symbol; ``make_label`` then takes the members' joined
    # closes (pipelines.evaluation.universe). False: one model per (symbol, timeframe).
    universe: bool = False
    # Extra holdout metrics from every ONNX output and the symbol's recorded market events:
    # (spec, holdout index, outputs by name, events) -> {"switch_detection_rate": ..., ...}.
    holdout_checks: Callable[..., dict[str, float]] | None = None
    # Features the spec cannot do without (e.g. the news features): a symbol whose feature set
    # lacks one is skipped (models.cv.InsufficientDataError), not a failed run.
    required_features: tuple[str, ...] = ()
    # Multi-output regressors: the label columns of y (then [n, len(targets)]), each one ONNX output
    # of the same name; ``make_label`` returns a frame with these columns.
    targets: tuple[str, ...] = ()
    # Specs whose horizons are in hours: the spec resolved for a timeframe (horizons in bars, the
    # label rule bound to the bar length). ``models.catalog.spec_by_name(name, timeframe)`` applies it.
    per_timeframe: Callable[[str], "ModelSpec"] | None = None

    def fit_threads(self, n_jobs: int, matrix_bytes: int = 0) -> int:
        """Threads for this spec's independent fits: ``n_jobs``, or 1 without ``parallel_fits`` or
        when the training matrix is over :data:`PARALLEL_FIT_MAX_BYTES` (each fit holds about
        1.6 times its rows, so concurrent fits of a large matrix would multiply the peak)."""
        if not self.parallel_fits or matrix_bytes > PARALLEL_FIT_MAX_BYTES:
            return 1
        return n_jobs

    def label_for(self, bars: pd.DataFrame) -> pd.Series | pd.DataFrame:
        """The label rule on ``bars``: a Series named ``label``, or for multi-output specs a frame of ``targets``."""
        if self.targets:
            frame = self.make_label(bars)
            missing = [t for t in self.targets if t not in frame.columns]
            if missing:
                raise ValueError(f"{self.name}: the label rule did not return targets {missing}")
            return frame[list(self.targets)]
        return self.make_label(bars).rename(self.label)
