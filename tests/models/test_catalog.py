"""The spec catalog: every family is there, its specs are consistent, labels are per bar."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from models.catalog import FAMILIES, family_names, spec_by_name, specs_for

# Specs whose horizons are in hours are resolved for the ``bars`` fixture's 1-minute timeframe.
ALL_SPECS = [spec.per_timeframe("1m") if spec.per_timeframe else spec for build in FAMILIES.values() for spec in build()]
# Per-bar labels; universe specs label a universe's joined closes (tests/pipelines/evaluation/test_universe.py).
BAR_SPECS = [spec for spec in ALL_SPECS if not spec.universe]
METRICS = {"classifier": {"auc", "log_loss"}, "regressor": {"rmse", "mae", "qlike", "rmsle", "shortfall_bps"},
           "anomaly": {"event_auc"}}
LOWER_IS_BETTER = {"log_loss", "rmse", "mae", "qlike", "rmsle", "shortfall_bps"}

# Every spec's label on the ``bars`` fixture: (known values, their sum, their sum of squares).
# A change here is a change of a label rule, which changes what every model of the spec learns.
LABEL_VALUES = {
    "anomaly_iforest": (3000, 0.0, 0.0),
    "direction_h1": (2999, 1471.0, 1471.0),
    "direction_h5": (2995, 1430.0, 1430.0),
    "direction3_h5": (2995, 2862.0, 4742.0),
    "ensemble_h5": (2995, 1430.0, 1430.0),
    "execution_ppo": (2970, 2970.0, 2970.0),
    "pattern_similarity_h1": (2999, 2907.0, 5231.0),
    "gate_h20": (2961, 1718.0, 1718.0),
    "momentum_h10": (2980, 754.0, 754.0),
    "regime_h20": (2860, 5344.0, 12820.0),
    "risk_h20": (2481, 138189.66292073223, 9891067.944473278),
    "sequence_lstm_h5": (2995, 1430.0, 1430.0),
    "sentiment_h10": (2990, 1388.0, 1388.0),  # dir_up_h10
    "sequence_transformer_h5": (2995, 1430.0, 1430.0),
    "trade_quality": (100, -14.990981832866096, 181.45715459587828),
    "volatility_h5": (2995, 3.686424218018799, 0.006732142620938288),
    "volatility_h20": (2980, 3.9905337118235473, 0.006722977223495331),
    "chart_pattern_cnn": (0, 0.0, 0.0),  # trained on generated patterns: no market label
    # multi-output specs: every target of the rows where all are known (1-minute bars: 6h = 360 bars)
    "liquidity_volume": (3 * 1560, 53970.174769685385, 625092.052523403),
    "returns_lgbm": (9 * 1560, -63.42374041879986, 9.295083368557357),
    "returns_direction_1h": (2940, 2492.0, 4744.0),
    "returns_mlp": (9 * 1560, -63.42374041879986, 9.295083368557357),
}


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    from pipelines.ingest.synthetic import SyntheticMarket

    return SyntheticMarket(seed=21, n_bars=3000).generate()[0]


def test_every_family_is_there_and_spec_names_are_unique():
    assert set(FAMILIES) == {"direction", "volatility", "regime", "anomaly", "risk", "momentum", "gate",
                             "trade_quality", "sequence", "ensemble", "execution", "chart_pattern",
                             "pattern_similarity", "correlation_regime", "sentiment", "liquidity", "returns"}
    names = [s.name for s in ALL_SPECS]
    assert len(names) == len(set(names))
    for family, build in FAMILIES.items():
        assert build() and all(spec.family == family for spec in build())


def test_specs_are_picked_by_family_or_by_name():
    assert family_names() == sorted(FAMILIES)
    assert [s.name for s in specs_for(["all"])] == [s.name for f in sorted(FAMILIES) for s in FAMILIES[f]()]
    chosen = specs_for(["direction_h5", "direction", "gate"])
    assert [s.name for s in chosen] == ["direction_h5", "direction_h1", "direction3_h5", "gate_h20"]
    assert spec_by_name("regime_h20").family == "regime"
    with pytest.raises(ValueError, match="unknown model family nope; known families: anomaly, chart_pattern, correlation_regime, direction"):
        specs_for(["nope"])
    with pytest.raises(ValueError, match="unknown model spec"):
        spec_by_name("nope")


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.name)
def test_spec_fields_are_consistent(spec):
    assert spec.metric in METRICS[spec.task]
    assert spec.greater_is_better == (spec.metric not in LOWER_IS_BETTER)
    if spec.task == "classifier":
        assert len(spec.class_names) >= 2
    assert (spec.window > 0) == (spec.family in ("sequence", "chart_pattern", "pattern_similarity"))
    assert (spec.rows is not None) == (spec.family == "chart_pattern")
    assert spec.horizon >= 0 and spec.description
    json.dumps(spec.schema_extras)  # schema.json material must serialize
    if spec.family in ("volatility", "risk", "trade_quality"):
        assert callable(spec.baselines)


@pytest.mark.parametrize("spec", BAR_SPECS, ids=lambda s: s.name)
def test_labels_are_per_bar_and_valid(spec, bars):
    label = spec.label_for(bars)
    if spec.targets:  # multi-output: one column per target, each a per-bar label
        assert list(label.columns) == list(spec.targets) and label.index.equals(bars.index)
        assert len(label.dropna()) >= 50 and np.isfinite(label.dropna().to_numpy()).all()
        assert label.iloc[-spec.horizon:].isna().any(axis=1).all()  # the longest horizon has no complete future
        return
    assert label.name == spec.label and label.index.equals(bars.index)
    if spec.rows is not None:  # its rows are supplied (generated), the market has no label for it
        assert label.isna().all()
        return
    known = label.dropna()
    assert len(known) >= 50
    assert np.isfinite(known.to_numpy()).all()
    if spec.task == "classifier":
        values = set(np.unique(known.to_numpy()))
        assert values <= set(map(float, range(len(spec.class_names)))) and len(values) >= 2
    if spec.horizon > 0 and spec.family != "trade_quality":
        assert label.iloc[-spec.horizon:].isna().all()  # the last bars have no complete future


def test_specs_that_share_a_label_name_share_its_values(bars):
    by_label: dict[str, list] = {}
    for spec in BAR_SPECS:
        by_label.setdefault(spec.label, []).append(spec)
    assert {s.name for s in by_label["label_returns"]} == {"returns_lgbm", "returns_mlp"}
    shared = {name: specs for name, specs in by_label.items() if len(specs) > 1}
    assert "dir_up_h5" in shared
    for specs in shared.values():
        first = specs[0].label_for(bars)
        for other in specs[1:]:
            if isinstance(first, pd.DataFrame):
                pd.testing.assert_frame_equal(other.label_for(bars), first)
            else:
                pd.testing.assert_series_equal(other.label_for(bars), first)


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.name)
def test_search_space_builds_a_cloneable_estimator(spec):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0)).ask()
    params = {**spec.search_space(trial), "random_state": 0}
    model = spec.build(params)
    for name, value in params.items():
        assert model.get_params()[name] == value
    assert callable(model.fit) and callable(model.to_onnx)
    assert clone(model).get_params().keys() == model.get_params().keys()


@pytest.mark.parametrize("spec", BAR_SPECS, ids=lambda s: s.name)
def test_label_values_are_pinned(spec, bars):
    known = spec.label_for(bars).dropna().to_numpy().reshape(-1)
    count, total, squares = LABEL_VALUES[spec.name]
    assert len(known) == count
    assert float(known.sum()) == pytest.approx(total, rel=1e-9, abs=1e-12)
    assert float((known * known).sum()) == pytest.approx(squares, rel=1e-9, abs=1e-12)


def test_universe_specs_label_joined_closes_not_one_symbols_bars(bars):
    spec = spec_by_name("correlation_regime_w40")
    assert spec.universe and not any(s.universe for s in BAR_SPECS)
    with pytest.raises(ValueError, match="members' closes"):
        spec.label_for(bars)


def test_fits_of_a_large_matrix_run_one_at_a_time():
    from models.specs import PARALLEL_FIT_MAX_BYTES

    spec = spec_by_name("direction_h1")
    assert spec.parallel_fits and spec.fit_threads(2) == 2 and spec.fit_threads(2, PARALLEL_FIT_MAX_BYTES) == 2
    assert spec.fit_threads(2, PARALLEL_FIT_MAX_BYTES + 1) == 1


def test_every_spec_that_supplies_its_rows_builds_them():
    """A spec with ``rows`` (chart_pattern's generated windows) trains on what it returns: calling it
    is the train step's first action (a NameError here once failed every chart_pattern train task)."""
    supplied = [spec for spec in ALL_SPECS if spec.rows is not None]
    assert [s.name for s in supplied] == ["chart_pattern_cnn"]
    for spec in supplied:
        rows = spec.rows(0.3)
        assert rows.X.shape[1:] == (spec.window, 5) and len(rows.X) == len(rows.y) > 100


def test_timeframe_problem_names_specs_whose_hour_horizons_monthly_bars_cannot_hold():
    from models.catalog import timeframe_problem

    assert timeframe_problem("liquidity_volume", "15m") is None and timeframe_problem("volatility_h5", "1mo") is None
    assert "cannot be resolved on 1mo bars" in timeframe_problem("returns_lgbm", "1mo")
    with pytest.raises(ValueError, match="unknown model spec 'no_such_spec'"):
        timeframe_problem("no_such_spec", "1d")  # a typo is an error, not a spec skipped for its bars
