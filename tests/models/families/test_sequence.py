from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from features.labels import forward_return
from models.families.sequence import SequenceModel, make_windows
from models.onnx_export import run_onnx

WINDOW = 16
SMALL = {"hidden_size": 16, "epochs": 2, "batch_size": 128, "n_threads": 1}


@pytest.fixture(scope="module")
def data(bars, make_xy):
    X2, fwd = make_xy(forward_return(bars, 5), classes=False)
    X2, fwd = X2[-1200:], fwd[-1200:]
    X = make_windows(X2, WINDOW)
    fwd = fwd[WINDOW - 1:]
    return X, (fwd > 0).astype(np.int64), fwd, int(len(X) * 0.7)


@pytest.fixture(scope="module", params=["lstm", "transformer"])
def fitted(request, data):
    X, y, fwd, cut = data
    return SequenceModel(arch=request.param, random_state=9, **SMALL).fit(X[:cut], y[:cut], forward_return=fwd[:cut])


def test_make_windows_alignment():
    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    W = make_windows(X, 3)
    assert W.shape == (4, 3, 2)
    np.testing.assert_array_equal(W[0], X[0:3])
    np.testing.assert_array_equal(W[-1], X[3:6])  # window j ends at row j + window - 1
    with pytest.raises(ValueError):
        make_windows(X, 7)


def test_sklearn_contract(data):
    X, y, _, cut = data
    model = SequenceModel(**SMALL)
    with pytest.raises(NotFittedError):
        model.predict(X[:5])
    assert model.fit(X[:300], y[:300]) is model
    twin = clone(model)
    assert twin.get_params() == model.get_params() and not hasattr(twin, "net_")
    with pytest.raises(ValueError, match=r"\[N, window, n_features\]"):
        model.predict(X[:5, 0, :])


def test_onnx_parity_dynamic_batch_and_determinism(data, fitted):
    X, y, fwd, cut = data
    model = fitted.to_onnx()
    assert [o.name for o in model.graph.output] == ["label", "probabilities", "expected_return"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [WINDOW, X.shape[2]]
    label, proba, ret = run_onnx(model, X[cut:])
    assert np.max(np.abs(proba - fitted.predict_proba(X[cut:]))) <= 1e-5
    assert np.max(np.abs(ret[:, 0] - fitted.predict_return(X[cut:]))) <= 1e-5
    np.testing.assert_array_equal(label, fitted.predict(X[cut:]))
    for n in (1, 7):  # any batch size
        assert run_onnx(model, X[cut:cut + n])[1].shape == (n, 2)
    assert np.std(ret) > 0  # the return head was trained
    again = SequenceModel(arch=fitted.arch, random_state=9, **SMALL).fit(X[:cut], y[:cut], forward_return=fwd[:cut])
    np.testing.assert_array_equal(again.predict_proba(X[cut:]), fitted.predict_proba(X[cut:]))
    np.testing.assert_array_equal(again.predict_return(X[cut:]), fitted.predict_return(X[cut:]))


def test_without_forward_return_the_return_head_outputs_zero(data):
    X, y, _, cut = data
    model = SequenceModel(**SMALL).fit(X[:400], y[:400])
    assert model.return_fitted_ is False
    assert np.all(model.predict_return(X[cut:]) == 0)
    assert np.all(run_onnx(model.to_onnx(), X[cut:])[2] == 0)
