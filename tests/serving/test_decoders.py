"""Decoders: one per task, chosen at load; each task's typed results match raw onnxruntime."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from serving_bundles import FEATURES, MULTI_W, SMALL_FEATURES

from serving import (
    AnomalyPrediction,
    MultiPrediction,
    Prediction,
    Predictor,
    ValuePrediction,
)
from serving.decoders import DECODERS
from serving.schema import TASKS


def raw_probs(bundle: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(["probabilities"], {"input": x.reshape(-1, 60).astype(np.float32)})[0]


# -- classifier ----------------------------------------------------------------------------
def test_classifier_one_row_matches_raw_onnxruntime(clf: Predictor, clf_bundle: Path, rows) -> None:
    expected = raw_probs(clf_bundle, rows[:1])[0]
    for x in (
        rows[0],
        rows[0].tolist(),
        tuple(rows[0].tolist()),
        dict(zip(FEATURES, rows[0].tolist())),
        rows[0].astype(np.float64),
        np.asfortranarray(rows[0]),
    ):
        res = clf.predict(x)
        assert isinstance(res, Prediction) and not res.is_batch
        np.testing.assert_allclose(res.probabilities, expected, rtol=1e-6)
        k = int(expected[1] >= 0.5)
        assert res.label == k and isinstance(res.label, int)
        assert res.class_name == ["down", "up"][k]
        assert res.confidence == pytest.approx(float(expected.max()))
        assert (res.model_name, res.model_version, res.fallback, res.routed_to) == (
            "default.direction.SPX.1d",
            "1",
            False,
            None,
        )


def test_classifier_batch_returns_arrays(clf: Predictor, clf_bundle: Path, rows) -> None:
    res = clf.predict(rows[:50])
    expected = raw_probs(clf_bundle, rows[:50])
    assert res.is_batch
    np.testing.assert_allclose(res.probabilities, expected, rtol=1e-6)
    np.testing.assert_array_equal(res.label, (expected[:, 1] >= 0.5).astype(int))
    assert list(res.class_name[:3]) == [["down", "up"][int(v)] for v in res.label[:3]]
    np.testing.assert_allclose(res.confidence, expected.max(axis=1), rtol=1e-6)
    assert not res.fallback.any()
    # a list of rows and a list of dicts are batches too
    as_list = clf.predict(rows[:3].tolist())
    as_dicts = clf.predict([dict(zip(FEATURES, r)) for r in rows[:3].tolist()])
    np.testing.assert_allclose(as_list.probabilities, expected[:3], rtol=1e-6)
    np.testing.assert_allclose(as_dicts.probabilities, expected[:3], rtol=1e-6)
    d = res.to_dict()
    assert len(d["label"]) == 50 and d["model_version"] == "1"
    json.dumps(d)


def test_decision_threshold_moves_the_label(bundle_copy, clf_bundle, rows) -> None:
    p = Predictor.load(
        bundle_copy(clf_bundle, edit=lambda s: s["thresholds"].update(decision=0.99))
    )
    res = p.predict(rows[:100])
    np.testing.assert_array_equal(res.label, (res.probabilities[:, 1] >= 0.99).astype(int))
    assert res.label.sum() < (res.probabilities[:, 1] >= 0.5).sum()
    # without a decision threshold the model's own label output decides
    q = Predictor.load(bundle_copy(clf_bundle, "nothr", edit=lambda s: s.update(thresholds={})))
    raw = ort.InferenceSession(str(clf_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    labels = raw.run(["label"], {"input": rows[:20]})[0]
    np.testing.assert_array_equal(q.predict(rows[:20]).label, labels)
    assert q.predict(rows[0]).label == labels[0]


# -- other tasks ---------------------------------------------------------------------------
def test_regressor(reg_bundle: Path) -> None:
    p = Predictor.load(reg_bundle)
    x = np.linspace(-1, 1, 8).astype(np.float32)
    sess = ort.InferenceSession(str(reg_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = sess.run(None, {"input": np.stack([x, -x])})[0].reshape(-1)
    one = p.predict(dict(zip(SMALL_FEATURES, x.tolist())))
    assert isinstance(one, ValuePrediction) and isinstance(one.value, float)
    assert one.value == pytest.approx(float(expected[0]), rel=1e-6)
    batch = p.predict(np.stack([x, -x]))
    np.testing.assert_allclose(batch.value, expected, rtol=1e-6)
    assert batch.value.shape == (2,)


def test_anomaly(anomaly_bundle: Path, bundle_copy) -> None:
    p = Predictor.load(anomaly_bundle)
    normal, outlier = np.zeros(8, np.float32), np.full(8, 8.0, np.float32)
    a, b = p.predict(normal), p.predict(outlier)
    assert isinstance(a, AnomalyPrediction)
    assert (a.is_anomaly, b.is_anomaly) == (False, True)
    assert b.score < a.score
    batch = p.predict(np.stack([normal, outlier]))
    np.testing.assert_array_equal(batch.is_anomaly, [False, True])
    # with thresholds.anomaly_score the score decides: a very high threshold flags everything
    q = Predictor.load(
        bundle_copy(anomaly_bundle, edit=lambda s: s["thresholds"].update(anomaly_score=1e9))
    )
    assert q.predict(normal).is_anomaly is True


def test_multi_output(multi_bundle: Path) -> None:
    p = Predictor.load(multi_bundle)
    x = np.array([1.0, 2.0, -1.0, 0.5], np.float32)
    res = p.predict(x)
    assert isinstance(res, MultiPrediction)
    assert set(res.keys()) == {"direction_prob", "expected_return"}
    logit, ret = (x @ MULTI_W).tolist()
    assert res["direction_prob"] == pytest.approx(1 / (1 + math.exp(-logit)), rel=1e-6)
    assert res["expected_return"] == pytest.approx(ret, rel=1e-5)
    batch = p.predict(np.stack([x, 2 * x]))
    assert batch["expected_return"].shape == (2,)
    assert batch["expected_return"][1] == pytest.approx(2 * ret, rel=1e-5)
    assert json.loads(json.dumps(res.to_dict()))["outputs"]["expected_return"] == pytest.approx(
        ret, rel=1e-5
    )


# -- one decoder class per task, chosen once at load ----------------------------------------
def test_each_task_has_its_decoder_chosen_at_load(
    clf: Predictor, reg_bundle: Path, anomaly_bundle: Path, multi_bundle: Path, rows
) -> None:
    assert set(DECODERS) == set(TASKS)
    served = {
        "classifier": clf,
        "regressor": Predictor.load(reg_bundle),
        "anomaly": Predictor.load(anomaly_bundle),
        "multi": Predictor.load(multi_bundle),
    }
    for task, p in served.items():
        model = p._m
        assert p.task == task and type(model.decoder) is DECODERS[task]
        assert model.fetch is model.decoder.fetch  # what the session fetches is what it decodes
    decoder = clf._m.decoder
    clf.predict(rows[0]), clf.predict(rows[:3])
    assert clf._m.decoder is decoder  # calls reuse the decoder built at load
