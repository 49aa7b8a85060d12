from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from models.families.anomaly import ANOMALY_GROUP_FEATURES, AnomalyDetector, event_mask
from models.onnx_export import run_onnx

# injected event type -> the anomaly type the attribution should name
EXPECTED_TYPE = {"volume_spike": "volume", "price_jump": "price", "liquidity_hole": "liquidity",
                 "liquidation_cascade": "derivatives"}


@pytest.fixture(scope="module")
def split(feature_frame):
    cut = len(feature_frame) // 2
    return feature_frame.iloc[:cut], feature_frame.iloc[cut:]


@pytest.fixture(scope="module")
def fitted(split):
    train, _ = split
    return AnomalyDetector(n_estimators=100, random_state=5).fit(train)


def test_sklearn_contract(split):
    train, holdout = split
    model = AnomalyDetector(n_estimators=20)
    with pytest.raises(NotFittedError):
        model.predict(holdout.to_numpy())
    with pytest.raises(NotFittedError):
        model.score(holdout.to_numpy())
    assert model.fit(train.to_numpy(), y=np.zeros(len(train))) is model  # y is ignored
    assert model.feature_names_ is None and model.groups_ == {}
    with pytest.raises(ValueError, match="feature names"):
        model.explain(holdout.to_numpy())
    twin = clone(model)
    assert twin.get_params() == model.get_params() and not hasattr(twin, "model_")


def test_score_is_calibrated_on_the_training_window(split, fitted):
    train, holdout = split
    train_score = fitted.score(train)
    assert train_score.min() >= 0 and train_score.max() <= 1
    # the score is the training CDF: about 1% of training rows lie above the 0.99 threshold
    assert abs(fitted.is_anomaly(train).mean() - 0.01) < 0.004
    assert abs(np.median(train_score) - 0.5) < 0.02
    assert set(np.unique(fitted.predict(holdout))) <= {-1, 1}
    np.testing.assert_array_equal(fitted.predict(holdout) == -1, fitted.is_anomaly(holdout))


def test_onnx_parity_and_determinism(split, fitted):
    _, holdout = split
    X = holdout.to_numpy(dtype=np.float32)
    label, score, anomaly_score = run_onnx(fitted.to_onnx(), X)
    native = fitted.score(holdout)
    assert np.max(np.abs(anomaly_score - native)) <= 1e-5
    np.testing.assert_allclose(score, 1.0 - anomaly_score, atol=1e-7)
    away = np.abs(native - fitted.threshold_) > 1e-5  # labels may only differ at the threshold itself
    np.testing.assert_array_equal(label[away], fitted.predict(holdout)[away])
    again = AnomalyDetector(n_estimators=100, random_state=5).fit(split[0])
    np.testing.assert_array_equal(again.score(holdout), native)


def test_compact_and_skl2onnx_graphs_agree(split):
    train, holdout = split
    small = AnomalyDetector(n_estimators=15, random_state=6).fit(train)
    X = holdout.to_numpy(dtype=np.float32)
    compact = run_onnx(small.to_onnx(), X)
    reference = run_onnx(small.to_onnx(converter="skl2onnx"), X)
    native = small.score(holdout)
    for outputs in (compact, reference):
        assert np.max(np.abs(outputs[2] - native)) <= 1e-5
    assert np.max(np.abs(compact[2] - reference[2])) <= 1e-5
    with pytest.raises(ValueError, match="converter"):
        small.to_onnx(converter="nope")


def test_injected_events_score_high_and_are_attributed_to_their_type(market, feature_frame, split, fitted):
    _, events = market
    _, holdout = split
    tail = slice(len(feature_frame) - len(holdout), None)
    mask = event_mask(feature_frame.index, events)[tail]
    assert mask.sum() >= 20
    auc = roc_auc_score(mask, fitted.score(holdout))
    assert auc > 0.75, auc  # 0.83 measured (seed 11); 0.5 is chance
    explained = fitted.explain(holdout)
    for event_type, anomaly_type in EXPECTED_TYPE.items():
        rows = event_mask(feature_frame.index, events, (event_type,))[tail]
        if rows.sum() == 0:
            continue
        assert pd.Series(explained[rows]).mode().iloc[0] == anomaly_type, event_type


def test_schema_extras_let_a_runtime_reproduce_the_attribution(split, fitted):
    _, holdout = split
    extras = fitted.schema_extras()
    assert extras["thresholds"] == {"anomaly_score": 0.01}
    names = list(holdout.columns)
    for group, indices in extras["anomaly_groups"].items():
        assert [names[i] for i in indices] == [n for n in ANOMALY_GROUP_FEATURES[group] if n in names]
    center = np.array(extras["anomaly_explain"]["center"])
    scale = np.array(extras["anomaly_explain"]["scale"])
    z = np.abs((holdout.to_numpy() - center) / scale)
    groups = list(extras["anomaly_groups"])
    manual = np.array(groups)[np.argmax([z[:, idx].max(axis=1) for idx in extras["anomaly_groups"].values()], axis=0)]
    np.testing.assert_array_equal(manual, fitted.explain(holdout))
