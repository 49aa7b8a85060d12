"""The probability of backtest overfitting (PBO) of a version, over its trials and their luck twins.

Pure functions on a :class:`~pipelines.evaluation.datasets.Dataset` and the walk-forward folds of
:mod:`pipelines.evaluation.walkforward`; the validate step logs what they return.

PBO (Bailey, Borwein, López de Prado and Zhu 2017)
--------------------------------------------------
:func:`cscv_pbo` is combinatorially symmetric cross-validation: the T×N matrix of per-bar pnl
of N configurations is cut into S row blocks; for each of the C(S, S/2) ways to pick half the
blocks as in-sample, the in-sample best configuration's out-of-sample relative rank ω (rank /
(N + 1), 1 = worst) gives a logit λ = ln(ω / (1 - ω)); PBO is the share of λ ≤ 0.

:func:`pbo_for_version` builds that matrix for a version: each candidate's walk-forward
out-of-sample pnl over the holdout (the same folds as :func:`walk_forward`).

The known weakness, and the candidate set chosen here
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
PBO measures whether picking the in-sample best *among the candidates* helps out of sample.
The version's Optuna trials are settings of one model on one label. When the signal is real
they all carry it about equally, so which one is best in-sample is largely luck. PBO over the
trials alone then stays far from 0 and is spread widely whether the signal is real or not
(measured below: 0.24 on average on the planted market, with seeds up to 0.83; 0.50 on random
walks). A gate "PBO <= 0.5" on the trials alone passes half the random walks and still
rejects one planted signal in five.

So the gated PBO is computed over the trials **plus three luck twins per trial**: the trial's
own out-of-sample positions circularly shifted in time against the returns (offsets spread over
[T/4, 3T/4], costs charged per fold as for the trial). A twin has exactly the trial's exposure,
turnover and costs, but its timing no longer lines up with the market: it is a strategy the
search could have found by luck. If the trials carry a real edge, the in-sample best is a
trial and it outranks the twins out of sample, so λ > 0 on (nearly) every split and PBO is
near 0. If they carry none, trials and twins are exchangeable and PBO is about 0.5. One draw of
twins is itself noisy (one random-walk version gave 0.41, 0.64 and 0.54 for three draws), so
the gated number pools five independent draws (the share of λ <= 0 over 5 × C(8, 4) = 350
splits). No fits are involved: twins only reuse the trials' positions. The gate is
``pbo <= PBO_MAX`` (0.2). The trials-only PBO is still computed and reported (``pbo_trials``)
as a diagnostic; it is never gated.

PBO answers "did choosing the in-sample best beat luck?", not "does it earn money after
costs?". The φ = 0.2 market below has a real but small edge and passes it, while its Sharpe
after costs is negative: the buy-and-hold gate and the walk-forward Sharpe reject that one. A
constant position (always long) is its own twin: every split ties, λ = 0, and PBO is 1.

Measured (``python tests/pipelines/evaluation/test_walkforward.py PHI FIRST_SEED STOP_SEED [SPEC]``):
direction_h1 on generated 1-minute markets, 6,250 rows of which 1,250 are holdout. The features
are the last 1..5 returns. Optuna ran 6 trials on the training window as the train step does,
and 3 to 6 of them completed, so K = 3 to 6 candidates. Then 3 walk-forward folds, S = 8, and
a cost of 2 bps per unit of turnover. Each seed is a new market.

===================  =====  ======  =========  ====================  ========  ====================  ========
market               seeds  wf AUC  wf Sharpe  gated PBO             gated     trials-only PBO       trials
                                    (costs)    mean [min, max]       <= 0.2    mean [min, max]       <= 0.5
===================  =====  ======  =========  ====================  ========  ====================  ========
random walk          60     0.501   -138       0.456 [0.234, 0.843]  0 / 60    0.498 [0.000, 1.000]  50%
AR(1) φ = 0.1        20     0.534   -89        0.287 [0.003, 0.820]  9 / 20    0.416 [0.000, 0.986]  70%
AR(1) φ = 0.2        20     0.588   -15        0.023 [0.000, 0.143]  20 / 20   0.248 [0.000, 0.671]  85%
AR(1) φ = 0.6        10     0.780   +300       0.000 [0.000, 0.000]  10 / 10   0.239 [0.000, 0.829]  80%
h5: random walk      30     0.499   -54        0.481 [0.263, 0.757]  0 / 30    0.453 [0.000, 0.943]  60%
h5: AR(1) φ = 0.6    10     0.673   +209       0.000 [0.000, 0.000]  10 / 10   0.123 [0.000, 0.271]  100%
===================  =====  ======  =========  ====================  ========  ====================  ========

φ = 0.6 is the planted market. The h5 rows are direction_h5, with its 5-bar label and held
positions. The threshold 0.2 lies between the random walks' minimum and the largest value of
a real edge at AUC 0.59. The random walks' minimum is 0.234 over all 90 of them, and the 5th
percentile of the 60 h1 ones is 0.289. The edge at AUC 0.59 reached at most 0.143; that edge is
about what the SYN1 champion shows. Alternatives measured on the same 60 h1 random walks, from
three single draws of twins each (180 values):

- 1 twin per trial: 18% pass at 0.2.
- 3 twins: 13% pass at 0.2 and 4% at 0.1.
- 6 twins: 9% pass at 0.2.
- 5 draws of 3 twins, pooled (one value per version): 0 / 60 pass. This is why the draws
  are pooled.

With only 1 or 2 candidates (the sequence specs cap Optuna at 2 trials), 40 random walks gave
0 / 40 passes. The smallest values were 0.260 with one candidate and 0.206 with two (5th
percentile 0.222), so with two candidates the gate has little margin. A weak edge (φ = 0.1,
AUC 0.53) passes about half the time: the gate is strict about thin evidence.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.cv import InsufficientDataError
from models.parallel import ordered_map
from models.specs import ModelSpec
from pipelines.evaluation.datasets import Dataset
from pipelines.evaluation.walkforward import (
    Fold,
    WalkForward,
    fold_output,
    folds_pnl,
    is_direction_like,
    signal_position,
    walk_forward_folds,
)

PBO_MAX = 0.2              # gate: PBO over trials + luck twins at most this (measured: module docstring)
MAX_CANDIDATES = 8         # candidate configurations per version (the best trials first)
TWINS_PER_CANDIDATE = 3    # luck twins per candidate (free: no fits)
TWIN_DRAWS = 5             # independent draws of the twins, pooled (one draw alone is noisy)
TRIAL_PARAMS_TAG = "trial_params"
MLFLOW_TAG_MAX_CHARS = 8000  # MLflow's limit on a tag value



def sharpe_ratio(pnl: np.ndarray) -> np.ndarray:
    """Per-column Sharpe ratio of per-bar pnl (not annualized; 0 for a column without spread)."""
    mean, std = pnl.mean(axis=0), pnl.std(axis=0)
    return np.divide(mean, std, out=np.zeros_like(mean), where=std > 1e-15)


@dataclass(frozen=True)
class CSCVResult:
    """Combinatorially symmetric cross-validation over C(S, S/2) splits (one entry per split)."""

    pbo: float
    logits: np.ndarray = field(compare=False)        # λ = ln(ω / (1 - ω)) per split
    oos_rank: np.ndarray = field(compare=False)      # ω: OOS relative rank of the IS best, rank / (N + 1)
    is_best: np.ndarray = field(compare=False)       # column of the IS best per split
    is_metric: np.ndarray = field(compare=False)     # its IS metric
    oos_metric: np.ndarray = field(compare=False)    # its OOS metric
    n_blocks: int = 8
    n_configs: int = 0

    @property
    def n_combinations(self) -> int:
        return len(self.logits)

    @property
    def median_oos_rank(self) -> float:
        return float(np.median(self.oos_rank))

    @property
    def prob_oos_loss(self) -> float:
        """Share of splits where the IS best loses out of sample (OOS metric below 0)."""
        return float(np.mean(self.oos_metric < 0))


def cscv_pbo(pnl: np.ndarray, n_blocks: int = 8,
             metric: Callable[[np.ndarray], np.ndarray] = sharpe_ratio) -> CSCVResult:
    """PBO of choosing the in-sample best column of ``pnl`` [T bars, N configs] (Bailey et al. 2017).

    Rows are cut into ``n_blocks`` (even) consecutive blocks (sizes differ by at most one row);
    every one of the C(S, S/2) halves is in-sample once. ``metric`` maps a [rows, N] matrix to N
    scores (higher is better). Ties: the first best column in-sample, average ranks out of
    sample, and λ = 0 (the median) counts as overfit."""
    from scipy.stats import rankdata

    pnl = np.asarray(pnl, dtype=float)
    if pnl.ndim != 2 or pnl.shape[1] < 2:
        raise ValueError("pnl must be a [T, N] matrix with at least two configurations")
    if n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"n_blocks must be even and at least 2, not {n_blocks}")
    n_rows, n_configs = pnl.shape
    if n_rows < 2 * n_blocks:
        raise InsufficientDataError(f"{n_rows} rows are too few for {n_blocks} CSCV blocks")
    if not np.all(np.isfinite(pnl)):
        raise ValueError("pnl holds NaN or inf")
    block_of_row = np.repeat(np.arange(n_blocks), [len(b) for b in np.array_split(np.arange(n_rows), n_blocks)])
    combos = list(itertools.combinations(range(n_blocks), n_blocks // 2))
    logits, ranks, best, is_m, oos_m = (np.empty(len(combos)) for _ in range(5))
    for c, combo in enumerate(combos):
        in_sample = np.isin(block_of_row, combo)
        r_is, r_oos = metric(pnl[in_sample]), metric(pnl[~in_sample])
        star = int(np.argmax(r_is))
        omega = rankdata(r_oos)[star] / (n_configs + 1)
        logits[c], ranks[c], best[c] = math.log(omega / (1 - omega)), omega, star
        is_m[c], oos_m[c] = r_is[star], r_oos[star]
    return CSCVResult(pbo=float(np.mean(logits <= 0)), logits=logits, oos_rank=ranks, is_best=best.astype(int),
                      is_metric=is_m, oos_metric=oos_m, n_blocks=n_blocks, n_configs=n_configs)


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def luck_twins(positions: np.ndarray, data: Dataset, folds: Sequence[Fold], cost_per_turnover: float,
               rng: np.random.Generator, per_column: int = 1) -> np.ndarray:
    """Pnl [T, K * per_column]: each column of ``positions`` [T, K] circularly shifted in time,
    ``per_column`` times, by offsets in [T/4, 3T/4] (one stratum of that range per twin, so no two
    twins share a shift): same exposure, turnover and costs, no alignment with the returns."""
    n_rows, n_columns = positions.shape
    n_twins = n_columns * per_column
    low, width = n_rows // 4, n_rows - 2 * (n_rows // 4)
    offsets = low + ((rng.permutation(n_twins) + rng.uniform(size=n_twins)) * width / n_twins).astype(int)
    return np.column_stack([folds_pnl(np.roll(positions[:, t % n_columns], int(d)), data, folds, cost_per_turnover)
                            for t, d in enumerate(offsets)])


@dataclass(frozen=True)
class VersionPBO:
    """PBO of a version's selection: gated over the trials plus luck twins (pooled over
    ``len(draws)`` independent draws of the twins), diagnostic over the trials alone."""

    n_candidates: int
    n_fits: int                       # refits made (a reused WalkForward saves its folds)
    draws: tuple[CSCVResult, ...]     # trials + their luck twins, one CSCV per draw of the twins
    trials_only: CSCVResult | None    # the trials alone (None with a single candidate)
    pnl: np.ndarray = field(compare=False, repr=False)        # [T, n_candidates] walk-forward OOS pnl of the trials
    positions: np.ndarray = field(compare=False, repr=False)  # [T, n_candidates] their positions

    @property
    def pbo(self) -> float:
        """The gated PBO: the share of λ <= 0 over every split of every draw (the draws' mean PBO)."""
        return float(np.mean([d.pbo for d in self.draws]))

    @property
    def median_oos_rank(self) -> float:
        return float(np.median(np.concatenate([d.oos_rank for d in self.draws])))

    @property
    def prob_oos_loss(self) -> float:
        return float(np.mean(np.concatenate([d.oos_metric for d in self.draws]) < 0))

    def passes(self, max_pbo: float = PBO_MAX) -> bool:
        return self.pbo <= max_pbo

    def as_metrics(self) -> dict[str, float]:
        """``pbo`` (gated) with ``pbo_draw_min|max`` over the twins' draws, ``pbo_median_oos_rank``,
        ``pbo_prob_oos_loss`` (the IS best loses OOS), ``pbo_trials`` and ``pbo_trials_median_oos_rank``
        (the trials alone; NaN with one candidate), ``pbo_n_candidates``, ``pbo_n_combinations``."""
        trials = self.trials_only
        per_draw = [d.pbo for d in self.draws]
        return {"pbo": self.pbo, "pbo_draw_min": float(min(per_draw)), "pbo_draw_max": float(max(per_draw)),
                "pbo_median_oos_rank": self.median_oos_rank, "pbo_prob_oos_loss": self.prob_oos_loss,
                "pbo_trials": trials.pbo if trials else float("nan"),
                "pbo_trials_median_oos_rank": trials.median_oos_rank if trials else float("nan"),
                "pbo_n_candidates": float(self.n_candidates),
                "pbo_n_combinations": float(self.draws[0].n_combinations)}


def pbo_for_version(spec: ModelSpec, candidate_params: list[dict[str, Any]], data: Dataset, *,
                    cost_per_turnover: float, n_blocks: int = 8, n_jobs: int = 1, n_folds: int = 3,
                    max_candidates: int = MAX_CANDIDATES, reuse: WalkForward | None = None,
                    twins_per_candidate: int = TWINS_PER_CANDIDATE, twin_draws: int = TWIN_DRAWS,
                    seed: int = 0) -> VersionPBO:
    """CSCV over each candidate's walk-forward out-of-sample pnl on the holdout (the folds of
    :func:`walk_forward`), plus ``twins_per_candidate`` luck twins of each (see the module docstring).

    ``candidate_params``: the version's completed Optuna trials, best first (as
    :func:`trial_params_of` returns them); duplicates are dropped and the first
    ``max_candidates`` kept. ``reuse``: a :class:`WalkForward` of one of the candidates on the
    same folds (the version's own), whose fits are not redone. ``seed`` draws the twins' shifts
    (``twin_draws`` independent sets of twins; no fits)."""
    if not is_direction_like(spec):
        raise ValueError(f"{spec.name}: PBO needs a traded signal (a direction-like classifier)")
    unique: dict[str, dict[str, Any]] = {}
    for params in candidate_params:
        unique.setdefault(_key(params), dict(params))
    candidates = list(unique.values())[:max_candidates]
    if not candidates:
        raise ValueError("no candidate parameters")
    folds = walk_forward_folds(data, n_folds=n_folds, purge=spec.horizon, max_train_rows=spec.max_train_rows)
    reused = reuse is not None and reuse.position is not None and reuse.folds == folds
    known = {_key(reuse.params): reuse.position} if reused else {}
    work = [(i, fold) for i, params in enumerate(candidates) if _key(params) not in known for fold in folds]

    def fit(item: tuple[int, Fold]) -> np.ndarray:
        i, fold = item
        return signal_position(spec, fold_output(spec, candidates[i], data, fold))

    fitted = iter(ordered_map(fit, work, spec.fit_threads(n_jobs, data.X.nbytes)))
    positions = []
    for params in candidates:
        key = _key(params)
        positions.append(known[key] if key in known else np.concatenate([next(fitted) for _ in folds]))
    position_matrix = np.column_stack(positions)
    pnl = np.column_stack([folds_pnl(p, data, folds, cost_per_turnover) for p in positions])
    rng = np.random.default_rng(seed)
    draws = tuple(cscv_pbo(np.hstack([pnl, luck_twins(position_matrix, data, folds, cost_per_turnover, rng,
                                                        twins_per_candidate)]), n_blocks)
                  for _ in range(twin_draws))
    return VersionPBO(n_candidates=len(candidates), n_fits=len(work), draws=draws,
                      trials_only=cscv_pbo(pnl, n_blocks) if len(candidates) >= 2 else None, pnl=pnl,
                      positions=position_matrix)


def trial_params_tag(completed_params: list[dict[str, Any]], max_chars: int = MLFLOW_TAG_MAX_CHARS) -> str:
    """JSON list of the completed trials' parameters, best first, cut from the end to fit an MLflow tag."""
    params = list(completed_params)
    text = json.dumps(params, sort_keys=True)
    while len(text) > max_chars and len(params) > 1:
        params.pop()
        text = json.dumps(params, sort_keys=True)
    return text


def trial_params_of(run_tags: dict[str, str]) -> list[dict[str, Any]]:
    """The completed Optuna trials' parameters of a train run (its ``trial_params`` tag), best first.

    Runs trained before the tag existed fall back to ``[best_params]``; no tag at all gives ``[]``."""
    if TRIAL_PARAMS_TAG in run_tags:
        return [dict(p) for p in json.loads(run_tags[TRIAL_PARAMS_TAG])]
    if "best_params" in run_tags:
        return [json.loads(run_tags["best_params"])]
    return []

