"""Every model family the platform trains, served from its bundle.

For each spec of ``models.catalog.specs_for(["all"])`` the family's estimator is built by the spec
(with small, fast parameters), fitted on the synthetic market of ``tests/models/families`` and
its bundle written with ``models.bundle.write_bundle(dir, est.to_onnx(), spec_schema(...))``.
``serving.Predictor`` must load it and answer what the estimator answers natively, within the
spec's ``gates.max_onnx_abs_diff``, for one row (one window) and for a batch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.bundle import spec_schema, write_bundle
from models.catalog import specs_for
from models.specs import ModelSpec
from serving import (
    AnomalyPrediction,
    BundleError,
    InputError,
    MultiPrediction,
    Prediction,
    Predictor,
    ValuePrediction,
)
from tests.models.families.conftest import bars, feature_frame, market  # noqa: F401 (fixtures)

# Specs fitted on one symbol's feature rows. The others serve their bundles in their own family tests:
# chart_pattern takes OHLCV windows (tests/models/families/test_chart_pattern.py), execution replays
# episodes (test_execution.py), correlation_regime a universe's closes (test_correlation_regime.py),
# sentiment needs news features (test_sentiment.py), pattern_similarity carries its library
# (test_pattern_similarity.py); liquidity and returns resolve their hour horizons per timeframe and
# answer with one named output per target (tests/serving/test_serving_multi_output.py).
SERVED_ELSEWHERE = {"execution", "correlation_regime", "sentiment", "pattern_similarity", "liquidity", "returns"}
SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in specs_for(["all"])
                               if spec.rows is None and spec.family not in SERVED_ELSEWHERE}
N_ROWS = 2500  # rows of the feature frame used (the last ones); 80% train, the rest is served
N_SERVED = 120  # held-out rows (windows) compared with the native estimator

# Small models: the point is the bundle contract, not the model quality.
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "direction": {"n_estimators": 20, "num_leaves": 7, "min_child_samples": 20},
    "regime": {"n_estimators": 20, "num_leaves": 7, "min_child_samples": 20},
    "ensemble": {"method": "stack"},
    "volatility": {"n_estimators": 20, "num_leaves": 7, "min_child_samples": 20},
    "risk": {"n_estimators": 10, "max_depth": 5, "min_samples_leaf": 20},
    "momentum": {"max_train_rows": 500},
    "gate": {"n_estimators": 20, "max_depth": 2, "min_samples_leaf": 20},
    "trade_quality": {"n_estimators": 20, "num_leaves": 3, "min_child_samples": 5},
    "sequence": {"hidden_size": 8, "epochs": 1, "batch_size": 256, "n_threads": 1},
    "anomaly": {"n_estimators": 30, "max_samples": 256},
}


@dataclass
class Served:
    spec: ModelSpec
    est: Any
    bundle: Path
    predictor: Predictor
    X: np.ndarray  # held-out rows [N, n] or windows [N, w, n], float32
    features: list[str]

    @property
    def tol(self) -> float:
        return self.spec.gates.max_onnx_abs_diff


def _fit(spec: ModelSpec, frame: Any, bars: Any) -> tuple[Any, np.ndarray]:
    """The spec's estimator fitted on the first 80% of ``frame``; returns it and the held-out X."""
    from features.labels import forward_return

    y_all = spec.label_for(bars).reindex(frame.index)
    keep = y_all.notna().to_numpy()
    X = frame.to_numpy(dtype=np.float32)[keep]
    y = y_all.to_numpy()[keep]
    y = y.astype(np.int64) if spec.task == "classifier" else y.astype(np.float64)
    fit_kw: dict[str, Any] = {}
    if spec.window:
        from models.families.sequence import make_windows

        fwd = forward_return(bars, spec.horizon).reindex(frame.index).to_numpy()[keep]
        X, y = make_windows(X, spec.window), y[spec.window - 1 :]
        fit_kw["forward_return"] = np.nan_to_num(fwd[spec.window - 1 :])
    cut = int(len(X) * 0.8)
    est = spec.build(dict(FAST_PARAMS[spec.family]))
    est.fit(X[:cut], y[:cut], **{k: v[:cut] for k, v in fit_kw.items()})
    return est, np.ascontiguousarray(X[cut:][:N_SERVED])


