"""The run-scale statistics: holdout permutation screen, Benjamini–Hochberg, deflated Sharpe."""

from __future__ import annotations

import numpy as np
import pytest

from models.catalog import spec_by_name
from pipelines.evaluation.metrics import (
    benjamini_hochberg,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    holdout_permutation_test,
    sharpe_statistics,
    strategy_pnl,
)

SPEC = spec_by_name("direction_h1")


def test_benjamini_hochberg_matches_the_step_up_rule():
    p = np.array([0.01, 0.04, 0.03, 0.5, 0.001])
    q = benjamini_hochberg(p)
    # sorted: 0.001, 0.01, 0.03, 0.04, 0.5 -> p*m/rank = 0.005, 0.025, 0.05, 0.05, 0.5
    np.testing.assert_allclose(q, [0.025, 0.05, 0.05, 0.5, 0.005])
    assert (q >= p).all() and benjamini_hochberg(np.array([])).size == 0


def test_benjamini_hochberg_controls_false_discoveries_on_pure_nulls():
    rng = np.random.default_rng(0)
    runs_with_a_discovery = sum((benjamini_hochberg(rng.uniform(size=28)) <= 0.05).any() for _ in range(2000))
    assert runs_with_a_discovery / 2000 < 0.065  # at most the FDR level when every null is true


def test_the_holdout_screen_resolves_strong_evidence_and_stops_early_on_none():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    strong = np.column_stack([1 - (0.3 + 0.4 * y), 0.3 + 0.4 * y]) + rng.normal(0, 0.2, (2000, 1)) * [[1, -1]]
    result = holdout_permutation_test(SPEC, y, strong, n=999, block=20, rng=rng, stop_after=3)
    assert len(result.null_scores) == 999 and result.p_value == pytest.approx(0.001)
    noise = rng.uniform(size=(2000, 1))
    useless = holdout_permutation_test(SPEC, y, np.column_stack([1 - noise, noise]), n=999, block=20, rng=rng,
                                       stop_after=3)
    assert len(useless.null_scores) < 200 and useless.p_value > 0.01


def test_deflated_sharpe_falls_with_the_number_of_trials():
    rng = np.random.default_rng(2)
    pnl = rng.normal(0.06, 1.0, 4000)  # drawn per-bar Sharpe 0.046: t-statistic about 2.9
    stats = sharpe_statistics(pnl)
    assert stats["pnl_n"] == 4000 and abs(stats["pnl_kurtosis"] - 3) < 0.3
    args = (stats["sr_per_bar"], 4000, stats["pnl_skew"], stats["pnl_kurtosis"])
    one, many = deflated_sharpe_ratio(*args, n_trials=1), deflated_sharpe_ratio(*args, n_trials=200)
    assert one > 0.99 and 0.3 < many < 0.8  # strong alone, not after 200 tries
    assert expected_max_sharpe(200, 1 / 4000) > expected_max_sharpe(10, 1 / 4000) > 0
    luck = sharpe_statistics(rng.normal(0.0, 1.0, 4000))
    assert deflated_sharpe_ratio(luck["sr_per_bar"], 4000, luck["pnl_skew"], luck["pnl_kurtosis"], 36) < 0.95


def test_strategy_pnl_charges_costs_on_each_change_of_position():
    pnl = strategy_pnl(np.array([1.0, 1.0, -1.0, 0.0]), np.array([0.01, 0.02, -0.01, 0.05]), 0.001)
    np.testing.assert_allclose(pnl, [0.01 - 0.001, 0.02, 0.01 - 0.002, -0.001])


@pytest.mark.parametrize("spec_name", ["direction_h1", "direction3_h5", "regime_h20", "volatility_h5", "risk_h20",
                                       "anomaly_iforest"])
def test_the_screens_fast_scorer_equals_the_primary_metric(spec_name):
    from models.metrics import primary_score
    from pipelines.evaluation.metrics import permutation_scorer

    spec = spec_by_name(spec_name)
    rng = np.random.default_rng(3)
    n = 600
    if spec.task == "classifier":
        k = len(spec.class_names)
        y = rng.integers(0, k, n)
        output = rng.dirichlet(np.ones(k), n)
        output[:, 0] = np.round(output[:, 0], 1)  # ties, scored as halves by both
        output /= output.sum(axis=1, keepdims=True)
    elif spec.task == "anomaly":
        y, output = (rng.uniform(size=n) < 0.05).astype(int), np.round(rng.uniform(size=n), 2)
    else:
        y, output = rng.uniform(0.5, 2.0, n), rng.uniform(0.5, 2.0, n)
    score = permutation_scorer(spec, output)
    for _ in range(5):
        permuted = rng.permutation(y)
        assert score(permuted) == pytest.approx(primary_score(spec, permuted, output), abs=1e-12)
