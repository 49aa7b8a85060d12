from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from features.labels import momentum_acceleration
from models.cv import evenly_spaced_rows
from models.families.momentum import MomentumSVM
from models.onnx_export import run_onnx


@pytest.fixture(scope="module")
def data(bars, make_xy):
    X, y = make_xy(momentum_acceleration(bars, 10))
    return X, y, int(len(X) * 0.7)


@pytest.fixture(scope="module")
def fitted(data):
    X, y, cut = data
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no deprecated SVC(probability=True) path
        return MomentumSVM(max_train_rows=800).fit(X[:cut], y[:cut])


def test_label_rule():
    close = pd.Series(np.exp([0.0, 0.1, 0.2, 0.5, 0.55, 0.3]))
    label = momentum_acceleration(close.to_frame("close"), 1)
    # past +0.1 then +0.1: not larger -> 0; +0.1 then +0.3: accelerates -> 1; +0.3 then +0.05 -> 0; reversal -> 0
    np.testing.assert_array_equal(label.to_numpy()[1:5], [0.0, 1.0, 0.0, 0.0])
    assert np.isnan(label.iloc[0]) and np.isnan(label.iloc[-1])


def test_sklearn_contract_and_subsample(data, fitted):
    X, y, cut = data
    model = MomentumSVM(max_train_rows=300)
    with pytest.raises(NotFittedError):
        model.predict(X[:5])
    assert model.fit(X[:cut], y[:cut]) is model
    assert model.n_train_rows_ == 300 and fitted.n_train_rows_ == 800
    assert clone(model).get_params() == model.get_params()
    rows = evenly_spaced_rows(1000, 10)
    assert rows[0] == 0 and rows[-1] == 999 and len(rows) == 10


def test_onnx_parity_and_determinism(data, fitted):
    X, y, cut = data
    proba = fitted.predict_proba(X[cut:])
    label, onnx_proba = run_onnx(fitted.to_onnx(), X[cut:])
    assert np.max(np.abs(onnx_proba - proba)) <= 1e-5
    np.testing.assert_array_equal(label, fitted.predict(X[cut:]))
    again = MomentumSVM(max_train_rows=800).fit(X[:cut], y[:cut])
    np.testing.assert_array_equal(again.predict_proba(X[cut:]), proba)