@pytest.fixture(scope="module")
def served(
    bars: Any,  # noqa: F811 (fixture)
    feature_frame: Any,  # noqa: F811 (fixture)
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str], Served]:
    """``served(spec_name)``: fit, write and load the spec's bundle (once per spec)."""
    frame = feature_frame.iloc[-N_ROWS:]
    features = [str(c) for c in frame.columns]
    root = tmp_path_factory.mktemp("family_bundles")
    cache: dict[str, Served] = {}

    def get(name: str) -> Served:
        if name not in cache:
            spec = SPECS[name]
            est, X = _fit(spec, frame, bars)
            model = {"name": f"default.{name}.SYN.1m", "version": "1", "family": spec.family}
            schema = spec_schema(
                spec, model=model, feature_set_version="fs-test", features=features
            )
            bundle = write_bundle(root / name, est.to_onnx(), schema)
            cache[name] = Served(spec, est, bundle, Predictor.load(bundle), X, features)
        return cache[name]

    return get


def _close(got: Any, want: Any, tol: float) -> None:
    np.testing.assert_allclose(
        np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64), rtol=0, atol=tol
    )


def _away_from(values: np.ndarray, threshold: float, tol: float) -> np.ndarray:
    """Rows whose native value is clearly on one side of a threshold (labels must agree there)."""
    far = np.abs(values - threshold) > 2 * tol
    if len(far) >= 20:
        assert far.mean() > 0.9  # the comparison covers nearly every row
    return far


class _Rows:
    """A one-row result seen as a batch of one (fields as arrays), to check both alike."""

    def __init__(self, r: Any):
        self._r = r

    def __getattr__(self, name: str) -> Any:
        v = getattr(self._r, name)
        if name in ("extras", "outputs"):
            return {k: np.asarray(e)[None] for k, e in v.items()}
        return np.asarray(v)[None]

    def __getitem__(self, key: str) -> Any:
        return self.outputs[key]

    def __iter__(self):
        return iter(self._r.outputs)


def _check_native(s: Served, result: Any, X: np.ndarray) -> None:
    """Compare a result (one row / window, or a batch) with the native estimator on ``X``."""
    est, tol, n = s.est, s.tol, len(X)
    if result.is_batch:
        r = result
        assert not r.fallback.any() and len(r.fallback) == n
    else:
        r = _Rows(result)
        assert result.fallback is False and n == 1
    if s.spec.task == "classifier":
        assert isinstance(result, Prediction)
        proba = np.asarray(est.predict_proba(X))
        _close(r.probabilities, proba, tol)
        thresholds = s.predictor.schema.thresholds
        if proba.shape[1] == 2:  # binary: labelled at the schema's decision threshold
            t = thresholds["decision"]
            want = (proba[:, 1] >= t).astype(np.int64)
            far = _away_from(proba[:, 1], t, tol)
        else:  # multi-class: the argmax (the estimator's own predict)
            want = np.asarray(est.predict(X))
            top2 = np.sort(proba, axis=1)[:, -2:]
            far = _away_from(top2[:, 1] - top2[:, 0], 0.0, tol)
        np.testing.assert_array_equal(r.label[far], want[far])
        names = np.array(s.spec.class_names)
        np.testing.assert_array_equal(r.class_name, names[r.label])
        _close(r.confidence, proba[np.arange(n), r.label], tol)
        if s.spec.window:  # the extra value output of sequence models
            assert set(r.extras) == {"expected_return"}
            assert r.extras["expected_return"].shape == (n,)
            _close(r.extras["expected_return"], est.predict_return(X), tol)
            if n > 1:
                assert np.std(r.extras["expected_return"]) > 0  # the return head was trained
        else:
            assert r.extras == {}
    elif s.spec.task == "anomaly":
        assert isinstance(result, AnomalyPrediction)
        native = est.score(X)  # higher is more anomalous; the bundle's score is 1 - it
        _close(r.extras["anomaly_score"], native, tol)
        _close(r.score, 1.0 - native, tol)
        far = _away_from(native, est.threshold_, tol)
        np.testing.assert_array_equal(r.is_anomaly[far], est.is_anomaly(X)[far])
    elif isinstance(result, MultiPrediction):  # trade_quality: two value outputs with meanings
        assert set(result) == {"expected_r_multiple", "win_probability"}
        _close(r["expected_r_multiple"], est.predict(X), tol)
        _close(r["win_probability"], est.win_probability(X), tol)
    else:
        assert isinstance(result, ValuePrediction) and s.spec.task == "regressor"
        _close(r.value, est.predict(X), tol)


