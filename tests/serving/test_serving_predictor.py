"""Predictor: counters of calls, rows and errors; fallback answers of invalid input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from serving_bundles import feature_row

from serving import InputError, Predictor


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
    res = p.predict(feature_row(f00=-3.0, f05=float("nan")))
    assert (res.label, res.class_name, res.confidence, res.fallback) == (1, "up", 0.5, True)
    assert res.probabilities is None and res.model_version == "1"
    # the rule's own feature is invalid -> the rule does not match -> default
    res = p.predict(feature_row(f00=float("nan")))
    assert (res.label, res.confidence, res.fallback) == (0, 0.0, True)
    # not interpretable at all -> default
    assert p.predict("garbage").label == 0
    # a valid row still goes to the model
    assert p.predict(feature_row()).fallback is False
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
