from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from models.family_specs import EXTRA_FAMILIES
from models.specs import FAMILIES

ALL_EXTRA = [spec for build in EXTRA_FAMILIES.values() for spec in build()]
METRICS = {"classifier": {"auc", "log_loss"}, "regressor": {"rmse", "mae", "qlike"}, "anomaly": {"event_auc"}}
LOWER_IS_BETTER = {"log_loss", "rmse", "mae", "qlike"}


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    from pipelines.synthetic import SyntheticMarket

    return SyntheticMarket(seed=21, n_bars=3000).generate()[0]


def test_issue_5_families_are_all_there_and_do_not_clash():
    assert set(EXTRA_FAMILIES) == {"volatility", "regime", "anomaly", "risk", "momentum", "gate", "trade_quality",
                                   "sequence", "ensemble"}
    assert not set(EXTRA_FAMILIES) & set(FAMILIES)
    names = [s.name for s in ALL_EXTRA] + [s.name for build in FAMILIES.values() for s in build()]
    assert len(names) == len(set(names))
    for family, build in EXTRA_FAMILIES.items():
        assert build() and all(spec.family == family for spec in build())


@pytest.mark.parametrize("spec", ALL_EXTRA, ids=lambda s: s.name)
def test_spec_fields_are_consistent(spec):
    assert spec.metric in METRICS[spec.task]
    assert spec.greater_is_better == (spec.metric not in LOWER_IS_BETTER)
    if spec.task == "classifier":
        assert len(spec.class_names) >= 2
    assert (spec.window > 0) == (spec.family == "sequence")
    assert spec.horizon >= 0 and spec.description
    json.dumps(spec.schema_extras)  # schema.json material must serialize
    if spec.family in ("volatility", "risk", "trade_quality"):
        assert callable(spec.baselines)


@pytest.mark.parametrize("spec", ALL_EXTRA, ids=lambda s: s.name)
def test_labels_are_per_bar_and_valid(spec, bars):
    label = spec.label_for(bars)
    assert label.name == spec.label and label.index.equals(bars.index)
    known = label.dropna()
    assert len(known) >= 50
    assert np.isfinite(known.to_numpy()).all()
    if spec.task == "classifier":
        values = set(np.unique(known.to_numpy()))
        assert values <= set(map(float, range(len(spec.class_names)))) and len(values) >= 2
    if spec.horizon > 0 and spec.family != "trade_quality":
        assert label.iloc[-spec.horizon:].isna().all()  # the last bars have no complete future


def test_specs_that_share_a_label_name_share_its_values(bars):
    every = ALL_EXTRA + [s for build in FAMILIES.values() for s in build()]
    by_label: dict[str, list] = {}
    for spec in every:
        by_label.setdefault(spec.label, []).append(spec)
    shared = {name: specs for name, specs in by_label.items() if len(specs) > 1}
    assert "dir_up_h5" in shared
    for specs in shared.values():
        first = specs[0].label_for(bars)
        for other in specs[1:]:
            pd.testing.assert_series_equal(other.label_for(bars), first)


@pytest.mark.parametrize("spec", ALL_EXTRA, ids=lambda s: s.name)
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