def _row(r: Any, i: int) -> dict[str, Any]:
    """Row ``i`` of a batch result as plain values, comparable with a one-row result."""
    d = r.to_dict()
    if not r.is_batch:
        return d
    out = {}
    for k, v in d.items():
        if k in ("outputs", "extras"):
            out[k] = {kk: vv[i] for kk, vv in v.items()}
        elif isinstance(v, list):
            out[k] = v[i]
        else:
            out[k] = v
    return out


@pytest.mark.parametrize("name", list(SPECS))
def test_bundle_serves_native_outputs(served: Callable[[str], Served], name: str) -> None:
    s = served(name)
    p = s.predictor
    assert (p.task, p.window) == (
        "multi" if s.spec.family == "trade_quality" else s.spec.task,
        s.spec.window,
    )
    batch = p.predict(s.X)
    _check_native(s, batch, s.X)
    # one row (one window), as an array and as a dict by feature name: the native answer, and
    # the batch's row 0
    x0 = s.X[0]
    by_name = dict(zip(s.features, x0.T.tolist()))  # window: feature -> values, oldest first
    for one in (p.predict(x0), p.predict(by_name)):
        _check_native(s, one, s.X[:1])
        got, want = _row(one, 0), _row(batch, 0)
        for key in want:
            if key in ("probabilities", "outputs", "extras"):
                if isinstance(want[key], dict):
                    assert set(got[key]) == set(want[key])
                    for k in want[key]:
                        _close(got[key][k], want[key][k], 1e-6)
                else:
                    _close(got[key], want[key], 1e-6)
            elif isinstance(want[key], float):
                assert got[key] == pytest.approx(want[key], abs=1e-6), key
            else:
                assert got[key] == want[key], key
    assert json.dumps(batch.to_dict())  # JSON-safe, extras included
    assert p.stats["errors"] == 0


@pytest.mark.parametrize("name", list(SPECS))
def test_invalid_input_names_the_feature(served: Callable[[str], Served], name: str) -> None:
    s = served(name)
    feature, j = s.features[7], 7
    bad = s.X[0].copy()
    if s.spec.window:
        bad[5, j] = np.nan  # time step 5 of the window
    else:
        bad[j] = np.nan
    with pytest.raises(InputError, match=re.escape(repr(feature))) as e:
        s.predictor.predict(bad)
    assert e.value.feature == feature
    if s.spec.window:
        assert e.value.step == 5 and "time step 5" in str(e.value)
    # in a batch the row is named too
    batch = s.X[:3].copy()
    batch[2] = bad
    with pytest.raises(InputError, match="row 2") as e:
        s.predictor.predict(batch)
    assert (e.value.feature, e.value.row) == (feature, 2)
    # a non-numeric value by name
    by_name = dict(zip(s.features, s.X[0].T.tolist()))
    if s.spec.window:
        by_name[feature] = [*by_name[feature][:-1], "1.5"]
    else:
        by_name[feature] = "1.5"
    with pytest.raises(InputError, match=re.escape(repr(feature)) + ".* is not numeric") as e:
        s.predictor.predict(by_name)
    assert e.value.feature == feature


