"""The chart_pattern family: the CNN's contract and ONNX graph, held-out quality against its
naive rules, the bundle in serving, the platform's supplied rows, and rates on the S&P 500."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from models.families.chart_pattern import (
    OUTPUT_NAMES,
    ChartPatternCNN,
    chart_pattern_rules,
    generated_rows,
    market_windows,
    normalized_close_path,
    pattern_rates,
    per_class_report,
)
from models.families.chart_pattern_generator import PATTERN_NAMES, generate_patterns
from models.metrics import classifier_score
from models.onnx_export import run_onnx

SMALL = {"channels": 16, "epochs": 8, "batch_size": 128, "learning_rate": 5e-3, "n_threads": 1, "random_state": 3}


@pytest.fixture(scope="module")
def train():
    return generate_patterns(80, seed=101)


@pytest.fixture(scope="module")
def held_out():
    return generate_patterns(25, seed=202)  # other seed: other draws of every shape and augmentation


@pytest.fixture(scope="module")
def fitted(train):
    return ChartPatternCNN(**SMALL).fit(train.windows, train.pattern, forward_return=train.forward_return)


def test_sklearn_contract_and_bad_input(train):
    model = ChartPatternCNN(**{**SMALL, "epochs": 1})
    with pytest.raises(NotFittedError):
        model.predict(train.windows[:3])
    assert model.fit(train.windows[:100], train.pattern[:100]) is model  # no forward_return: BREAKOUT targets
    twin = clone(model)
    assert twin.get_params() == model.get_params() and not hasattr(twin, "net_")
    with pytest.raises(ValueError, match=r"\[N, window, 5\]"):
        model.predict(train.windows[:3, :, :4])
    bad = train.windows[:2].copy()
    bad[0, 5, 3] = -1.0
    with pytest.raises(ValueError, match="positive prices"):
        model.predict(bad)
    with pytest.raises(ValueError, match="pattern index"):
        ChartPatternCNN(**SMALL).fit(train.windows[:5], np.full(5, 12))
    with pytest.raises(ValueError, match="forward_return"):
        ChartPatternCNN(**SMALL).fit(train.windows[:5], train.pattern[:5], forward_return=np.zeros(4))


def test_onnx_outputs_match_torch_for_any_batch(fitted, held_out):
    graph = fitted.to_onnx()
    assert [o.name for o in graph.graph.output] == list(OUTPUT_NAMES)
    native = fitted.outputs(held_out.windows)
    for rows in (slice(0, 1), slice(0, 7), slice(None)):
        got = dict(zip(OUTPUT_NAMES, run_onnx(graph, held_out.windows[rows])))
        for name in ("probabilities", "confidence", "breakout_probabilities"):
            assert np.max(np.abs(got[name] - native[name][rows])) <= 1e-5, name
        np.testing.assert_array_equal(got["pattern_type"], native["pattern_type"][rows])
        np.testing.assert_array_equal(got["breakout_direction"], native["breakout_direction"][rows])
    proba = native["probabilities"]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(native["confidence"][:, 0], proba.max(axis=1), atol=1e-7)
    assert set(np.unique(native["breakout_direction"])) <= {-1.0, 0.0, 1.0}


def test_price_level_does_not_matter(fitted, held_out):
    scaled = held_out.windows.copy()
    scaled[:, :, :4] *= 37.0  # same shape at another price level
    np.testing.assert_allclose(fitted.predict_proba(scaled), fitted.predict_proba(held_out.windows), atol=1e-4)


def test_held_out_patterns_beat_the_naive_rules(fitted, train, held_out):
    """On other seeds than training: macro AUC above every naive rule, accuracy above the base
    rate and the best rule's, and the breakout direction mostly right."""
    X = np.concatenate([train.windows, held_out.windows])
    y = np.concatenate([train.pattern, held_out.pattern])
    train_idx, hold_idx = np.arange(len(train)), np.arange(len(train), len(X))
    rules = chart_pattern_rules(X, y, train_idx, hold_idx)
    assert set(rules) == {"base_rate", "nearest_template", "path_logit"}
    outputs = fitted.outputs(held_out.windows)
    proba, n_classes = outputs["probabilities"], len(PATTERN_NAMES)
    model_auc = classifier_score("auc", held_out.pattern, proba, n_classes)
    rule_auc = {name: classifier_score("auc", held_out.pattern, p, n_classes) for name, p in rules.items()}
    assert rule_auc["base_rate"] == pytest.approx(0.5)
    assert model_auc > max(rule_auc.values()) + 0.01, (model_auc, rule_auc)
    accuracy = float(np.mean(outputs["pattern_type"] == held_out.pattern))
    rule_accuracy = max(float(np.mean(p.argmax(axis=1) == held_out.pattern)) for p in rules.values())
    assert accuracy > rule_accuracy and accuracy > 2.5 / n_classes
    report = per_class_report(held_out.pattern, proba)
    assert report["support_head_and_shoulders"] == 25.0
    assert np.mean([report[f"recall_{name}"] for name in PATTERN_NAMES]) == pytest.approx(
        float(np.mean(outputs["pattern_type"] == held_out.pattern)), abs=1e-9)  # balanced classes
    moved = held_out.direction != 0
    direction = outputs["breakout_direction"][:, 0]
    assert np.mean(direction[moved] == held_out.direction[moved]) > 0.6


