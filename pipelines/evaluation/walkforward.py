"""Walk-forward scoring over the holdout (the PBO of a version is in :mod:`pipelines.evaluation.pbo`).

Pure functions on a :class:`~pipelines.evaluation.datasets.Dataset`: no MLflow and no warehouse here; the
validate step logs what they return.

Walk-forward folds
------------------
The holdout is cut into ``n_folds`` consecutive blocks. Fold k refits the spec with the
version's parameters on an expanding window (every row before block k's start, minus a purge
gap of ``spec.horizon`` rows, so no training label reaches into the scored block; the window
only ever lies before the block, so no embargo after it is needed), capped to the most recent
``spec.max_train_rows`` rows, and scores block k. Fold 1's window is the version's own
training window, so fold 1 refits the registered model. Per fold: the primary metric (on the
spec's native output) and, for direction-like classifiers (first class ``down``, last ``up``),
the Sharpe after costs of the validate step's trading rule. The refits are independent and
run on :func:`models.parallel.ordered_map`.

Cost per version, in CPU seconds (``time.process_time``, both threads summed, ``n_jobs=2``).
These were measured while other processes kept the load average near 10 on the 2 cores, so
wall-clock times were not reliable. On 2 free cores, expect about half the CPU time as wall
time for LightGBM; torch runs one fit at a time.

======================================================  ============  ====================  =================
version                                                 walk_forward  pbo_for_version       train step's tune
                                                        (3 fits)      (reuse, fits)         (for scale)
======================================================  ============  ====================  =================
direction_h1, 5,000 × 140, the 5 tuned trials           0.9           3.6 (12; 4.4 w/o)     4.9
same, worst case: 6 × 200 trees × 31 leaves             3.4           17.0 (15)             —
direction_h1, 15,671 × 140 (the SYN1 size), tuned       2.4           8.4 (12; 11.2 w/o)    9.8
ensemble_h5, 5,000 rows (8k cap), 2 candidates          2.7           2.4 (3)               —
sequence_lstm_h5, 1,500 rows (cap), 2 candidates        11.9          21.5 (3)              —
======================================================  ============  ====================  =================

Fits are shared: :func:`pbo_for_version` takes the :class:`WalkForward` of the version's own
parameters (``reuse=``) and does not refit the candidate with those parameters. The best trial
is one of the candidates, so one version costs ``n_folds × n_candidates`` fits in all (at most
3 × 8). ``--families all`` has 12 direction-like versions: 3 direction specs, the ensemble and
the 2 sequence specs, each on 2 symbols. Running both functions on every one of them would add
roughly 200 CPU s, or about 2 minutes on 2 cores. That is estimated from the rows above; the
transformer was not measured. Run only for the versions that pass every cheaper gate, as the
null test is, they add a fraction of that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.cv import InsufficientDataError
from models.metrics import primary_score
from models.outputs import build_estimator, fit_estimator, full_proba, native_output
from models.parallel import ordered_map
from models.specs import ModelSpec
from pipelines.evaluation.datasets import Dataset
from pipelines.evaluation.metrics import classifier_position, hold_for_horizon, strategy_pnl, trading_metrics

MIN_FOLD_ROWS = 10         # a walk-forward block shorter than this cannot be scored
MIN_TRAIN_ROWS = 50        # nor can a fold train on fewer rows (as models.cv.holdout_split)


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold as row positions (``stop`` exclusive) and the timestamps they span."""

    number: int  # 1-based
    train_start: int
    train_stop: int
    test_start: int
    test_stop: int
    train_first: pd.Timestamp
    train_last: pd.Timestamp
    test_first: pd.Timestamp
    test_last: pd.Timestamp

    @property
    def train_rows(self) -> np.ndarray:
        return np.arange(self.train_start, self.train_stop)

    @property
    def test_rows(self) -> np.ndarray:
        return np.arange(self.test_start, self.test_stop)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready boundaries (for a model card or an MLflow artifact)."""
        return {"fold": self.number, "n_train": self.train_stop - self.train_start,
                "n_test": self.test_stop - self.test_start,
                "train_first": self.train_first.isoformat(), "train_last": self.train_last.isoformat(),
                "test_first": self.test_first.isoformat(), "test_last": self.test_last.isoformat()}


def walk_forward_folds(data: Dataset, *, n_folds: int, purge: int, max_train_rows: int | None = None
                       ) -> tuple[Fold, ...]:
    """The holdout cut into ``n_folds`` consecutive blocks, each with its expanding training window."""
    if n_folds < 1:
        raise ValueError("n_folds must be at least 1")
    hold = np.asarray(data.holdout_idx)
    if len(hold) == 0 or np.any(np.diff(hold) != 1):
        raise ValueError("the holdout must be one run of consecutive rows")
    blocks = np.array_split(hold, n_folds)
    if min(len(b) for b in blocks) < MIN_FOLD_ROWS:
        raise InsufficientDataError(f"a {len(hold)}-row holdout is too short for {n_folds} walk-forward folds "
                                    f"of at least {MIN_FOLD_ROWS} rows")
    folds = []
    for number, block in enumerate(blocks, start=1):
        train_stop = int(block[0]) - max(int(purge), 0)
        train_start = max(0, train_stop - max_train_rows) if max_train_rows else 0
        if train_stop - train_start < MIN_TRAIN_ROWS:
            raise InsufficientDataError(f"walk-forward fold {number} has {max(train_stop - train_start, 0)} "
                                        f"training rows (at least {MIN_TRAIN_ROWS} needed)")
        test_start, test_stop = int(block[0]), int(block[-1]) + 1
        folds.append(Fold(number=number, train_start=train_start, train_stop=train_stop, test_start=test_start,
                          test_stop=test_stop, train_first=data.index[train_start],
                          train_last=data.index[train_stop - 1], test_first=data.index[test_start],
                          test_last=data.index[test_stop - 1]))
    return tuple(folds)


def is_direction_like(spec: ModelSpec) -> bool:
    """A classifier whose first class is ``down`` and last ``up``: its signal is traded."""
    return spec.task == "classifier" and len(spec.class_names) >= 2 \
        and spec.class_names[0] == "down" and spec.class_names[-1] == "up"


def fold_output(spec: ModelSpec, params: dict[str, Any], data: Dataset, fold: Fold) -> np.ndarray:
    """Refit on the fold's training window; the spec's primary output on its block."""
    train = slice(fold.train_start, fold.train_stop)
    model = fit_estimator(spec, build_estimator(spec, params, data.feature_names), data.X[train], data.y[train],
                          data.next_return[train])
    X_test = data.X[fold.test_start:fold.test_stop]
    if spec.task == "classifier":
        return full_proba(model, X_test, len(spec.class_names))
    return native_output(spec, model, X_test)


def signal_position(spec: ModelSpec, proba: np.ndarray) -> np.ndarray:
    """The validate step's trading rule: long/short/flat, an h-bar forecast held as h overlapping positions."""
    return hold_for_horizon(classifier_position(proba), spec.horizon)