# -- sequence models -----------------------------------------------------------------------
def test_sequence_window_input_forms_and_shape_errors(served: Callable[[str], Served]) -> None:
    s = served("sequence_lstm_h5")
    p, w, n = s.predictor, s.spec.window, len(s.features)
    assert s.predictor.schema.raw["input"]["shape"] == ["batch", w, n]
    ref = p.predict(s.X[:4])
    as_lists = p.predict([x.tolist() for x in s.X[:4]])  # a list of windows (lists of steps)
    as_dicts = p.predict([dict(zip(s.features, x.T.tolist())) for x in s.X[:4]])
    as_f64 = p.predict(s.X[:4].astype(np.float64))
    for r in (as_lists, as_dicts, as_f64):
        _close(r.probabilities, ref.probabilities, 1e-6)
        _close(r.extras["expected_return"], ref.extras["expected_return"], 1e-6)
    one = p.predict(s.X[1].tolist())  # one window as a list of time steps
    assert one.label == ref.label[1] and one.extras["expected_return"] == pytest.approx(
        float(ref.extras["expected_return"][1]), abs=1e-6
    )
    expected = f"[{w}, {n}]"
    wrong = [
        s.X[0][1:],  # too few time steps
        s.X[0][:, 1:],  # too few features
        s.X[0][-1],  # one row of features, not a window
        s.X[:3, -1, :],  # a batch of rows [N, n]
        s.X[:2, 1:, :],  # a batch of short windows
    ]
    for x in wrong:
        with pytest.raises(InputError, match=rf"\[{w}, {n}\]"):
            p.predict(x)
    with pytest.raises(InputError, match=re.escape(expected)):
        p.predict([s.X[0][:, 0].tolist()])  # one time step's worth, as a list
    short = dict(zip(s.features, s.X[0].T.tolist()))
    short[s.features[3]] = short[s.features[3]][1:]
    with pytest.raises(InputError, match=re.escape(f"{s.features[3]!r}: expected {w} values")) as e:
        p.predict(short)
    assert e.value.feature == s.features[3]
    step = s.X[0].tolist()
    step[4] = step[4][:-1]  # time step 4 misses the last feature
    with pytest.raises(InputError, match="time step 4: expected") as e:
        p.predict(step)
    assert (e.value.step, e.value.feature) == (4, s.features[-1])
    with pytest.raises(InputError, match="empty batch"):
        p.predict(np.zeros((0, w, n), np.float32))


def test_sequence_fallback_uses_the_last_time_step(
    served: Callable[[str], Served], bundle_copy: Callable[..., Path]
) -> None:
    s = served("sequence_transformer_h5")
    f0 = s.features[0]
    rule = {
        "kind": "rule",
        "rules": [
            {
                "when": [[f0, ">", 1e6]],
                "output": {"label": 1, "confidence": 0.5, "expected_return": 0.001},
            }
        ],
        "default": {"label": 0, "confidence": 0.0},
    }
    p = Predictor.load(bundle_copy(s.bundle, "seq_fb", lambda d: d.update(fallback=rule)))
    hit = s.X[0].copy()
    hit[-1, 0] = 2e6  # the last step matches the rule ...
    hit[3, 1] = np.nan  # ... and the window is invalid elsewhere
    miss = hit.copy()
    miss[-1, 0], miss[0, 0] = 0.0, 2e6  # only an earlier step matches: not the rule
    r = p.predict(hit, fallback=True)
    assert (r.fallback, r.label, r.class_name, r.confidence, r.probabilities) == (
        True,
        1,
        "up",
        0.5,
        None,
    )
    assert r.extras == {"expected_return": 0.001}
    r = p.predict(miss, fallback=True)
    assert (r.fallback, r.label, r.extras) == (True, 0, {"expected_return": None})
    # a window too short (e.g. after a restart) falls back on its latest values
    short = {f: v[-5:] for f, v in zip(s.features, hit.T.tolist())}
    r = p.predict(short, fallback=True)
    assert (r.fallback, r.label) == (True, 1)
    # a batch: only the invalid windows fall back; unknown extras are NaN
    batch = p.predict([s.X[1], hit, miss], fallback=True)
    np.testing.assert_array_equal(batch.fallback, [False, True, True])
    np.testing.assert_array_equal(batch.label, [p.predict(s.X[1]).label, 1, 0])
    er = batch.extras["expected_return"]
    assert er[0] == pytest.approx(p.predict(s.X[1]).extras["expected_return"], abs=1e-6)
    assert er[1] == pytest.approx(0.001) and np.isnan(er[2])
    assert np.isnan(batch.probabilities[1:]).all()
    assert p.stats["fallbacks"] == 5


