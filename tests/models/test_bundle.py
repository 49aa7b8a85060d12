"""schema.json for every spec; fallback rules only use features the model has."""

from __future__ import annotations

import numpy as np
import serving
from models.bundle import spec_schema, write_bundle
from models.catalog import spec_by_name


def test_gate_fallback_drops_rules_on_missing_microstructure_features(tmp_path):
    spec = spec_by_name("gate_h20")
    features = ["ret_1", "rsi_14"]  # daily bars: no price_dist / depth_ratio
    schema = spec_schema(spec, model={"name": "m", "version": "1"}, feature_set_version="fs", features=features)
    assert schema["fallback"]["rules"] == []
    assert schema["fallback"]["default"] == spec.schema_extras["fallback"]["default"]
    full = spec_schema(spec, model={"name": "m", "version": "1"}, feature_set_version="fs",
                       features=["price_dist", "depth_ratio", "tick_ratio", "rsi_14"])
    assert full["fallback"]["rules"] == spec.schema_extras["fallback"]["rules"]

    # And serving accepts it: with bad input the rule's default answers (and is counted).
    from models.families.direction import DirectionClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    model = DirectionClassifier(n_estimators=5).fit(X, (X[:, 0] > 0).astype(int))
    write_bundle(tmp_path / "b", model.to_onnx(), schema)
    predictor = serving.Predictor.load(tmp_path / "b", fallback=True)
    answer = predictor.predict({"ret_1": float("nan"), "rsi_14": 50.0})
    assert answer.fallback and predictor.stats["fallbacks"] == 1
    assert answer.label == 0 and answer.confidence == 0.0
    assert np.allclose(predictor.predict([0.5, 50.0]).probabilities, model.predict_proba([[0.5, 50.0]])[0],
                       atol=1e-5)