def position_pnl(position: np.ndarray, next_return: np.ndarray, cost_per_turnover: float) -> np.ndarray:
    """Per-bar pnl after costs, as in :func:`pipelines.evaluation.metrics.trading_metrics` (flat before the first bar)."""
    return strategy_pnl(position, next_return, cost_per_turnover)


def folds_pnl(position: np.ndarray, data: Dataset, folds: Sequence[Fold], cost_per_turnover: float) -> np.ndarray:
    """Pnl over the holdout of a holdout-long ``position``, each fold starting flat (a refit model per fold)."""
    start = folds[0].test_start
    return np.concatenate([
        position_pnl(position[f.test_start - start:f.test_stop - start], data.next_return[f.test_start:f.test_stop],
                     cost_per_turnover) for f in folds])


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


def _mean(values: Sequence[float]) -> float:
    finite = _finite(values)
    return float(finite.mean()) if len(finite) else float("nan")


def _std(values: Sequence[float]) -> float:
    """Sample standard deviation (ddof 1) of the finite values; NaN below two."""
    finite = _finite(values)
    return float(finite.std(ddof=1)) if len(finite) >= 2 else float("nan")


@dataclass(frozen=True)
class WalkForward:
    """Per-fold scores of one parameter set; NaN marks a fold that cannot be scored (an anomaly
    block without events), and the mean and std are over the scored folds (``n_scored``)."""

    spec_name: str
    metric: str
    greater_is_better: bool
    params: dict[str, Any]
    folds: tuple[Fold, ...]
    scores: tuple[float, ...]
    sharpes: tuple[float, ...] | None  # direction-like classifiers only
    # Holdout-long position and pnl after costs (direction-like only), reused by pbo_for_version.
    position: np.ndarray | None = field(default=None, compare=False, repr=False)
    pnl: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def n_folds(self) -> int:
        return len(self.folds)

    @property
    def n_scored(self) -> int:
        return len(_finite(self.scores))

    @property
    def metric_mean(self) -> float:
        return _mean(self.scores)

    @property
    def metric_std(self) -> float:
        return _std(self.scores)

    @property
    def metric_worst(self) -> float:
        finite = _finite(self.scores)
        if not len(finite):
            return float("nan")
        return float(finite.min() if self.greater_is_better else finite.max())

    @property
    def sharpe_mean(self) -> float:
        return _mean(self.sharpes) if self.sharpes is not None else float("nan")

    @property
    def sharpe_std(self) -> float:
        return _std(self.sharpes) if self.sharpes is not None else float("nan")

    def as_metrics(self) -> dict[str, float]:
        """Flat float metrics: ``wf_n_folds``, ``wf_n_scored``, ``wf_{metric}_mean|std|worst|fold{k}``
        and, for direction-like specs, ``wf_sharpe_mean|std|worst|fold{k}`` (annualized, after costs).
        NaN values stay NaN (the caller decides whether to log them)."""
        m = self.metric
        out = {"wf_n_folds": float(self.n_folds), "wf_n_scored": float(self.n_scored),
               f"wf_{m}_mean": self.metric_mean, f"wf_{m}_std": self.metric_std, f"wf_{m}_worst": self.metric_worst}
        out.update({f"wf_{m}_fold{k}": float(s) for k, s in enumerate(self.scores, start=1)})
        if self.sharpes is not None:
            out.update({"wf_sharpe_mean": self.sharpe_mean, "wf_sharpe_std": self.sharpe_std,
                        "wf_sharpe_worst": float(np.min(self.sharpes))})
            out.update({f"wf_sharpe_fold{k}": float(s) for k, s in enumerate(self.sharpes, start=1)})
        return out

    def boundaries(self) -> list[dict[str, Any]]:
        return [f.as_dict() for f in self.folds]


