"""The returns family: LightGBM and torch MLP multi-output regressors, one ONNX output per target."""

from __future__ import annotations

import numpy as np
import pytest

from models.catalog import spec_by_name
from models.metrics import regressor_score
from models.outputs import build_estimator, native_output
from pipelines.evaluation.scoring import onnx_outputs, onnx_primary_output


@pytest.fixture(scope="module")
def planted():
    """Nine targets, three of them linear in the features (the rest noise)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1500, 6)).astype(np.float32)
    y = rng.standard_normal((1500, 9)) * 0.01
    y[:, 0] += 0.01 * X[:, 0]
    y[:, 3] += 0.02 * np.abs(X[:, 1])
    y[:, 6] -= 0.02 * np.abs(X[:, 2])
    return X, y


@pytest.mark.parametrize("name,params", [("returns_lgbm", {"n_estimators": 60, "num_leaves": 7}),
                                         ("returns_mlp", {"epochs": 4, "hidden": 32, "dropout": 0.2})])
def test_each_estimator_learns_and_exports_named_outputs(planted, name, params):
    X, y = planted
    spec = spec_by_name(name, "15m")
    assert len(spec.targets) == 9 and spec.targets[0] == "label_return_1h"
    model = build_estimator(spec, params, [f"f{i}" for i in range(6)]).fit(X[:1200], y[:1200])
    forecast = native_output(spec, model, X[1200:])
    assert forecast.shape == (300, 9)
    mean = np.tile(y[:1200].mean(axis=0), (300, 1))
    assert regressor_score("rmse", y[1200:, :1], forecast[:, :1]) < regressor_score("rmse", y[1200:, :1], mean[:, :1])
    outputs = onnx_outputs(model.to_onnx().SerializeToString(), X[1200:])
    assert list(outputs) == list(spec.targets)
    assert all(v.shape == (300, 1) for v in outputs.values())
    assert np.max(np.abs(onnx_primary_output(spec, outputs) - forecast)) < 1e-5
    # exporting leaves the native model as it was (no dropout switched back on by the exporter)
    np.testing.assert_array_equal(native_output(spec, model, X[1200:]), forecast)


def test_the_returns_horizons_follow_the_timeframe():
    assert spec_by_name("returns_lgbm", "15m").horizon == 96
    hourly = {o["name"]: o["horizon_bars"] for o in spec_by_name("returns_mlp", "1h").schema_extras["outputs"]}
    assert hourly["label_return_1h"] == 1 and hourly["label_max_loss_4h"] == 4 and hourly["label_max_gain_1d"] == 24


def test_the_mlp_refuses_bad_input(planted):
    X, y = planted
    spec = spec_by_name("returns_mlp", "1h")
    model = build_estimator(spec, {"epochs": 1}, [f"f{i}" for i in range(6)])
    with pytest.raises(ValueError, match="at least 50"):
        model.fit(X[:20], y[:20])
    with pytest.raises(ValueError, match="output names"):
        model.set_params(output_names=("a", "b")).fit(X, y)


def test_the_naive_rule_is_the_training_mean_of_each_target():
    import pandas as pd

    from models.naive import NaiveContext, naive_predictions

    rng = np.random.default_rng(2)
    y = rng.standard_normal((100, 9)) + np.arange(9)
    index = pd.date_range("2024-01-01", periods=100, freq="1h", tz="UTC")
    ctx = NaiveContext(bars=pd.DataFrame({"close": 1.0}, index=index), index=index, y=y, X=np.zeros((100, 1)),
                       feature_names=["f"], train_idx=np.arange(60), holdout_idx=np.arange(70, 100), horizon=1)
    rule = naive_predictions("returns", ctx)["train_mean"]
    assert rule.shape == (30, 9)
    np.testing.assert_allclose(rule[0], y[:60].mean(axis=0))


def test_the_direction_spec_trains_on_the_stored_three_class_label_of_its_timeframe():
    """returns_direction_1h's label is the label step's ``label_direction_1h`` (±0.1% band), with
    the horizon in bars of the timeframe; unresolved, its rule names the fix."""
    import pandas as pd

    from features.labels import multi_horizon_directions
    from pipelines.ingest.synthetic import autoregressive_market

    bars = autoregressive_market(3, 600, phi=0.0)  # 1-minute bars
    spec = spec_by_name("returns_direction_1h", "1m")
    assert (spec.task, spec.horizon, spec.class_names) == ("classifier", 60, ("down", "neutral", "up"))
    stored = multi_horizon_directions(bars, bar_hours=1 / 60)["label_direction_1h"]
    pd.testing.assert_series_equal(spec.label_for(bars), stored, check_names=False)
    assert set(stored.dropna().unique()) == {0.0, 1.0, 2.0} and stored.iloc[-60:].isna().all()
    assert spec_by_name("returns_direction_1h", "1d").horizon == 1
    with pytest.raises(ValueError, match="resolve it for the bars' timeframe"):
        spec_by_name("returns_direction_1h").label_for(bars)
