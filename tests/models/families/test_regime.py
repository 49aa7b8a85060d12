from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from features.labels import REGIME_NAMES, regime_label
from models.catalog import FAMILIES
from models.families.regime import RegimeClassifier
from models.onnx_export import run_onnx


@pytest.fixture(scope="module")
def data(bars, make_xy):
    X, y = make_xy(regime_label(bars, horizon=20))
    return X, y, int(len(X) * 0.7)


@pytest.fixture(scope="module")
def fitted(data):
    X, y, cut = data
    return RegimeClassifier(n_estimators=30, random_state=1).fit(X[:cut], y[:cut])


def test_labels_cover_the_five_regimes(data):
    _, y, _ = data
    assert set(np.unique(y)) == set(range(5))
    assert REGIME_NAMES == ("trend_up", "trend_down", "range_bound", "high_volatility", "consolidation")
    spec = FAMILIES["regime"]()[0]
    assert spec.class_names == REGIME_NAMES and spec.task == "classifier"


def test_sklearn_contract(data):
    X, y, cut = data
    model = RegimeClassifier(n_estimators=10)
    with pytest.raises(NotFittedError):
        model.predict(X[:5])
    assert model.fit(X[:cut], y[:cut]) is model
    twin = clone(model)
    assert twin.get_params() == model.get_params() and not hasattr(twin, "model_")


def test_probabilities_onnx_parity_and_determinism(data, fitted):
    X, y, cut = data
    proba = fitted.predict_proba(X[cut:])
    assert proba.shape == (len(X) - cut, 5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    label, onnx_proba = run_onnx(fitted.to_onnx(), X[cut:])
    assert np.max(np.abs(onnx_proba - proba)) <= 1e-5
    np.testing.assert_array_equal(label, fitted.predict(X[cut:]))
    again = RegimeClassifier(n_estimators=30, random_state=1).fit(X[:cut], y[:cut])
    np.testing.assert_array_equal(again.predict_proba(X[cut:]), proba)


def test_onnx_outputs_have_a_dynamic_batch_axis(fitted):
    model = fitted.to_onnx()
    for output in model.graph.output:
        assert output.type.tensor_type.shape.dim[0].dim_param, output.name
