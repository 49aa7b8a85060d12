"""Predictor: load-time checks, typed results per task, input validation, fallback."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from serving_bundles import FEATURES, MULTI_W, SMALL_FEATURES, reseal

from serving import (
    AnomalyPrediction,
    BundleError,
    InputError,
    MultiPrediction,
    Prediction,
    Predictor,
    ValuePrediction,
)


@pytest.fixture(scope="module")
def clf(clf_bundle: Path) -> Predictor:
    return Predictor.load(clf_bundle)


def raw_probs(bundle: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(["probabilities"], {"input": x.reshape(-1, 60).astype(np.float32)})[0]


# -- load ----------------------------------------------------------------------------------
def test_load_sets_up_session_as_designed(clf: Predictor) -> None:
    assert (clf.name, clf.version, clf.task) == ("default.direction.SPX.1d", "1", "classifier")
    assert clf.features == tuple(FEATURES)
    assert clf.session.get_providers() == ["CPUExecutionProvider"]
    opts = clf.session.get_session_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)
    p2 = Predictor(clf.path, intra_op_num_threads=2)
    assert p2.session.get_session_options().intra_op_num_threads == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["input"].update(name="x"), "is not the graph's input 'input'"),
        (lambda s: s.update(features=FEATURES[:59]), "lists 59 features but the graph input"),
        (
            lambda s: s["outputs"].append({"name": "nope", "kind": "score"}),
            "'nope' is not a graph output",
        ),
        (lambda s: s.update(classes=[0, 1, 2], class_names=["a", "b", "c"]), "3 classes"),
        (lambda s: s.update(task="ranker"), "'task' must be one of"),
        (lambda s: s.update(features=FEATURES[:-1] + ["f00"]), "unique"),
        (
            lambda s: s["fallback"]["rules"][0]["when"][0].__setitem__(0, "zzz"),
            "unknown feature 'zzz'",
        ),
        (lambda s: s["fallback"]["rules"][0]["when"][0].__setitem__(1, "=="), "operator '=='"),
        (lambda s: s["fallback"]["default"].update(label=5), "'label' must be one of"),
        (lambda s: s["input"].update(dtype="float64"), "float32"),
    ],
)
def test_load_refuses_schema_that_does_not_match_graph(
    bundle_copy, clf_bundle, edit, message
) -> None:
    with pytest.raises(BundleError, match=message):
        Predictor.load(bundle_copy(clf_bundle, edit=edit))


def test_load_refuses_missing_or_corrupt_files(bundle_copy, clf_bundle, tmp_path) -> None:
    with pytest.raises(BundleError, match="not found"):
        Predictor.load(tmp_path / "nothing")
    broken = bundle_copy(clf_bundle, "broken")
    (broken / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(BundleError, match="model.onnx does not match schema.json"):
        Predictor.load(broken)  # the seal refuses it before onnxruntime parses it
    with pytest.raises(BundleError, match="cannot be loaded"):
        Predictor.load(reseal(broken))  # sealed that way: onnxruntime refuses it
    bad_json = bundle_copy(clf_bundle, "bad_json")
    (bad_json / "schema.json").write_text("{")
    with pytest.raises(BundleError, match="not valid JSON"):
        Predictor.load(bad_json)
    no_model = bundle_copy(clf_bundle, "no_model")
    (no_model / "model.onnx").unlink()
    with pytest.raises(BundleError, match="model.onnx not found"):
        Predictor.load(no_model)


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


# -- validation ----------------------------------------------------------------------------
def _row(**overrides: object) -> dict:
    d = {f: 0.1 for f in FEATURES}
    d.update(overrides)
    return d


@pytest.mark.parametrize(
    ("x", "message", "feature"),
    [
        (_row(f07=float("nan")), "feature 'f07' is NaN", "f07"),
        (_row(f08=float("inf")), "feature 'f08' is infinite", "f08"),
        pytest.param(
            _row(f09=1e39),
            "feature 'f09' is out of float32 range",
            "f09",
            marks=pytest.mark.filterwarnings("ignore:overflow encountered in cast"),
        ),
        (_row(f10="1.5"), "feature 'f10' is not numeric", "f10"),
        (_row(f11=None), "feature 'f11' is not numeric", "f11"),
        (_row(f12=[1.0]), "feature 'f12' is not numeric", "f12"),
        (_row(bogus=1.0), "unknown feature(s) 'bogus'", "bogus"),
        ({k: v for k, v in _row().items() if k != "f33"}, "missing feature(s) 'f33'", "f33"),
        ([0.1] * 59, "expected 60 features in schema order, got 59: missing 'f59'", "f59"),
        ([0.1] * 61, "got 61: 1 extra value(s) after 'f59'", None),
        ([0.1] * 20 + [float("nan")] + [0.1] * 39, "feature 'f20' is NaN", "f20"),
        (np.full((2, 60), 0.1, np.float32).tolist() + [[0.1] * 3], "row 2: expected 60", "f03"),
        ("0.1,0.2", "got str", None),
        (None, "got NoneType", None),
        (np.zeros((0, 60), np.float32), "empty batch", None),
        (np.zeros((1, 2, 60), np.float32), "shape (1, 2, 60)", None),
    ],
)
def test_input_errors_name_the_feature(
    clf: Predictor, x, message: str, feature: str | None
) -> None:
    with pytest.raises(InputError) as info:
        clf.predict(x)
    assert message in str(info.value)
    assert info.value.feature == feature
    assert isinstance(info.value, ValueError)


def test_batch_error_names_row(clf: Predictor, rows) -> None:
    bad = rows[:5].copy()
    bad[3, 17] = np.nan
    with pytest.raises(InputError, match=r"row 3: feature 'f17' is NaN") as info:
        clf.predict(bad)
    assert info.value.row == 3


def test_stats_count_calls_rows_and_errors(clf_bundle: Path, rows) -> None:
    p = Predictor.load(clf_bundle)
    p.predict(rows[0])
    p.predict(rows[:10])
    with pytest.raises(InputError):
        p.predict([1.0])
    assert p.stats == {
        "calls": 3,
        "rows": 11,
        "errors": 1,
        "fallbacks": 0,
        "reloads": 0,
        "reload_errors": 0,
    }


# -- fallback ------------------------------------------------------------------------------
def test_fallback_rules_answer_invalid_input_and_are_counted(clf_bundle: Path) -> None:
    p = Predictor.load(clf_bundle, fallback=True)
    # f00 < -2 holds and is valid -> rule 0 (label 1, confidence 0.5)
    res = p.predict(_row(f00=-3.0, f05=float("nan")))
    assert (res.label, res.class_name, res.confidence, res.fallback) == (1, "up", 0.5, True)
    assert res.probabilities is None and res.model_version == "1"
    # the rule's own feature is invalid -> the rule does not match -> default
    res = p.predict(_row(f00=float("nan")))
    assert (res.label, res.confidence, res.fallback) == (0, 0.0, True)
    # not interpretable at all -> default
    assert p.predict("garbage").label == 0
    # a valid row still goes to the model
    assert p.predict(_row()).fallback is False
    assert p.stats["fallbacks"] == 3 and p.stats["errors"] == 0 and p.stats["calls"] == 4
    # per call override
    with pytest.raises(InputError):
        p.predict("garbage", fallback=False)
    q = Predictor.load(clf_bundle)
    assert q.predict("garbage", fallback=True).fallback is True


def test_fallback_in_a_batch_only_replaces_invalid_rows(clf_bundle: Path, rows) -> None:
    p = Predictor.load(clf_bundle, fallback=True)
    batch = rows[:4].tolist()
    batch[1][0] = float("nan")
    batch[2] = [-3.0] + [0.0] * 10  # wrong length: rules cannot read it -> default
    res = p.predict(batch)
    full = Predictor.load(clf_bundle).predict(rows[[0, 3]])
    np.testing.assert_array_equal(res.fallback, [False, True, True, False])
    np.testing.assert_allclose(res.probabilities[[0, 3]], full.probabilities)
    assert np.isnan(res.probabilities[1]).all()
    assert res.label.tolist() == [full.label[0], 0, 0, full.label[1]]
    assert res.confidence[1] == 0.0 and p.stats["fallbacks"] == 2
    d = res.to_dict()
    assert d["probabilities"][1] == [None, None] and d["fallback"] == [False, True, True, False]
    json.dumps(d)


def test_fallback_for_other_tasks(reg_bundle: Path, multi_bundle: Path) -> None:
    reg = Predictor.load(reg_bundle, fallback=True)
    assert (reg.predict([float("nan")] * 8).value, reg.stats["fallbacks"]) == (0.0, 1)
    multi = Predictor.load(multi_bundle, fallback=True)
    res = multi.predict({"a": 2.0, "b": "x", "c": 0.0, "d": 0.0})
    assert res.fallback and res["direction_prob"] == 0.9 and res["expected_return"] == 0.01
    mixed = multi.predict([[0.0, 0.0, 0.0, 0.0], [2.0, None, 0.0, 0.0]])
    assert mixed["direction_prob"].tolist() == pytest.approx([0.5, 0.9])
    np.testing.assert_array_equal(mixed.fallback, [False, True])


def test_no_fallback_in_schema_means_input_error(anomaly_bundle: Path) -> None:
    p = Predictor.load(anomaly_bundle, fallback=True)
    with pytest.raises(InputError, match="'x3' is NaN"):
        p.predict([0.0, 0.0, 0.0, float("nan"), 0.0, 0.0, 0.0, 0.0])
