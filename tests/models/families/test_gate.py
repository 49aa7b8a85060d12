from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import features
from features.labels import sigma_reversion_label
from models.catalog import FAMILIES
from models.cv import PurgedWalkForward
from models.families.gate import (
    APPROVE_THRESHOLD,
    GATE_FALLBACK,
    QUANTIZED_MAX_ABS_DIFF,
    GateClassifier,
    apply_fallback,
)
from models.onnx_export import run_onnx
from models.search import tune

SPEC = FAMILIES["gate"]()[0]


@pytest.fixture(scope="module")
def data(bars, make_xy):
    X, y = make_xy(sigma_reversion_label(bars, horizon=20))
    return X, y, int(len(X) * 0.7)


@pytest.fixture(scope="module")
def fitted(data):
    X, y, cut = data
    return GateClassifier(n_estimators=40, random_state=4).fit(X[:cut], y[:cut])


def test_sklearn_contract(data):
    X, y, cut = data
    model = GateClassifier(n_estimators=5)
    with pytest.raises(NotFittedError):
        model.predict(X[:5])
    assert model.fit(X[:cut], y[:cut]) is model
    twin = clone(model)
    assert twin.get_params() == model.get_params() and not hasattr(twin, "model_")


def test_float_and_quantized_onnx_parity(data, fitted):
    X, _, cut = data
    proba = fitted.predict_proba(X[cut:])
    float_model, quant_model = fitted.to_onnx(), fitted.to_onnx_quantized()
    label, float_proba = run_onnx(float_model, X[cut:])
    assert np.max(np.abs(float_proba - proba)) <= 1e-5
    np.testing.assert_array_equal(label, fitted.predict(X[cut:]))
    _, quant_proba = run_onnx(quant_model, X[cut:])
    assert np.max(np.abs(quant_proba - proba)) <= QUANTIZED_MAX_ABS_DIFF
    # Dynamic quantization has no MatMul/Gemm weights to quantize in a scaler + tree ensemble:
    # the graph comes back the same size (a few bytes of metadata more), not smaller.
    float_size, quant_size = len(float_model.SerializeToString()), len(quant_model.SerializeToString())
    assert abs(quant_size - float_size) / float_size < 0.01
    assert [o.name for o in quant_model.graph.output] == ["label", "probabilities"]


def test_approval_threshold_and_determinism(data, fitted):
    X, y, cut = data
    np.testing.assert_array_equal(fitted.approve(X[cut:]), fitted.predict_proba(X[cut:])[:, 1] >= 0.65)
    assert SPEC.schema_extras["thresholds"]["approve"] == APPROVE_THRESHOLD == 0.65
    again = GateClassifier(n_estimators=40, random_state=4).fit(X[:cut], y[:cut])
    np.testing.assert_array_equal(again.predict_proba(X[cut:]), fitted.predict_proba(X[cut:]))


def test_fallback_rule_is_well_formed_and_evaluates_in_order():
    rule = SPEC.schema_extras["fallback"]
    assert rule is GATE_FALLBACK and rule["kind"] == "rule" and "default" in rule
    known = set(features.feature_names(microstructure=True))
    for candidate in rule["rules"]:
        for name, op, value in candidate["when"]:
            assert name in known and op in ("<", "<=", ">", ">=") and np.isfinite(value)
        assert candidate["output"]["label"] in (0, 1)
    assert apply_fallback(rule, {"price_dist": -2.5, "depth_ratio": 0.3})["label"] == 1
    assert apply_fallback(rule, {"price_dist": 2.5, "depth_ratio": -0.3})["label"] == 1
    assert apply_fallback(rule, {"price_dist": -2.5, "depth_ratio": 0.1}) == {"label": 0, "confidence": 0.0}
    assert apply_fallback(rule, {"price_dist": float("nan"), "depth_ratio": 0.3})["label"] == 0
    assert apply_fallback(rule, {"depth_ratio": 0.3})["label"] == 0


def test_spec_searches_with_purged_time_series_cv(data):
    X, y, cut = data
    result = tune(SPEC, X[:1500], y[:1500], n_trials=2, cv=PurgedWalkForward(n_splits=2, purge=SPEC.horizon), seed=0)
    assert result.n_trials == 2 and 0.0 <= result.best_cv_score <= 1.0
    assert set(result.best_params) >= {"n_estimators", "max_depth", "random_state"}