def test_sequence_schema_is_checked_against_the_graph(
    served: Callable[[str], Served], bundle_copy: Callable[..., Path]
) -> None:
    s = served("sequence_lstm_h5")
    w = s.spec.window

    def no_window(d: dict) -> None:
        del d["window"]
        del d["input"]["shape"]

    cases = [
        (no_window, "needs 'window'"),
        (lambda d: d.update(window=w - 1), f"has {w} time steps"),
        (lambda d: d.update(window=w - 1) or d["input"].pop("shape"), f"takes {w}$"),
        (lambda d: d.update(window=0), "positive integer"),
    ]
    for i, (edit, message) in enumerate(cases):
        with pytest.raises(BundleError, match=message):
            Predictor.load(bundle_copy(s.bundle, f"seq_bad{i}", edit))


def test_reload_refuses_other_extras(
    served: Callable[[str], Served], bundle_copy: Callable[..., Path]
) -> None:
    s = served("sequence_lstm_h5")
    p = Predictor.load(s.bundle)

    def drop_extra(d: dict) -> None:
        d["outputs"] = d["outputs"][:2]
        d["model"]["version"] = "2"

    plain = bundle_copy(s.bundle, "seq_plain", drop_extra)
    with pytest.raises(BundleError, match="extras"):
        p.reload(plain)
    assert p.version == "1"
    p.reload(plain, allow_schema_change=True)
    assert p.version == "2" and p.predict(s.X[0]).extras == {}


def test_http_and_benchmark_take_windows(served: Callable[[str], Served]) -> None:
    from fastapi.testclient import TestClient

    from serving._bench_core import run_benchmark
    from pipelines.app.rest import create_app

    s = served("sequence_lstm_h5")
    client = TestClient(create_app(s.predictor))
    want = s.predictor.predict(s.X[:2])
    one = client.post("/predict", json={"features": dict(zip(s.features, s.X[0].T.tolist()))})
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["label"] == int(want.label[0])
    assert body["extras"]["expected_return"] == pytest.approx(
        float(want.extras["expected_return"][0]), abs=1e-6
    )
    rows = client.post("/predict", json={"rows": [x.tolist() for x in s.X[:2]]}).json()
    assert rows["label"] == want.label.tolist()
    bad = client.post("/predict", json={"features": s.X[0][1:].tolist()})
    assert bad.status_code == 422 and f"[{s.spec.window}, {len(s.features)}]" in bad.text
    r = run_benchmark(s.bundle, n_calls=30, warmup=3, batch_rows=16, batch_repeats=1)
    assert r["window"] == s.spec.window and r["ratio_p50"] > 0 and r["batch_rows_per_s"] > 0


def test_sequence_log_records_the_last_time_step(served: Callable[[str], Served]) -> None:
    from serving import PredictionLog

    s = served("sequence_lstm_h5")
    log = PredictionLog()
    p = Predictor.load(s.bundle, log=log)
    p.predict(s.X[0])
    p.predict([dict(zip(s.features, x.T.tolist())) for x in s.X[:3]])  # the slow path
    one, batch = log.drain()
    assert list(one["features"]) == s.features
    _close(list(one["features"].values()), s.X[0, -1], 1e-6)
    assert len(batch["features"]) == 3
    _close(list(batch["features"][2].values()), s.X[2, -1], 1e-6)
    assert "expected_return" in one["output"]["extras"]


