from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from features.labels import forward_return
from models.families.direction import DirectionClassifier
from models.families.ensemble import METHODS, EnsembleClassifier
from models.onnx_export import run_onnx


def members(n_estimators: int = 25) -> list[DirectionClassifier]:
    return [DirectionClassifier(n_estimators=n_estimators, num_leaves=leaves, random_state=seed, n_jobs=1)
            for seed, leaves in ((0, 7), (1, 15), (2, 4))]


@pytest.fixture(scope="module")
def data(bars, make_xy):
    X, fwd = make_xy(forward_return(bars, 5), classes=False)
    y2 = (fwd > 0).astype(np.int64)
    y3 = np.select([fwd > 5e-4, fwd < -5e-4], [2, 0], 1).astype(np.int64)
    return X, y2, y3, int(len(X) * 0.7)


@pytest.fixture(scope="module")
def prefitted(data):
    X, y2, _, cut = data
    half = cut // 2
    return [m.fit(X[:half], y2[:half]) for m in members()], half


def python_combination(model: EnsembleClassifier, X: np.ndarray) -> np.ndarray:
    """The combination rebuilt from the members' own predict_proba, outside the ensemble's code."""
    P = np.stack([m.predict_proba(X) for m in model.members_], axis=1)
    w = model.weights_
    if model.method == "mean":
        return np.einsum("nmc,m->nc", P, w)
    if model.method == "vote":
        votes = np.argmax(P, axis=2)
        return np.stack([((votes == c) * w).sum(axis=1) for c in range(P.shape[2])], axis=1)
    if model.method == "stack":
        Z = P[:, :, 1] if P.shape[2] == 2 else P.reshape(len(P), -1)
        return model.stacker_.predict_proba(Z)
    chosen = model.regime_tree_.predict(X) if model.regime_tree_ is not None else np.full(len(X), model.regime_member_)
    return P[np.arange(len(X)), chosen.astype(int)]


@pytest.mark.parametrize("method", METHODS)
def test_onnx_equals_the_python_combination(data, prefitted, method):
    X, y2, _, cut = data
    fitted_members, half = prefitted
    weights = [0.5, 0.3, 0.2] if method in ("mean", "vote") else None
    model = EnsembleClassifier(members=fitted_members, method=method, weights=weights).fit(X[half:cut], y2[half:cut])
    assert all(a is b for a, b in zip(model.members_, fitted_members))  # pre-fitted members are used as they are
    proba = model.predict_proba(X[cut:])
    np.testing.assert_allclose(proba, python_combination(model, X[cut:]), atol=1e-12)
    label, onnx_proba = run_onnx(model.to_onnx(), X[cut:])
    assert np.max(np.abs(onnx_proba - proba)) <= 1e-5
    np.testing.assert_array_equal(label, model.predict(X[cut:]))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)


@pytest.mark.parametrize("method", ["vote", "stack", "regime"])
def test_multiclass_members(data, method):
    X, _, y3, cut = data
    model = EnsembleClassifier(members=members(15), method=method).fit(X[:cut], y3[:cut])
    proba = model.predict_proba(X[cut:])
    assert proba.shape == (len(X) - cut, 3)
    np.testing.assert_allclose(proba, python_combination(model, X[cut:]), atol=1e-12)
    _, onnx_proba = run_onnx(model.to_onnx(), X[cut:])
    assert np.max(np.abs(onnx_proba - proba)) <= 1e-5


def test_sklearn_contract_and_unfitted_members(data):
    X, y2, _, cut = data
    template = members(10)
    model = EnsembleClassifier(members=template, method="stack")
    with pytest.raises(NotFittedError):
        model.predict(X[:5])
    assert model.fit(X[:cut], y2[:cut]) is model
    assert not any(hasattr(m, "model_") for m in template)  # the constructor's members are never fitted in place
    assert all(hasattr(m, "model_") for m in model.members_)
    twin = clone(model)
    assert twin.get_params()["method"] == "stack" and not hasattr(twin, "members_")
    assert all(not hasattr(m, "model_") for m in twin.members)
    with pytest.raises(ValueError, match="method"):
        EnsembleClassifier(members=members(5), method="median").fit(X[:cut], y2[:cut])


def test_deterministic(data):
    X, y2, _, cut = data
    first = EnsembleClassifier(members=members(10), method="regime").fit(X[:cut], y2[:cut]).predict_proba(X[cut:])
    second = EnsembleClassifier(members=members(10), method="regime").fit(X[:cut], y2[:cut]).predict_proba(X[cut:])
    np.testing.assert_array_equal(first, second)
