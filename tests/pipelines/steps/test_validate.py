"""Gates of pipelines.steps.validate: the null test only runs for versions that pass every other gate."""

from models.catalog import spec_by_name
from pipelines.steps.model_card import null_test_text
from pipelines.steps.validate import gate_results

SPEC = spec_by_name("direction_h1")
CHEAP = {"auc": 0.56, "baseline_majority_auc": 0.5, "baseline_coin_flip_auc": 0.5, "trading_max_drawdown": 0.1,
         "onnx_max_abs_diff": 1e-7, "latency_p50_us": 30.0}


def test_without_a_null_p_value_the_null_gate_is_not_evaluated():
    gates = gate_results(SPEC, CHEAP)
    assert "gate_null_test" not in gates and all(gates.values())
    assert gate_results(SPEC, {**CHEAP, "null_p_value": 0.048})["gate_null_test"]
    assert not gate_results(SPEC, {**CHEAP, "null_p_value": 0.095})["gate_null_test"]


def test_a_version_failing_its_baselines_fails_without_the_null_test_and_the_card_says_why():
    gates = gate_results(SPEC, {**CHEAP, "auc": 0.49})
    assert not gates["gate_beats_baselines"] and "gate_null_test" not in gates
    card = null_test_text({**CHEAP, "auc": 0.49, "null_screen_n": 41.0, "null_screen_p_value": 0.0976}, gates)
    assert "41 draws: p = 0.0976" in card and "not evaluated: the version already failed beats_baselines" in card
    ran = null_test_text({"null_screen_n": 999.0, "null_screen_p_value": 0.001, "null_n": 20.0, "null_mean": 0.5,
                           "null_q95": 0.52, "null_retrain_p_value": 0.048, "null_p_value": 0.048,
                           "null_stopped_early": 0.0}, gates)
    assert "999 draws: p = 0.0010" in ran and "retrained 20 times" in ran and "larger: 0.0480" in ran
    screened_out = null_test_text({"null_screen_n": 57.0, "null_screen_p_value": 0.07, "null_p_value": 0.07}, gates)
    assert "57 draws: p = 0.0700" in screened_out and "retrain test was not run" in screened_out


def test_a_trading_signal_must_beat_buy_and_hold_after_costs():
    traded = {**CHEAP, "trading_sharpe": 1.2, "baseline_buy_hold_sharpe": 0.8}
    assert gate_results(SPEC, traded)["gate_beats_buy_hold"]
    losing = gate_results(SPEC, {**traded, "trading_sharpe": -0.5})
    assert not losing["gate_beats_buy_hold"] and losing["gate_beats_baselines"]  # AUC alone is not enough
    assert "gate_null_test" not in losing  # and the null test is then not run
    assert "gate_beats_buy_hold" not in gate_results(SPEC, CHEAP)  # no trading metrics: no such gate


def test_a_version_below_its_fields_naive_rule_fails_that_gate_by_name():
    from pipelines.steps.validate import failed_gates

    beaten = gate_results(SPEC, {**CHEAP, "naive_last_return_sign_auc": 0.58})
    assert not beaten["gate_beats_naive_rule"] and beaten["gate_beats_baselines"]
    assert failed_gates(beaten) == ["beats_naive_rule"] and "gate_null_test" not in beaten
    assert gate_results(SPEC, {**CHEAP, "naive_last_return_sign_auc": 0.54})["gate_beats_naive_rule"]
    lower = spec_by_name("volatility_h5")  # a loss: lower is better
    losses = {"qlike": 0.30, "baseline_train_mean_qlike": 0.5, "naive_garch_qlike": 0.29, "naive_har_rv_qlike": 0.4,
              "onnx_max_abs_diff": 0.0, "latency_p50_us": 10.0}
    assert not gate_results(lower, losses)["gate_beats_naive_rule"]
    assert gate_results(lower, {**losses, "qlike": 0.28})["gate_beats_naive_rule"]


def test_with_null_permutations_zero_the_retrain_test_is_skipped_and_the_screen_decides():
    from pipelines.config import get_settings
    from pipelines.steps.validate import null_tests

    passed_screen = {"null_screen_p_value": 0.002, "null_screen_n": 999.0}
    # data and params are never touched when the retrain test is off
    out = null_tests(get_settings(null_permutations=0), SPEC, None, {}, 0.56, passed_screen)
    assert out == {"null_p_value": 0.002, "null_n": 0.0}
    assert gate_results(SPEC, {**CHEAP, **out})["gate_null_test"]
    failed_screen = null_tests(get_settings(null_permutations=0), SPEC, None, {}, 0.56,
                               {"null_screen_p_value": 0.2, "null_screen_n": 999.0})
    assert not gate_results(SPEC, {**CHEAP, **failed_screen})["gate_null_test"]
    assert "ALPHAOPS_NULL_PERMUTATIONS is 0" in null_test_text({**passed_screen, **out}, {})


def test_a_multi_output_regressor_is_scored_per_target_and_its_return_forecast_is_traded():
    """returns_lgbm on 1-hour bars: the mean RMSE over its nine targets is the primary metric, each
    target has its own RMSE and R² (and the training mean's R²), and the 1h return forecast's sign
    is traded after costs, so the buy-and-hold gate applies."""
    import numpy as np
    import pandas as pd

    from pipelines.config import Settings
    from pipelines.evaluation.datasets import Dataset
    from pipelines.steps.validate import evaluate_regressor

    spec = spec_by_name("returns_lgbm", "1h")
    rng = np.random.default_rng(0)
    n = 600
    y = rng.standard_normal((n, len(spec.targets))) * 0.01
    index = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    data = Dataset(X=np.zeros((n, 2), np.float32), y=y, index=index, feature_names=["a", "b"],
                   next_return=y[:, 0], fingerprint="x", train_idx=np.arange(400), holdout_idx=np.arange(424, n))
    perfect = y[data.holdout_idx]
    metrics = evaluate_regressor(spec, data, perfect, Settings(commission_bps=1.0, spread_bps=1.0))
    assert metrics["rmse"] == 0.0 and metrics["r2"] == 1.0
    assert metrics["baseline_train_mean_rmse"] > 0.009 and metrics["baseline_train_mean_r2"] < 0.0
    assert metrics["r2_label_max_loss_1d"] == 1.0 and "baseline_train_mean_r2_label_return_4h" in metrics
    assert metrics["trading_sharpe"] > metrics["baseline_buy_hold_sharpe"]  # it traded the known next return
    gates = gate_results(spec, {**metrics, "onnx_max_abs_diff": 0.0, "latency_p50_us": 10.0})
    assert gates["gate_beats_baselines"] and gates["gate_beats_buy_hold"]
    worse = evaluate_regressor(spec, data, -perfect, Settings(commission_bps=1.0, spread_bps=1.0))
    assert worse["rmse"] > worse["baseline_train_mean_rmse"] and worse["trading_sharpe"] < 0
