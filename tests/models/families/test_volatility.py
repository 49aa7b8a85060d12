from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from models.baselines import arch_scale, garch_baselines, naive_realized_vol
from models.families.labels import forward_realized_vol
from models.families.volatility import VolatilityRegressor
from models.family_specs import EXTRA_FAMILIES
from models.metrics import regressor_score
from models.onnx_export import run_onnx

H = 5


@pytest.fixture(scope="module")
def data(bars, feature_frame, make_xy):
    X, y = make_xy(forward_realized_vol(bars["close"], H), classes=False)
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
    spec = next(s for s in EXTRA_FAMILIES["volatility"]() if s.horizon == H)
    out = spec.baselines(y[:cut], y[cut:], returns[:cut], returns[cut:])
    assert set(out) == {"train_mean"}
    for name, forecast in out.items():
        assert forecast.shape == (len(y) - cut,), name
        assert np.isfinite(regressor_score(spec.metric, y[cut:], forecast)), name
    assert spec.greater_is_better is False and spec.metric == "qlike"