def _summarize(spec: ModelSpec, params: dict[str, Any], data: Dataset, folds: tuple[Fold, ...],
               outputs: Sequence[np.ndarray], cost_per_turnover: float, bars_per_year: float) -> WalkForward:
    scores = tuple(float(primary_score(spec, data.y[f.test_start:f.test_stop], out)) for f, out in zip(folds, outputs))
    sharpes = position = pnl = None
    if is_direction_like(spec):
        positions = [signal_position(spec, out) for out in outputs]
        sharpes = tuple(trading_metrics(p, data.next_return[f.test_start:f.test_stop],
                                        cost_per_turnover=cost_per_turnover, bars_per_year=bars_per_year)["sharpe"]
                        for f, p in zip(folds, positions))
        position = np.concatenate(positions)
        pnl = folds_pnl(position, data, folds, cost_per_turnover)
    return WalkForward(spec_name=spec.name, metric=spec.metric, greater_is_better=spec.greater_is_better,
                       params=dict(params), folds=folds, scores=scores, sharpes=sharpes, position=position, pnl=pnl)


def walk_forward(spec: ModelSpec, params: dict[str, Any], data: Dataset, *, n_folds: int = 3,
                 cost_per_turnover: float, bars_per_year: float, n_jobs: int = 1) -> WalkForward:
    """Refit ``params`` on each fold's expanding window and score the fold's holdout block."""
    folds = walk_forward_folds(data, n_folds=n_folds, purge=spec.horizon, max_train_rows=spec.max_train_rows)
    outputs = list(ordered_map(lambda fold: fold_output(spec, params, data, fold), folds,
                               spec.fit_threads(n_jobs, data.X.nbytes)))
    return _summarize(spec, params, data, folds, outputs, cost_per_turnover, bars_per_year)


