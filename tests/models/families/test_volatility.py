from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from features.labels import forward_realized_vol
from models.baselines import arch_scale, garch_baselines, naive_realized_vol
from models.catalog import FAMILIES
from models.families.volatility import RANGE_INPUTS, VolatilityRegressor, volatility_space
from models.metrics import regressor_score
from models.onnx_export import run_onnx

H = 5


@pytest.fixture(scope="module")
def data(bars, feature_frame, make_xy):
    X, y = make_xy(forward_realized_vol(bars, H), classes=False)
    returns = feature_frame["ret_1"].to_numpy()[: len(X)]  # ret_1 = the return that ends at each row
    cut = int(len(X) * 0.7)
    return X, y, returns, cut


@pytest.fixture(scope="module")
def fitted(data):
    X, y, _, cut = data
    return VolatilityRegressor(n_estimators=60, random_state=3).fit(X[:cut], y[:cut])


def test_sklearn_contract(data):
    X, y, _, cut = data
    model = VolatilityRegressor(n_estimators=20)
    with pytest.raises(NotFittedError):
        model.predict(X[:5])
    assert model.fit(X[:cut], y[:cut]) is model
    twin = clone(model)
    assert twin.get_params() == model.get_params() and not hasattr(twin, "model_")


def test_onnx_parity_positive_and_deterministic(data, fitted):
    X, y, _, cut = data
    native = fitted.predict(X[cut:])
    outputs = run_onnx(fitted.to_onnx(), X[cut:])
    assert len(outputs) == 1 and outputs[0].shape == (len(X) - cut, 1)
    assert np.max(np.abs(outputs[0][:, 0] - native)) <= 1e-5
    assert np.all(native > 0)
    again = VolatilityRegressor(n_estimators=60, random_state=3).fit(X[:cut], y[:cut]).predict(X[cut:])
    np.testing.assert_array_equal(again, native)


def test_model_beats_constant_forecast_on_qlike(data, fitted):
    X, y, _, cut = data
    model_loss = regressor_score("qlike", y[cut:], fitted.predict(X[cut:]))
    constant_loss = regressor_score("qlike", y[cut:], np.full(len(y) - cut, y[:cut].mean()))
    assert model_loss < constant_loss


def test_garch_forecasts_are_finite_positive_and_use_only_past_returns(data):
    _, _, returns, cut = data
    holdout = np.arange(cut, len(returns))
    out = garch_baselines(returns[:cut], returns, holdout, H, simulations=200)
    assert set(out) == {"garch", "egarch"}
    for name, forecast in out.items():
        assert forecast.shape == holdout.shape, name
        assert np.all(np.isfinite(forecast)) and np.all(forecast > 0), name
        # per-bar vol of one-minute returns: same order of magnitude as the realized returns
        assert 0.1 < np.median(forecast) / np.std(returns[:cut]) < 10, name
    # Rewrite every return after row k: forecasts made at rows <= k must not move.
    k = cut + 100
    changed = returns.copy()
    changed[k + 1:] = np.random.default_rng(0).standard_normal(len(returns) - k - 1) * 0.01
    again = garch_baselines(returns[:cut], changed, holdout, H, simulations=200)
    upto = holdout <= k
    for name in out:
        np.testing.assert_array_equal(again[name][upto], out[name][upto])
        assert not np.allclose(again[name][~upto], out[name][~upto])


def test_arch_scale_brings_returns_to_order_one():
    assert arch_scale(np.array([0.01, -0.012, 0.008, -0.011])) == 100.0
    assert 1 <= np.std(np.array([8e-4, -9e-4, 7e-4]) * arch_scale(np.array([8e-4, -9e-4, 7e-4]))) < 10


def test_naive_realized_vol_is_the_trailing_rms():
    r = np.array([0.0, 1.0, -2.0, 3.0, 0.5])
    expected = [np.sqrt((4 + 9) / 2), np.sqrt((9 + 0.25) / 2)]
    np.testing.assert_allclose(naive_realized_vol(r, np.array([3, 4]), 2), expected)


def test_spec_baselines_signature_and_units(data):
    """The spec's plain baseline is the training mean; GARCH, EGARCH and HAR-RV are its naive
    rules (models.naive, tested in tests/models/test_naive.py), fed returns that end at each bar."""
    X, y, returns, cut = data
    spec = next(s for s in FAMILIES["volatility"]() if s.horizon == H)
    out = spec.baselines(y[:cut], y[cut:], returns[:cut], returns[cut:])
    assert set(out) == {"train_mean"}
    for name, forecast in out.items():
        assert forecast.shape == (len(y) - cut,), name
        assert np.isfinite(regressor_score(spec.metric, y[cut:], forecast)), name
    assert spec.greater_is_better is False and spec.metric == "qlike"


@pytest.fixture(scope="module")
def named(data, feature_frame):
    X, y, _, cut = data
    return X, y, cut, tuple(feature_frame.columns)


