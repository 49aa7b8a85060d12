"""Naive rules: fitted on the training rows only, and blind to bars after each row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.metrics import primary_score
from models.naive import NaiveContext, naive_predictions
from models.catalog import spec_by_name
from pipelines.ingest.synthetic import autoregressive_market


def context(bars: pd.DataFrame, spec_name: str, warmup: int = 120, holdout: float = 0.3) -> tuple[NaiveContext, object]:
    spec = spec_by_name(spec_name)
    label = spec.label_for(bars)
    rows = label.iloc[warmup:].dropna()
    y = rows.to_numpy()
    y = y.astype(np.int64) if spec.task == "classifier" else y
    n = len(y)
    cut = int(n * (1 - holdout))
    return NaiveContext(bars=bars, index=pd.DatetimeIndex(rows.index), y=y, X=np.zeros((n, 0)), feature_names=[],
                        train_idx=np.arange(cut - spec.horizon), holdout_idx=np.arange(cut, n),
                        horizon=spec.horizon), spec


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    return autoregressive_market(5, 4000, phi=0.6)


@pytest.fixture(scope="module")
def walk() -> pd.DataFrame:
    return autoregressive_market(6, 4000, phi=0.0, freq="1D", sigma=0.01)


def test_the_last_return_sign_finds_a_planted_ar1_and_its_orientation(planted):
    ctx, spec = context(planted, "direction_h1")
    auc = primary_score(spec, ctx.y[ctx.holdout_idx], naive_predictions("direction", ctx)["last_return_sign"])
    assert auc == pytest.approx(0.5 + np.arcsin(0.6) / np.pi, abs=0.03)  # 0.705 in theory
    flipped = autoregressive_market(5, 4000, phi=-0.6)  # reversal: the rule turns itself around
    ctx, spec = context(flipped, "direction_h1")
    assert primary_score(spec, ctx.y[ctx.holdout_idx], naive_predictions("direction", ctx)["last_return_sign"]) > 0.65


def test_rules_on_a_random_walk_where_nothing_is_predictable_score_as_chance(walk):
    ctx, spec = context(walk, "direction_h5")
    auc = primary_score(spec, ctx.y[ctx.holdout_idx], naive_predictions("direction", ctx)["last_return_sign"])
    assert abs(auc - 0.5) < 0.05


def test_the_structural_labels_are_predictable_on_a_random_walk_by_their_naive_rules(walk):
    """Momentum's and the gate's labels carry structure even on a random walk: their naive rules
    find it, so a model must do better than that to be kept."""
    ctx, spec = context(walk, "momentum_h10")
    assert primary_score(spec, ctx.y[ctx.holdout_idx], naive_predictions("momentum", ctx)["past_move_size_logit"]) > 0.65
    ctx, spec = context(walk, "gate_h20")
    rules = naive_predictions("gate", ctx)
    assert set(rules) == {"label_scale_logit"}  # no book features here: the fallback rule cannot run
    assert primary_score(spec, ctx.y[ctx.holdout_idx], rules["label_scale_logit"]) > 0.55


@pytest.mark.parametrize("spec_name", ["direction_h1", "direction3_h5", "momentum_h10", "regime_h20", "risk_h20",
                                       "volatility_h5", "gate_h20"])
def test_no_rule_sees_a_bar_after_its_row(walk, spec_name):
    """Changing every bar after the first holdout row leaves the rules' forecast at that row unchanged."""
    ctx, spec = context(walk, spec_name)
    first = ctx.index[ctx.holdout_idx[0]]
    changed = walk.copy()
    later = changed.index > first
    changed.loc[later, ["open", "high", "low", "close"]] *= 1.3
    changed.loc[later, "volume"] *= 5
    ctx_changed = NaiveContext(**{**ctx.__dict__, "bars": changed})
    before, after = naive_predictions(spec.family, ctx), naive_predictions(spec.family, ctx_changed)
    for name in before:
        np.testing.assert_allclose(np.asarray(before[name])[0], np.asarray(after[name])[0], rtol=1e-6,
                                   err_msg=f"{spec_name}/{name}")


def test_volatility_rules_are_garch_egarch_har_and_the_last_h_bars(walk):
    ctx, spec = context(walk, "volatility_h5")
    rules = naive_predictions("volatility", ctx)
    assert set(rules) == {"garch", "egarch", "har_rv", "last_h_rv"}
    y = ctx.y[ctx.holdout_idx]
    scores = {name: primary_score(spec, y, forecast) for name, forecast in rules.items()}
    assert all(np.isfinite(v) and v > 0 for v in scores.values())
    # On an i.i.d. walk the variance is constant: the fitted rules beat the noisy last-5-bar one.
    assert max(scores["garch"], scores["har_rv"]) < scores["last_h_rv"]


def test_anomaly_rule_flags_a_volume_spike(walk):
    bars = walk.copy()
    bars.iloc[3500, bars.columns.get_loc("volume")] *= 50
    ctx, _ = context(bars, "direction_h1")
    score = naive_predictions("anomaly", ctx)["robust_z_volume_range"]
    spike = int(np.flatnonzero(ctx.index[ctx.holdout_idx] == bars.index[3500])[0])
    assert score.argmax() == spike and score[spike] > 5
