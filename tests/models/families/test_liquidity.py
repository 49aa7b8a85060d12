"""The liquidity family on a small synthetic market with volume seasonality."""

from __future__ import annotations

import numpy as np
import pytest

import features
from models.catalog import spec_by_name
from models.naive import NaiveContext, naive_predictions
from models.metrics import primary_score
from models.outputs import build_estimator, native_output
from pipelines.evaluation.scoring import onnx_outputs, onnx_primary_output
from pipelines.ingest.synthetic import liquidity_market


@pytest.fixture(scope="module")
def data():
    bars = liquidity_market(seed=3, days=45)
    spec = spec_by_name("liquidity_volume", "15m")
    frame = features.compute(bars)
    y = spec.label_for(bars).to_numpy()
    keep = np.isfinite(frame.to_numpy()).all(axis=1) & np.isfinite(y).all(axis=1)
    X, y, index = frame.to_numpy(np.float32)[keep], y[keep], frame.index[keep]
    n = len(y)
    train, hold = np.arange(int(0.7 * n) - spec.horizon), np.arange(int(0.7 * n), n)
    return bars, spec, X, y, index, list(frame.columns), train, hold


def test_the_spec_resolves_hours_to_bars_per_timeframe():
    assert spec_by_name("liquidity_volume", "15m").horizon == 96
    assert spec_by_name("liquidity_volume", "1d").horizon == 1
    daily = spec_by_name("liquidity_volume", "1d").schema_extras["outputs"]
    assert [o["horizon_bars"] for o in daily] == [1, 1, 1]
    with pytest.raises(ValueError, match="resolve it"):
        spec_by_name("liquidity_volume").make_label(None)


def test_the_model_beats_both_naive_rules_and_exports_one_output_per_horizon(data):
    bars, spec, X, y, index, names, train, hold = data
    model = build_estimator(spec, {"n_estimators": 150, "learning_rate": 0.05, "num_leaves": 15}, names)
    model.fit(X[train], y[train])
    forecast = native_output(spec, model, X[hold])
    ctx = NaiveContext(bars=bars, index=index, y=y, X=X, feature_names=names, train_idx=train, holdout_idx=hold,
                       horizon=spec.horizon, target_horizons=(24, 48, 96), bar_hours=0.25)
    rules = naive_predictions("liquidity", ctx)
    assert set(rules) == {"seasonal_mean", "last_day"}
    score = primary_score(spec, y[hold], forecast)
    naive = {name: primary_score(spec, y[hold], p) for name, p in rules.items()}
    assert score < min(naive.values()), (score, naive)
    outputs = onnx_outputs(model.to_onnx().SerializeToString(), X[hold])
    assert list(outputs) == list(spec.targets)
    assert np.max(np.abs(onnx_primary_output(spec, outputs) - forecast)) <= spec.gates.max_onnx_abs_diff
    assert np.all(model.expected_volume(X[hold][:5]) > 0)


def test_the_seasonal_rule_uses_the_training_window_only(data):
    bars, spec, X, y, index, names, train, hold = data
    ctx = NaiveContext(bars=bars, index=index, y=y, X=X, feature_names=names, train_idx=train, holdout_idx=hold,
                       horizon=spec.horizon, target_horizons=(24, 48, 96), bar_hours=0.25)
    before = naive_predictions("liquidity", ctx)["seasonal_mean"]
    later = bars.copy()
    after_train = later.index > index[train[-1]]
    later.loc[after_train, "volume"] *= 10.0  # the holdout's volume changes; the training window's does not
    changed = naive_predictions("liquidity", NaiveContext(**{**ctx.__dict__, "bars": later}))
    np.testing.assert_allclose(changed["seasonal_mean"], before)
    assert not np.allclose(changed["last_day"], naive_predictions("liquidity", ctx)["last_day"])


def test_bad_targets_are_refused(data):
    _, spec, X, y, _, names, train, _ = data
    model = build_estimator(spec, {"n_estimators": 5}, names)
    with pytest.raises(ValueError, match="n_rows"):
        model.fit(X[train], y[train][:-3])
    bad = y[train].copy()
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(X[train], bad)