@pytest.mark.parametrize("n_estimators", [0, 40])
def test_har_member_uses_range_vol_and_leverage_and_exports_as_one_graph(named, n_estimators):
    X, y, cut, names = named
    model = VolatilityRegressor(n_estimators=n_estimators, feature_names=names).fit(X[:cut], y[:cut])
    assert set(model.har_inputs_) == set(RANGE_INPUTS) | {"ret_1", "ret_5"}
    assert (model.model_ is None) == (n_estimators == 0)
    native = model.predict(X[cut:])
    (onnx_out,) = run_onnx(model.to_onnx(), X[cut:])
    assert onnx_out.shape == (len(X) - cut, 1)
    assert np.max(np.abs(onnx_out[:, 0] - native)) <= 1e-5 * max(1.0, float(np.max(native)))
    assert np.all(native > 0)


def test_har_member_is_qlike_consistent_without_a_bias_correction(named):
    """The Gamma GLM's intercept makes mean(RV / forecast) = 1 on the training rows: QLIKE's first-order
    condition for a constant scale, which a least-squares fit of log RV misses by exp(var/2)."""
    X, y, cut, names = named
    model = VolatilityRegressor(n_estimators=0, feature_names=names).fit(X[:cut], y[:cut])
    ratio = np.maximum(y[:cut], model.floor_) ** 2 / model.predict(X[:cut]) ** 2
    assert abs(np.mean(ratio) - 1.0) < 1e-3
    # ... and the forecast scaled by any constant c != 1 loses QLIKE on the training rows
    base = regressor_score("qlike", y[:cut], model.predict(X[:cut]))
    for c in (0.9, 1.1):
        assert regressor_score("qlike", y[:cut], np.sqrt(c) * model.predict(X[:cut])) > base


def test_single_price_bars_fall_back_to_close_to_close_terms(named):
    X, y, cut, names = named
    flat = X.copy()
    for name in names:  # no range: open = high = low = close
        if name.startswith(("parkinson_vol", "garman_klass_vol", "rogers_satchell_vol")):
            flat[:, names.index(name)] = 0.0
    model = VolatilityRegressor(n_estimators=20, feature_names=names).fit(flat[:cut], y[:cut])
    assert set(model.har_inputs_) == {"rv_1", "rv_5", "rv_22", "ret_1", "ret_5"}
    (onnx_out,) = run_onnx(model.to_onnx(), flat[cut:])
    assert np.max(np.abs(onnx_out[:, 0] - model.predict(flat[cut:]))) <= 1e-5


def test_without_feature_names_the_member_is_the_training_mean(data):
    X, y, _, cut = data
    model = VolatilityRegressor(n_estimators=0).fit(X[:cut], y[:cut])
    assert model.har_inputs_ == {}
    np.testing.assert_allclose(model.predict(X[cut:]) ** 2, np.mean(np.maximum(y[:cut], model.floor_) ** 2), rtol=1e-9)
    (onnx_out,) = run_onnx(model.to_onnx(), X[cut:])
    np.testing.assert_allclose(onnx_out[:, 0], model.predict(X[cut:]), rtol=1e-6)


def test_search_space_can_leave_the_har_member_alone():
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {volatility_space(study.ask())["n_estimators"] for _ in range(60)}
    assert 0 in seen and max(seen) <= 200


def test_on_spx_it_beats_garch_at_h5_and_the_best_classical_rule_at_h20():
    """The issue-16 protocol in one process: features of arch's S&P 500, purged last 20% (as
    pipelines.evaluation.datasets), GARCH/EGARCH/HAR-RV fitted on the training rows (models.naive)."""
    import pandas as pd

    import features
    from models.cv import holdout_split
    from models.naive import NaiveContext, volatility_rules
    from pipelines.evaluation.datasets import usable_features
    from pipelines.ingest.samples import ArchSampleSource

    bars = ArchSampleSource("sp500").read()
    feats = features.compute(bars)
    names = usable_features(feats, features.WARMUP)
    for h, margin in ((5, 0.95), (20, 1.0)):
        frame = feats[names].iloc[features.WARMUP:].join(forward_realized_vol(bars, h).rename("y")).dropna()
        X, y = frame[names].to_numpy(np.float32), frame["y"].to_numpy()
        train, hold = holdout_split(len(y), 0.2, purge=h)
        model = VolatilityRegressor(n_estimators=0, feature_names=tuple(names)).fit(X[train], y[train])
        ctx = NaiveContext(bars=bars, index=pd.DatetimeIndex(frame.index), y=y, X=X, feature_names=names,
                           train_idx=train, holdout_idx=hold, horizon=h)
        rules = {k: regressor_score("qlike", y[hold], v) for k, v in volatility_rules(ctx).items()}
        ours = regressor_score("qlike", y[hold], model.predict(X[hold]))
        assert ours < margin * rules["garch"], (h, ours, rules)
        assert ours < min(rules.values()), (h, ours, rules)
