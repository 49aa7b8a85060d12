"""The correlation_regime family: contract, ONNX parity, recorded-switch detection and the naive tercile rule."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from features.correlation import correlation_features, forward_correlation_regime, universe_closes
from models.families.correlation_regime import (
    CorrelationRegimeModel,
    detection_scores,
    detection_window,
    flag_onsets,
)

WINDOW, RANK_WINDOW = 40, 500


@pytest.fixture(scope="module")
def universe_rows() -> dict:
    """8,000 daily bars of 12 members (38 recorded switches): rows, labels, first half fits, second half scores."""
    from pipelines.ingest.synthetic_universe import SyntheticUniverse

    sample = SyntheticUniverse(seed=3, n_bars=8000).generate()
    closes = universe_closes({s: b["close"] for s, b in sample.bars.items()})
    feats = correlation_features(closes, WINDOW, RANK_WINDOW)
    label = forward_correlation_regime(closes, WINDOW, RANK_WINDOW)
    keep = (feats.notna().all(axis=1) & label.notna()).to_numpy()
    X, y = feats[keep].to_numpy(np.float32), label[keep].to_numpy().astype(int)
    half = len(X) // 2
    model = CorrelationRegimeModel(feature_names=tuple(feats.columns)).fit(X[:half], y[:half])
    return {"X": X, "y": y, "index": feats.index[keep], "half": half, "model": model, "sample": sample,
            "names": tuple(feats.columns)}


def test_contract_unfitted_clone_and_determinism(universe_rows: dict) -> None:
    X, y, half = universe_rows["X"], universe_rows["y"], universe_rows["half"]
    fresh = CorrelationRegimeModel(feature_names=universe_rows["names"])
    with pytest.raises(NotFittedError):
        fresh.predict(X[:5])
    again = clone(fresh).fit(X[:half], y[:half])
    np.testing.assert_array_equal(again.predict_proba(X[half:]), universe_rows["model"].predict_proba(X[half:]))
    with pytest.raises(ValueError, match="feature_names"):
        CorrelationRegimeModel().fit(X[:half], y[:half])
    with pytest.raises(ValueError, match="NaN"):
        universe_rows["model"].predict(np.full((2, X.shape[1]), np.nan))


def test_clusters_are_ordered_tight_to_dispersed_and_match_the_true_regime(universe_rows: dict) -> None:
    model, half = universe_rows["model"], universe_rows["half"]
    averages = model.centroids_[:, 0] * model.scale_[0] + model.mean_[0]
    assert averages[0] > averages[1] > averages[2]
    truth = universe_rows["sample"].regimes.reindex(universe_rows["index"][half:])
    truth = truth.map({"tight": 0, "normal": 1, "dispersed": 2}).to_numpy()
    agreement = float(np.mean(model.current_regime(universe_rows["X"][half:]) == truth))
    assert agreement > 0.7  # the window lags each switch by up to 40 bars


def test_onnx_outputs_match_the_estimator(universe_rows: dict) -> None:
    model, X = universe_rows["model"], universe_rows["X"][universe_rows["half"]:]
    session = ort.InferenceSession(model.to_onnx().SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == ["correlation_regime", "probabilities", "average_correlation", "regime_change_probability",
                     "current_regime"]
    for rows in (X[:1], X):
        out = dict(zip(names, session.run(None, {"input": rows})))
        np.testing.assert_allclose(out["probabilities"], model.predict_proba(rows), atol=1e-5)
        np.testing.assert_allclose(out["regime_change_probability"][:, 0], model.change_probability(rows), atol=1e-5)
        np.testing.assert_allclose(out["average_correlation"][:, 0], model.average_correlation(rows), atol=1e-6)
        np.testing.assert_array_equal(out["correlation_regime"], model.predict(rows))
        np.testing.assert_array_equal(out["current_regime"][:, 0].astype(int), model.current_regime(rows))
    assert ((out["average_correlation"] >= 0) & (out["average_correlation"] <= 1)).all()


def test_recorded_switches_are_flagged_out_of_sample(universe_rows: dict) -> None:
    model, half = universe_rows["model"], universe_rows["half"]
    switches = pd.DatetimeIndex(universe_rows["sample"].switches["ts"])
    scores = detection_scores(universe_rows["index"][half:], model.change_probability(universe_rows["X"][half:]),
                              switches, detection_bars=detection_window(WINDOW), refractory=WINDOW)
    assert scores["n_switches"] >= 12
    assert scores["detection_rate"] >= 0.8
    assert scores["false_alarm_rate"] < 10.0  # per 1,000 rows
    # A change probability that never rises flags nothing: every switch is missed.
    flat = detection_scores(universe_rows["index"][half:], np.zeros(len(universe_rows["X"]) - half), switches,
                            detection_bars=detection_window(WINDOW), refractory=WINDOW)
    assert flat["detection_rate"] == 0.0 and flat["n_flags"] == 0.0


def test_forward_regime_beats_the_current_tercile_rule(universe_rows: dict) -> None:
    from sklearn.metrics import roc_auc_score

    from models.naive import NaiveContext, correlation_regime_rules

    X, y, half = universe_rows["X"], universe_rows["y"], universe_rows["half"]
    ctx = NaiveContext(bars=pd.DataFrame(), index=universe_rows["index"], y=y, X=X,
                       feature_names=list(universe_rows["names"]), train_idx=np.arange(half),
                       holdout_idx=np.arange(half, len(X)), horizon=WINDOW)
    rules = correlation_regime_rules(ctx)
    model_auc = roc_auc_score(y[half:], universe_rows["model"].predict_proba(X[half:]), multi_class="ovr")
    for name, proba in rules.items():
        assert model_auc > roc_auc_score(y[half:], proba, multi_class="ovr"), name


def test_flag_onsets_counts_rises_once_per_refractory_period() -> None:
    p = np.array([0.1, 0.6, 0.4, 0.7, 0.1, 0.1, 0.1, 0.9, 0.2])
    np.testing.assert_array_equal(flag_onsets(p, 0.5, refractory=0), [1, 3, 7])
    np.testing.assert_array_equal(flag_onsets(p, 0.5, refractory=3), [1, 7])


def test_bundle_answers_in_serving_with_the_named_outputs(universe_rows: dict, tmp_path) -> None:
    import serving
    from models.bundle import spec_schema, write_bundle
    from models.catalog import spec_by_name

    model, X = universe_rows["model"], universe_rows["X"][universe_rows["half"]:]
    spec = spec_by_name("correlation_regime_w40")
    schema = spec_schema(spec, model={"name": "t.correlation_regime_w40.UNIV_SYN", "version": "1"},
                         feature_set_version="corr-test", features=list(universe_rows["names"]))
    predictor = serving.Predictor.load(write_bundle(tmp_path / "bundle", model.to_onnx(), schema))
    answer = predictor.predict(X[0])
    assert answer.class_name == spec.class_names[int(model.predict(X[:1])[0])]
    assert answer.extras["average_correlation"] == pytest.approx(float(model.average_correlation(X[:1])[0]), abs=1e-6)
    assert answer.extras["regime_change_probability"] == pytest.approx(
        float(model.change_probability(X[:1])[0]), abs=1e-5)
    np.testing.assert_allclose(answer.probabilities, model.predict_proba(X[:1])[0], atol=1e-5)
