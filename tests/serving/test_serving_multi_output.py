"""The liquidity and returns bundles in serving: one named output per target, as the estimator answers."""

from __future__ import annotations

import numpy as np
import pytest

import features
from models.bundle import spec_schema, write_bundle
from models.catalog import spec_by_name
from models.outputs import build_estimator, native_output
from pipelines.ingest.synthetic import liquidity_market
from serving import MultiPrediction, Predictor

FAST = {"liquidity_volume": {"n_estimators": 20, "num_leaves": 7},
        "returns_lgbm": {"n_estimators": 10, "num_leaves": 3},
        "returns_mlp": {"epochs": 2, "hidden": 32}}


@pytest.fixture(scope="module")
def rows():
    bars = liquidity_market(seed=9, days=14)
    frame = features.compute(bars)
    good = [c for c in frame.columns if np.isfinite(frame[c].to_numpy()[features.WARMUP:]).all()]
    return bars, frame[good].iloc[features.WARMUP:]


@pytest.mark.parametrize("name", sorted(FAST))
def test_the_bundle_answers_with_each_target_by_name(rows, tmp_path, name):
    bars, frame = rows
    spec = spec_by_name(name, "15m")
    y = spec.label_for(bars).reindex(frame.index).to_numpy()
    keep = np.isfinite(y).all(axis=1)
    X = frame.to_numpy(np.float32)[keep]
    model = build_estimator(spec, FAST[name], list(frame.columns)).fit(X[:-50], y[keep][:-50])
    schema = spec_schema(spec, feature_set_version=features.FEATURE_SET_VERSION, features=list(frame.columns),
                         model={"name": f"t.{name}.SYNLIQ", "version": "1", "family": spec.family})
    predictor = Predictor.load(write_bundle(tmp_path / name, model.to_onnx(), schema))
    result = predictor.predict(X[-50:])
    assert isinstance(result, MultiPrediction)
    assert list(result) == list(spec.targets)
    native = native_output(spec, model, X[-50:])
    for k, target in enumerate(spec.targets):
        np.testing.assert_allclose(np.asarray(result[target]).reshape(-1), native[:, k], atol=spec.gates.max_onnx_abs_diff)
    one = predictor.predict(dict(zip(frame.columns, X[-1].tolist())))
    assert float(np.asarray(one[spec.targets[-1]]).reshape(-1)[0]) == pytest.approx(native[-1, -1], abs=1e-4)