# -- gate, anomaly, regime, trade quality ----------------------------------------------------
def test_gate_decision_threshold_and_fallback_rule(served: Callable[[str], Served]) -> None:
    from models.families.gate import APPROVE_THRESHOLD, GATE_FALLBACK, apply_fallback

    s = served("gate_h20")
    assert s.predictor.schema.thresholds == {
        "approve": APPROVE_THRESHOLD,
        "decision": APPROVE_THRESHOLD,
    }
    served_all = s.predictor.predict(s.X)
    proba = s.est.predict_proba(s.X)[:, 1]
    far = _away_from(proba, APPROVE_THRESHOLD, s.tol)
    np.testing.assert_array_equal(served_all.label[far] == 1, s.est.approve(s.X)[far])
    between = (proba >= 0.5) & (proba < APPROVE_THRESHOLD)  # argmax says approve, the gate not
    assert (served_all.label[between] == 0).all()

    p = Predictor.load(s.bundle, fallback=True)
    names = s.features
    i_price, i_depth = names.index("price_dist"), names.index("depth_ratio")
    i_bad = next(i for i in range(len(names)) if i not in (i_price, i_depth))
    cases = [(-3.0, 0.5), (3.0, -0.5), (-3.0, 0.1), (-3.0, float("nan")), (0.0, 0.0)]
    rows = []
    for price, depth in cases:
        row = s.X[0].astype(np.float64)
        row[i_price], row[i_depth] = price, depth
        row[i_bad] = float("inf")  # invalid input: the model cannot answer
        rows.append(row)
        want = apply_fallback(GATE_FALLBACK, dict(zip(names, row.tolist())))
        got = p.predict(row)
        assert got.fallback is True and got.probabilities is None
        assert (got.label, got.confidence) == (want["label"], want["confidence"])
        assert got.class_name == ("approve" if want["label"] == 1 else "reject")
    assert [p.predict(row).label for row in rows] == [1, 1, 0, 0, 0]
    mixed = p.predict([s.X[1], rows[0], s.X[2], rows[2]])
    np.testing.assert_array_equal(mixed.fallback, [False, True, False, True])
    np.testing.assert_array_equal(mixed.label[[0, 2]], served_all.label[[1, 2]])
    np.testing.assert_array_equal(mixed.label[[1, 3]], [1, 0])
    assert np.isnan(mixed.probabilities[[1, 3]]).all()


def test_anomaly_bundle_keeps_its_extra_keys_and_flags_outliers(
    served: Callable[[str], Served],
) -> None:
    s = served("anomaly_iforest")
    raw = s.predictor.schema.to_dict()
    assert raw["anomaly_group_features"] == SPECS["anomaly_iforest"].schema_extras[
        "anomaly_group_features"
    ]
    assert raw["class_names"] == ["anomaly", "normal"] and raw["label"]["horizon_bars"] == 0
    assert s.predictor.schema.thresholds == {"anomaly_score": 0.01}
    outliers = s.X[:10] * 50.0  # far outside the training data
    r = s.predictor.predict(np.vstack([s.X[:20], outliers]))
    assert r.is_anomaly[20:].all()
    np.testing.assert_array_equal(r.is_anomaly, r.score < 0.01)
    _close(r.extras["anomaly_score"], 1.0 - r.score, 1e-6)
    one = s.predictor.predict(outliers[0])
    assert one.is_anomaly is True and one.extras["anomaly_score"] > 0.99


def test_regime_classes_and_trade_quality_meanings(served: Callable[[str], Served]) -> None:
    regime = served("regime_h20").predictor
    assert regime.schema.classes == (0, 1, 2, 3, 4)
    assert regime.schema.class_names == SPECS["regime_h20"].class_names
    r = regime.predict(served("regime_h20").X)
    assert r.probabilities.shape == (N_SERVED, 5) and set(r.class_name) <= set(
        SPECS["regime_h20"].class_names
    )
    tq = served("trade_quality")
    res = tq.predictor.predict(tq.X[0])
    assert isinstance(res, MultiPrediction) and 0.0 <= res["win_probability"] <= 1.0
    assert res.to_dict()["outputs"].keys() == {"expected_r_multiple", "win_probability"}
