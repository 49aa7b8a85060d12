"""Walk-forward folds and PBO (pipelines.evaluation.walkforward) on markets generated here, with seeds.

``python tests/pipelines/evaluation/test_walkforward.py`` reruns the measurement quoted in the module's
docstring (random walk vs planted AR(1), several seeds, and the cost per version).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.signal import lfilter

from models.cv import PurgedWalkForward, holdout_split
from models.catalog import spec_by_name
from pipelines.evaluation.datasets import Dataset
from pipelines.evaluation.metrics import periods_per_year, trading_metrics
from pipelines.evaluation.pbo import PBO_MAX, cscv_pbo, pbo_for_version, trial_params_of, trial_params_tag
from pipelines.evaluation.walkforward import position_pnl, walk_forward, walk_forward_folds

COST = 2e-4  # commission 1 bp + spread 1 bp per unit turnover, the settings' defaults
DIRECTION = spec_by_name("direction_h1")
SMALL = {"n_estimators": 50, "learning_rate": 0.1, "num_leaves": 7, "min_child_samples": 50,
         "colsample_bytree": 1.0, "reg_lambda": 1.0, "random_state": 0}


def market_dataset(seed: int, *, n_rows: int = 3000, phi: float = 0.0, horizon: int = 1, n_noise: int = 0,
                   sigma: float = 1e-3, holdout_fraction: float = 0.2, max_train_rows: int | None = None,
                   events: np.ndarray | None = None) -> Dataset:
    """1-minute closes with AR(1) returns (``phi`` 0: an i.i.d. random walk); features are the
    last 1..5 returns (plus ``n_noise`` columns of noise); label: close[t+h] > close[t]."""
    rng = np.random.default_rng(seed)
    n_bars = n_rows + 5 + horizon
    shocks = rng.standard_normal(n_bars + 200) * sigma * math.sqrt(1 - phi ** 2)
    returns = lfilter([1.0], [1.0, -phi], shocks)[200:]  # stationary: the burn-in is dropped
    close = 100 * np.cumprod(1 + returns)
    t = np.arange(4, 4 + n_rows)  # bar t sees returns[t-4 .. t]
    lags = np.column_stack([returns[t - k] for k in range(5)])
    X = np.hstack([lags, rng.standard_normal((n_rows, n_noise))]).astype(np.float32)
    y = (close[t + horizon] > close[t]).astype(np.int64) if events is None else np.asarray(events, dtype=np.int64)
    index = pd.date_range("2024-01-01", periods=n_rows, freq="1min")
    train_idx, holdout_idx = holdout_split(n_rows, holdout_fraction, purge=horizon)
    if max_train_rows:
        train_idx = train_idx[-max_train_rows:]
    names = [f"ret_lag{k}" for k in range(1, 6)] + [f"noise{k}" for k in range(n_noise)]
    return Dataset(X=X, y=y, index=index, feature_names=names, next_return=returns[t + 1], fingerprint=f"seed{seed}",
                   train_idx=train_idx, holdout_idx=holdout_idx)


# -- folds -------------------------------------------------------------------------------

@pytest.mark.parametrize("horizon,cap", [(1, None), (5, 1000)])
def test_folds_cut_the_holdout_and_train_only_on_rows_a_horizon_before_the_block(horizon, cap):
    data = market_dataset(0, horizon=horizon, max_train_rows=cap)
    folds = walk_forward_folds(data, n_folds=3, purge=horizon, max_train_rows=cap)
    assert [f.number for f in folds] == [1, 2, 3]
    np.testing.assert_array_equal(np.concatenate([f.test_rows for f in folds]), data.holdout_idx)
    np.testing.assert_array_equal(folds[0].train_rows, data.train_idx)  # fold 1 is the version's own window
    for fold in folds:
        assert fold.train_stop == fold.test_start - horizon  # purge: the last label ends before the block
        assert fold.train_stop - fold.train_start == (min(cap, fold.train_stop) if cap else fold.train_stop)
        assert fold.test_first == data.index[fold.test_start] and fold.train_last == data.index[fold.train_stop - 1]
    assert folds[2].train_stop > folds[1].train_stop > folds[0].train_stop  # expanding (or sliding when capped)
    with pytest.raises(ValueError):
        walk_forward_folds(data, n_folds=100, purge=horizon)


# -- walk-forward ------------------------------------------------------------------------

def test_walk_forward_finds_a_planted_signal_and_not_a_random_walk():
    bars_per_year = 365.25 * 1440
    planted = walk_forward(DIRECTION, SMALL, market_dataset(1, phi=0.6), cost_per_turnover=COST,
                           bars_per_year=bars_per_year)
    noise = walk_forward(DIRECTION, SMALL, market_dataset(1, phi=0.0), cost_per_turnover=COST,
                         bars_per_year=bars_per_year)
    assert planted.n_folds == noise.n_folds == 3
    assert min(planted.scores) > 0.68 and min(planted.sharpes) > 0  # sign accuracy ~0.70, after costs
    assert abs(noise.metric_mean - 0.5) < 0.05 and noise.sharpe_mean < 0  # costs, nothing to earn
    metrics = planted.as_metrics()
    assert metrics["wf_n_folds"] == 3.0 and metrics["wf_auc_fold2"] == planted.scores[1]
    assert metrics["wf_auc_mean"] == pytest.approx(np.mean(planted.scores))
    assert metrics["wf_auc_std"] == pytest.approx(np.std(planted.scores, ddof=1))
    assert metrics["wf_sharpe_mean"] == pytest.approx(np.mean(planted.sharpes))
    assert metrics["wf_auc_worst"] == min(planted.scores)
    assert all(isinstance(v, float) for v in metrics.values())


def test_fold_pnl_and_sharpe_follow_the_validate_steps_trading_rule():
    data = market_dataset(2, phi=0.6, horizon=5)
    spec = spec_by_name("direction_h5")
    wf = walk_forward(spec, SMALL, data, cost_per_turnover=COST, bars_per_year=1000.0)
    for fold, sharpe in zip(wf.folds, wf.sharpes):
        rows = slice(fold.test_start - wf.folds[0].test_start, fold.test_stop - wf.folds[0].test_start)
        returns = data.next_return[fold.test_start:fold.test_stop]
        expected = trading_metrics(wf.position[rows], returns, cost_per_turnover=COST, bars_per_year=1000.0)
        assert sharpe == expected["sharpe"]
        np.testing.assert_allclose(wf.pnl[rows], position_pnl(wf.position[rows], returns, COST))
    # Held for 5 bars with weight 1/5: positions are multiples of 1/5, and some are partial.
    np.testing.assert_allclose(wf.position * 5, np.round(wf.position * 5), atol=1e-12)
    assert np.any(np.abs(wf.position) < 0.99) and np.max(np.abs(wf.position)) == 1.0


def test_fold_one_refits_the_versions_own_model_and_threads_change_nothing():
    from models.outputs import build_estimator, fit_estimator

    data = market_dataset(3, phi=0.3)
    one = walk_forward(DIRECTION, SMALL, data, cost_per_turnover=COST, bars_per_year=1000.0, n_jobs=1)
    two = walk_forward(DIRECTION, SMALL, data, cost_per_turnover=COST, bars_per_year=1000.0, n_jobs=2)
    assert one == two and np.array_equal(one.pnl, two.pnl)
    own = fit_estimator(DIRECTION, build_estimator(DIRECTION, SMALL, data.feature_names),
                        data.X[data.train_idx], data.y[data.train_idx])
    block = one.folds[0].test_rows
    from models.metrics import primary_score
    assert one.scores[0] == primary_score(DIRECTION, data.y[block], own.predict_proba(data.X[block]))


def test_walk_forward_scores_a_regressor_by_its_loss():
    spec = spec_by_name("volatility_h5")
    data = market_dataset(4, horizon=5)
    realized = np.sqrt(pd.Series(data.next_return ** 2).rolling(5).mean().shift(-4).bfill().ffill().to_numpy())
    data = replace(data, y=realized)
    wf = walk_forward(spec, SMALL, data, cost_per_turnover=COST, bars_per_year=1000.0)
    assert wf.sharpes is None and "wf_sharpe_mean" not in wf.as_metrics()
    assert wf.metric == "qlike" and all(np.isfinite(wf.scores)) and all(s > 0 for s in wf.scores)
    assert wf.metric_worst == max(wf.scores)  # a loss: the worst fold is the highest


def test_anomaly_fold_without_events_is_nan_and_left_out_of_the_mean():
    spec = spec_by_name("anomaly_iforest")
    n_rows = 3000
    events = np.zeros(n_rows, dtype=np.int64)
    probe = market_dataset(5, n_rows=n_rows)
    folds = walk_forward_folds(probe, n_folds=3, purge=0)
    # Events (bars with a return shock) in folds 1 and 3 only; fold 2's block holds none.
    shocked = np.concatenate([np.arange(folds[0].test_start + 20, folds[0].test_start + 40),
                              np.arange(folds[2].test_start + 20, folds[2].test_start + 40)])
    events[shocked] = 1
    data = market_dataset(5, n_rows=n_rows, events=events)
    X = data.X.copy()
    X[shocked, 0] += 0.02  # 20 sigma moves: an isolation forest should see them
    data = replace(data, X=X)
    params = {"n_estimators": 50, "max_samples": 128, "max_features": 1.0, "random_state": 0}
    wf = walk_forward(spec, params, data, cost_per_turnover=COST, bars_per_year=1000.0)
    assert np.isnan(wf.scores[1]) and wf.n_scored == 2
    assert wf.scores[0] > 0.8 and wf.scores[2] > 0.8  # the forest sees the shocks; coin flip is 0.5
    metrics = wf.as_metrics()
    assert metrics["wf_event_auc_mean"] == pytest.approx((wf.scores[0] + wf.scores[2]) / 2)
    assert np.isnan(metrics["wf_event_auc_fold2"]) and metrics["wf_n_scored"] == 2.0


# -- CSCV --------------------------------------------------------------------------------

def _brute_force_pbo(pnl: np.ndarray, n_blocks: int) -> tuple[float, np.ndarray]:
    """A plain re-implementation: loops and sorting, no vectorized metric, no scipy."""
    from itertools import combinations

    blocks = np.array_split(pnl, n_blocks)
    logits = []
    for combo in combinations(range(n_blocks), n_blocks // 2):
        is_rows = np.vstack([blocks[b] for b in combo])
        oos_rows = np.vstack([blocks[b] for b in range(n_blocks) if b not in combo])
        sr_is = [col.mean() / col.std() for col in is_rows.T]
        sr_oos = [col.mean() / col.std() for col in oos_rows.T]
        star = int(np.argmax(sr_is))
        rank = 1 + sum(v < sr_oos[star] for v in sr_oos)  # no ties in continuous noise
        omega = rank / (len(sr_oos) + 1)
        logits.append(math.log(omega / (1 - omega)))
    logits = np.asarray(logits)
    return float(np.mean(logits <= 0)), logits


def test_cscv_uses_every_half_once_and_matches_a_brute_force_count():
    pnl = np.random.default_rng(0).standard_normal((403, 5))  # 403 rows: blocks of unequal size
    for n_blocks in (4, 8):
        result = cscv_pbo(pnl, n_blocks)
        assert result.n_combinations == math.comb(n_blocks, n_blocks // 2)
        pbo, logits = _brute_force_pbo(pnl, n_blocks)
        assert result.pbo == pbo
        np.testing.assert_allclose(result.logits, logits)
    assert 0 < result.median_oos_rank < 1
    with pytest.raises(ValueError):
        cscv_pbo(pnl, 5)


def test_pbo_of_equally_skilled_noise_strategies_is_about_a_half():
    pbos = [cscv_pbo(np.random.default_rng(seed).standard_normal((1000, 10)) * 0.01 + 0.001, 8).pbo
            for seed in range(20)]
    assert 0.38 < np.mean(pbos) < 0.62
    assert np.std(pbos) > 0.05  # a single matrix's PBO is a noisy number


def test_pbo_of_one_true_edge_among_noise_is_about_zero():
    rng = np.random.default_rng(1)
    pnl = rng.standard_normal((1000, 10))
    pnl[:, 3] += 0.3  # a Sharpe of 0.3 per bar; the others have none
    result = cscv_pbo(pnl, 8)
    assert result.pbo == 0.0 and np.all(result.is_best == 3) and result.prob_oos_loss == 0.0
    assert result.median_oos_rank == 10 / 11


def test_pbo_is_one_when_the_in_sample_best_is_out_of_sample_worst_by_construction():
    # Each strategy's block means sum to zero over the blocks, and every block has the same
    # within-block ±1 pattern: whatever is good in one half is equally bad in the other.
    rng = np.random.default_rng(2)
    n_blocks, rows, n_configs = 8, 100, 6
    means = rng.normal(0, 0.05, (n_blocks, n_configs))
    means -= means.mean(axis=0)
    wiggle = np.where(np.arange(rows) % 2, 1.0, -1.0)[:, None]
    pnl = np.vstack([m + wiggle for m in means])
    assert cscv_pbo(pnl, n_blocks, metric=lambda p: p.mean(axis=0)).pbo == 1.0
    result = cscv_pbo(pnl, n_blocks)
    assert result.pbo >= 0.95 and result.median_oos_rank == 1 / (n_configs + 1)


def test_indistinguishable_strategies_count_as_overfit():
    # A constant position is its own luck twin: every split ties at the median (λ = 0).
    column = np.random.default_rng(3).standard_normal((400, 1))
    result = cscv_pbo(np.tile(column, (1, 4)), 8)
    assert result.pbo == 1.0 and np.all(result.logits == 0.0)


# -- PBO of a version --------------------------------------------------------------------

CANDIDATES = [SMALL, {**SMALL, "num_leaves": 15}, {**SMALL, "n_estimators": 100, "learning_rate": 0.05},
              {**SMALL, "min_child_samples": 200}]


def test_pbo_passes_a_planted_signal_that_the_trials_alone_cannot_tell():
    data = market_dataset(6, phi=0.6)
    own = walk_forward(DIRECTION, CANDIDATES[0], data, cost_per_turnover=COST, bars_per_year=1000.0)
    result = pbo_for_version(DIRECTION, CANDIDATES, data, cost_per_turnover=COST, reuse=own)
    assert result.pbo <= 0.05 and result.passes(PBO_MAX)
    # Every trial carries the same signal: choosing among them alone is luck.
    assert 0.15 < result.trials_only.pbo < 0.85
    np.testing.assert_array_equal(result.pnl[:, 0], own.pnl)
    metrics = result.as_metrics()
    assert metrics["pbo"] == result.pbo and metrics["pbo_n_candidates"] == 4.0 and metrics["pbo_n_combinations"] == 70


def test_pbo_reuses_the_versions_walk_forward_fits():
    calls = []

    def counting_build(params):
        calls.append(params)
        return DIRECTION.build(params)

    spec = replace(DIRECTION, build=counting_build)
    data = market_dataset(7, phi=0.6, n_rows=2000)
    own = walk_forward(spec, CANDIDATES[1], data, cost_per_turnover=COST, bars_per_year=1000.0)
    assert len(calls) == 3
    reused = pbo_for_version(spec, CANDIDATES + [CANDIDATES[2]], data, cost_per_turnover=COST, reuse=own)
    assert len(calls) == 3 + 9 and reused.n_fits == 9 and reused.n_candidates == 4  # duplicate dropped
    fresh = pbo_for_version(spec, CANDIDATES, data, cost_per_turnover=COST, n_jobs=2)
    assert fresh.n_fits == 12 and np.array_equal(fresh.pnl, reused.pnl) and fresh.pbo == reused.pbo


def test_pbo_of_a_random_walk_fails_the_gate_even_where_one_draw_of_twins_would_pass():
    for seed in (8, 11):
        result = pbo_for_version(DIRECTION, CANDIDATES, market_dataset(seed, phi=0.0), cost_per_turnover=COST)
        metrics = result.as_metrics()
        assert result.pbo > PBO_MAX and not result.passes() and len(result.draws) == 5
    assert metrics["pbo_draw_min"] < PBO_MAX  # seed 11: a single draw of twins would have passed
    with pytest.raises(ValueError):
        pbo_for_version(spec_by_name("volatility_h5"), CANDIDATES, market_dataset(8), cost_per_turnover=COST)


def test_luck_twins_keep_exposure_and_costs_but_lose_the_timing():
    from pipelines.evaluation.walkforward import folds_pnl
    from pipelines.evaluation.pbo import luck_twins

    data = market_dataset(10, phi=0.6)
    own = walk_forward(DIRECTION, SMALL, data, cost_per_turnover=COST, bars_per_year=1000.0)
    positions = own.position[:, None]
    twins = luck_twins(positions, data, own.folds, COST, np.random.default_rng(0), per_column=3)
    assert twins.shape == (len(data.holdout_idx), 3)
    # On a market that never moves, pnl is minus the costs alone.
    still = replace(data, next_return=np.zeros_like(data.next_return))
    own_costs = -folds_pnl(own.position, still, own.folds, COST)
    twin_costs = -luck_twins(positions, still, own.folds, COST, np.random.default_rng(0), per_column=3)
    # Same turnover up to the wrap-around and the fold starts (at most 2 units each).
    assert np.all(np.abs(twin_costs.sum(axis=0) - own_costs.sum()) <= COST * 2 * (1 + len(own.folds)))
    own_gross, twin_gross = own.pnl + own_costs, twins + twin_costs
    assert own_gross.mean() > 0.3 * np.abs(data.next_return[data.holdout_idx]).mean()  # the planted timing pays
    assert np.all(np.abs(twin_gross.mean(axis=0)) < 0.2 * own_gross.mean())  # shifted, it earns about nothing


# -- trial parameters as the train step records them -------------------------------------

def test_tune_returns_completed_trials_best_first_and_the_tag_round_trips():
    from models.search import tune

    data = market_dataset(9, phi=0.6, n_rows=1500)
    X, y = data.X[data.train_idx], data.y[data.train_idx]
    search = tune(DIRECTION, X, y, n_trials=5, cv=PurgedWalkForward(n_splits=3, purge=1), seed=42)
    completed = [t for t in search.trials if t["state"] == "COMPLETE"]
    assert len(search.completed_params) == len(completed) >= 3
    assert search.completed_params[0] == search.best_params
    assert all(p["random_state"] == 42 for p in search.completed_params)
    values = sorted((t["value"] for t in completed), reverse=True)
    assert values[0] == search.best_cv_score
    tags = {"trial_params": trial_params_tag(search.completed_params), "best_params": json.dumps(search.best_params)}
    assert trial_params_of(tags) == search.completed_params
    assert trial_params_of({"best_params": tags["best_params"]}) == [search.best_params]
    assert trial_params_of({}) == []
    short = trial_params_tag(search.completed_params, max_chars=300)
    assert len(short) <= 300 and json.loads(short) == search.completed_params[:len(json.loads(short))]


# -- the measurement quoted in the module docstring --------------------------------------

def _measure(phi: float, seeds: range, spec_name: str = "direction_h1", n_rows: int = 6250, n_trials: int = 6) -> None:
    """direction_h1 as the train and validate steps would run it, per seed: the gated PBO, single
    draws of 1, 3 and 6 twins per trial (twin seeds 0-2), PBO of the trials alone, walk-forward
    AUC and Sharpe, and the seconds of walk_forward + pbo_for_version."""
    import time

    from models.search import tune
    from pipelines.evaluation.walkforward import folds_pnl
    from pipelines.evaluation.pbo import luck_twins

    spec = spec_by_name(spec_name)
    rows = []
    for seed in seeds:
        data = market_dataset(seed, n_rows=n_rows, phi=phi, horizon=spec.horizon)
        search = tune(spec, data.X[data.train_idx], data.y[data.train_idx], n_trials=n_trials,
                      cv=PurgedWalkForward(n_splits=4, purge=spec.horizon), seed=42, n_jobs=2)
        start = time.perf_counter()
        bars = periods_per_year(data.index[data.holdout_idx])
        own = walk_forward(spec, search.best_params, data, cost_per_turnover=COST, bars_per_year=bars, n_jobs=2)
        result = pbo_for_version(spec, search.completed_params, data, cost_per_turnover=COST, reuse=own, n_jobs=2)
        seconds = time.perf_counter() - start
        by_twins = {}
        for per in (1, 3, 6):
            by_twins[per] = [cscv_pbo(np.hstack([result.pnl, luck_twins(result.positions, data, own.folds, COST,
                                                                        np.random.default_rng(s), per)])).pbo
                             for s in range(3)]
        assert np.allclose(folds_pnl(own.position, data, own.folds, COST), own.pnl)
        trials = result.trials_only.pbo if result.trials_only else float("nan")
        rows.append([*by_twins[1], *by_twins[3], trials, own.metric_mean, own.sharpe_mean, seconds, *by_twins[6],
                     result.pbo])
        print(f"{spec_name} phi={phi} seed={seed} K={result.n_candidates} pbo(1 twin)={np.round(by_twins[1], 3)} "
              f"pbo(3 twins)={np.round(by_twins[3], 3)} gated pbo={result.pbo:.3f} pbo_trials={trials:.3f} "
              f"wf_auc={own.metric_mean:.3f} wf_sharpe={own.sharpe_mean:.1f} {seconds:.1f}s", flush=True)
    arr = np.array(rows)
    one, three, trials, six = arr[:, 0:3].ravel(), arr[:, 3:6].ravel(), arr[:, 6], arr[:, 10:13].ravel()
    gated = arr[:, 13]
    print(f"{spec_name} phi={phi} ({len(rows)} seeds): auc {arr[:, 7].mean():.3f}, sharpe {arr[:, 8].mean():.0f}, "
          f"{arr[:, 9].mean():.1f} s per version; GATED pbo (3 twins x {len(result.draws)} draws) mean "
          f"{gated.mean():.3f} median {np.median(gated):.3f} [{gated.min():.3f}, {gated.max():.3f}] "
          f"pass<=0.1 {np.mean(gated <= 0.1):.0%} ({np.sum(gated <= 0.1)}/{len(gated)}) "
          f"<=0.2 {np.mean(gated <= 0.2):.0%}; single draws: "
          f"pbo 1 twin mean {one.mean():.3f} [{one.min():.3f}, {one.max():.3f}] pass<=0.2 {np.mean(one <= 0.2):.0%}; "
          f"3 twins mean {three.mean():.3f} [{three.min():.3f}, {three.max():.3f}] "
          f"pass<=0.1 {np.mean(three <= 0.1):.0%} <=0.2 {np.mean(three <= 0.2):.0%} <=0.3 {np.mean(three <= 0.3):.0%}; "
          f"6 twins mean {six.mean():.3f} pass<=0.1 {np.mean(six <= 0.1):.0%} <=0.2 {np.mean(six <= 0.2):.0%}; "
          f"trials alone mean {np.nanmean(trials):.3f} [{np.nanmin(trials):.3f}, {np.nanmax(trials):.3f}] "
          f"pass<=0.5 {np.mean(trials <= 0.5):.0%}", flush=True)


if __name__ == "__main__":
    # python tests/pipelines/evaluation/test_walkforward.py PHI FIRST_SEED STOP_SEED [SPEC]
    _measure(float(sys.argv[1]), range(int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else range(10),
             *sys.argv[4:5])
