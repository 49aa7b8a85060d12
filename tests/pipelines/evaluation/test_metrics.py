import numpy as np
import pytest

from pipelines.evaluation.metrics import (
    NullTest,
    block_permutation,
    classification_metrics,
    trading_metrics,
    wilson_interval,
)


def test_wilson_interval_brackets_the_proportion():
    low, high = wilson_interval(55, 100)
    assert low < 0.55 < high
    assert high - low == pytest.approx(0.19, abs=0.01)


def test_classification_metrics_on_a_perfect_and_a_useless_model():
    y = np.array([0, 1] * 50)
    perfect = np.column_stack([1 - y, y]).astype(float)
    m = classification_metrics(y, perfect)
    assert m["accuracy"] == 1.0 and m["auc"] == 1.0 and m["n_test"] == 100
    flat = np.full((100, 2), 0.5)
    assert classification_metrics(y, flat)["auc"] == 0.5


def test_trading_metrics_charge_costs_on_every_change_of_position():
    returns = np.full(10, 0.01)
    always_long = trading_metrics(np.ones(10), returns, cost_per_turnover=0.001, bars_per_year=252)
    assert always_long["n_trades"] == 1
    assert always_long["total_return"] == pytest.approx(1.01 ** 9 * (1.01 - 0.001) - 1, rel=1e-9)
    flipping = trading_metrics(np.array([1, -1] * 5), returns, cost_per_turnover=0.001, bars_per_year=252)
    assert flipping["n_trades"] == 10
    assert flipping["max_drawdown"] > 0
    assert flipping["total_return"] < 0


def test_classifier_position_is_flat_when_neutral_is_likeliest():
    from pipelines.evaluation.metrics import classifier_position

    two_class = np.array([[0.4, 0.6], [0.7, 0.3], [0.5, 0.5]])
    np.testing.assert_array_equal(classifier_position(two_class), [1.0, -1.0, 0.0])
    three_class = np.array([[0.2, 0.3, 0.5], [0.5, 0.3, 0.2], [0.3, 0.45, 0.25], [0.4, 0.4, 0.2]])
    np.testing.assert_array_equal(classifier_position(three_class), [1.0, -1.0, 0.0, 0.0])


def test_a_horizon_signal_is_held_as_overlapping_positions():
    from pipelines.evaluation.metrics import hold_for_horizon

    signal = np.array([1, 1, -1, -1, -1, 1, 1, 1, 1, 1], dtype=float)
    np.testing.assert_array_equal(hold_for_horizon(signal, 1), signal)
    held = hold_for_horizon(signal, 3)
    expected = [1 / 3, 2 / 3, 1 / 3, -1 / 3, -1, -1 / 3, 1 / 3, 1, 1, 1]
    np.testing.assert_allclose(held, expected, atol=1e-15)
    # The position at t uses no later signal: changing the future leaves the past alone.
    changed = signal.copy()
    changed[6:] = -1
    np.testing.assert_array_equal(hold_for_horizon(changed, 3)[:6], held[:6])
    # Flipping every bar costs a 1-bar signal its full turnover; held for 5 bars, a fifth of it.
    flipping = np.array([1.0, -1.0] * 50)
    turnover_1 = np.abs(np.diff(hold_for_horizon(flipping, 1))).mean()
    turnover_5 = np.abs(np.diff(hold_for_horizon(flipping, 5)))[5:].mean()  # once all 5 are placed
    assert turnover_1 == 2.0 and turnover_5 == pytest.approx(0.4)


def test_block_permutation_keeps_values_and_blocks():
    y = np.arange(100)
    permuted = block_permutation(y, 10, np.random.default_rng(0))
    assert sorted(permuted) == list(y)
    assert not np.array_equal(permuted, y)
    assert all(np.all(np.diff(permuted[i:i + 10]) == 1) for i in range(0, 100, 10))


def test_null_p_value_counts_null_scores_at_least_as_good():
    assert NullTest(real=0.6, null_scores=[0.5] * 20).p_value == pytest.approx(1 / 21)
    assert NullTest(real=0.5, null_scores=[0.55] * 19 + [0.4]).p_value == pytest.approx(20 / 21)


def test_sequential_null_test_stops_at_the_hth_exceedance_with_the_besag_clifford_p_value():
    stopped = NullTest(real=0.55, null_scores=[0.5, 0.6, 0.56, 0.58], stop_after=3)
    assert stopped.stopped_early
    assert stopped.p_value == pytest.approx(3 / 4)
    running = NullTest(real=0.55, null_scores=[0.5] * 18 + [0.6, 0.6], stop_after=3)
    assert not running.stopped_early
    assert running.p_value == pytest.approx(3 / 21)


@pytest.mark.parametrize("stop_after", [1, 2, 3, 5])
def test_sequential_null_test_decides_as_the_full_test_does(stop_after):
    """Stopping early never changes p < 0.05 for n = 20 draws (lower is better here)."""
    rng = np.random.default_rng(stop_after)
    for _ in range(200):
        null = list(rng.normal(1.0, 0.1, 20))
        real = float(rng.normal(0.85, 0.1))
        full = NullTest(real=real, null_scores=null, greater_is_better=False)
        drawn = []
        sequential = NullTest(real=real, null_scores=drawn, greater_is_better=False, stop_after=stop_after)
        for score in null:
            drawn.append(score)
            if sequential.stopped_early:
                break
        assert (sequential.p_value < 0.05) == (full.p_value < 0.05)
        assert len(drawn) <= 20


def test_multi_output_regression_metrics_are_means_of_the_per_target_ones():
    """The primary metric (models.metrics.regressor_score) and the reported RMSE agree for [n, k] labels."""
    from models.metrics import regressor_score
    from pipelines.evaluation.metrics import regression_metrics

    rng = np.random.default_rng(1)
    y = rng.standard_normal((200, 3)) * np.array([1.0, 10.0, 0.1])
    pred = y + rng.standard_normal((200, 3)) * np.array([0.5, 2.0, 0.05])
    metrics = regression_metrics(y, pred)
    per_rmse = [np.sqrt(np.mean((y[:, k] - pred[:, k]) ** 2)) for k in range(3)]
    assert metrics["rmse"] == pytest.approx(np.mean(per_rmse))
    assert metrics["rmse"] == pytest.approx(regressor_score("rmse", y, pred))
    assert regressor_score("rmsle", y, pred) == pytest.approx(metrics["rmse"])
    assert metrics["n_test"] == 200.0
    with pytest.raises(ValueError, match="shape"):
        regressor_score("rmse", y, pred[:, :2])