def test_the_platform_rows_are_generated_seeded_and_disjoint():
    rows = generated_rows(0.2, train_per_class=20)
    again = generated_rows(0.2, train_per_class=20)
    np.testing.assert_array_equal(rows.X, again.X)
    assert len(rows.train_idx) == 20 * len(PATTERN_NAMES) and len(rows.holdout_idx) == 5 * len(PATTERN_NAMES)
    assert rows.train_idx.max() < rows.holdout_idx.min() and rows.index.is_unique
    train_paths = normalized_close_path(rows.X[rows.train_idx])
    hold_paths = normalized_close_path(rows.X[rows.holdout_idx])
    closest = np.min(np.abs(hold_paths[:, None, :] - train_paths[None, :, :]).max(axis=2), axis=1)
    assert closest.min() > 1e-3  # no holdout window repeats a training window
    moved = rows.y != 0
    assert (np.sign(rows.next_return[moved]) != 0).all()
    with pytest.raises(ValueError, match="holdout_fraction"):
        generated_rows(1.0)


def test_bundle_answers_in_serving_with_the_three_outputs(fitted, held_out, tmp_path):
    from models.bundle import spec_schema, write_bundle
    from models.catalog import spec_by_name
    from serving import InputError, Predictor

    spec = spec_by_name("chart_pattern_cnn")
    schema = spec_schema(spec, model={"name": "default.chart_pattern_cnn.SYN1.1m", "version": "1"},
                         feature_set_version="generated", features=["open", "high", "low", "close", "volume"])
    predictor = Predictor.load(write_bundle(tmp_path / "bundle", fitted.to_onnx(), schema))
    assert predictor.window == 100 and predictor.task == "classifier"
    native = fitted.outputs(held_out.windows[:5])
    one = predictor.predict(held_out.windows[0])
    assert one.class_name == PATTERN_NAMES[int(native["pattern_type"][0])]
    assert one.confidence == pytest.approx(float(native["confidence"][0, 0]), abs=1e-5)
    assert one.extras["pattern_confidence"] == pytest.approx(one.confidence, abs=1e-6)
    assert one.extras["breakout_direction"] == float(native["breakout_direction"][0, 0])
    batch = predictor.predict(held_out.windows[:5])
    np.testing.assert_array_equal(batch.class_name, np.array(PATTERN_NAMES)[native["pattern_type"]])
    np.testing.assert_allclose(batch.extras["breakout_probabilities"], native["breakout_probabilities"], atol=1e-5)
    with pytest.raises(InputError):
        predictor.predict(held_out.windows[0][:50])  # half a window


def test_pattern_rates_on_the_sp500(fitted):
    """Reported, not gated: the share of S&P 500 daily windows called each pattern."""
    from arch.data import sp500

    bars = sp500.load().rename(columns=str.lower)[["open", "high", "low", "close", "volume"]]
    windows = market_windows(bars, step=5)
    assert windows.shape == ((len(bars) - 100) // 5 + 1, 100, 5)
    outputs = fitted.outputs(windows)
    rates = pattern_rates(outputs["pattern_type"], outputs["confidence"])
    assert set(rates) == set(PATTERN_NAMES) and sum(rates.values()) == pytest.approx(1.0)
    confident = pattern_rates(outputs["pattern_type"], outputs["confidence"], min_confidence=0.9)
    assert confident["none"] >= rates["none"]  # low-confidence calls count as none
    with pytest.raises(ValueError, match="OHLCV"):
        market_windows(bars.drop(columns="volume"))


def test_the_naive_rules_run_through_the_platform_context(train):
    import pandas as pd

    from models.naive import NaiveContext, naive_predictions

    n = len(train)
    ctx = NaiveContext(bars=pd.DataFrame(), index=pd.date_range("2000-01-01", periods=n, freq="min", tz="UTC"),
                       y=train.pattern, X=train.windows[:, -1, :], feature_names=["open", "high", "low", "close", "volume"],
                       train_idx=np.arange(n - 200), holdout_idx=np.arange(n - 200, n), horizon=10,
                       windows=train.windows)
    rules = naive_predictions("chart_pattern", ctx)
    assert set(rules) == {"base_rate", "nearest_template", "path_logit"}
    assert all(p.shape == (200, len(PATTERN_NAMES)) for p in rules.values())
    np.testing.assert_allclose(rules["path_logit"].sum(axis=1), 1.0, atol=1e-9)
    with pytest.raises(ValueError, match="windows"):
        naive_predictions("chart_pattern", NaiveContext(**{**ctx.__dict__, "windows": None}))
