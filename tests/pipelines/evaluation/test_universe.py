"""Universe datasets: one row per timestamp every member has, point in time across members, and the
recorded switches stored under the universe's name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.catalog import spec_by_name
from pipelines.config import get_settings
from pipelines.evaluation.datasets import load_dataset
from pipelines.steps.extract import extract_samples
from pipelines.universes import UNIVERSES, expand_symbols, universes_covered
from warehouse import open_warehouse

AS_OF = pd.Timestamp("2026-01-01", tz="UTC")
SPEC = "correlation_regime_w40"


@pytest.fixture(scope="module")
def stored(alphaops_home):
    """SYNU00 through the extract step (quality gate, events); the other members' bars written directly."""
    from pipelines.ingest.synthetic_universe import synthetic_universe_sample

    settings = get_settings()
    extract_samples(settings, ["SYNU00"], AS_OF)
    with open_warehouse(settings) as warehouse:
        for member in UNIVERSES["UNIV_SYN"].members[1:]:
            warehouse.write_bars(synthetic_universe_sample().bars[member], tenant="default", symbol=member,
                                 timeframe="1d", source="test", ingest_id="test-universe")
    return settings


@pytest.fixture(scope="module")
def full(stored):
    return _load(stored)


def _load(settings, as_of=AS_OF):
    with open_warehouse(settings) as warehouse:
        return load_dataset(warehouse, spec_by_name(SPEC), tenant="default", symbol="UNIV_SYN", timeframe="1d",
                            feature_set_version="unused", as_of=as_of, holdout_fraction=0.2)


def test_universe_rows_features_and_purged_holdout(full):
    data = full
    assert data.X.dtype == np.float32 and len(data.feature_names) == 7
    assert set(np.unique(data.y)) == {0, 1, 2}
    assert data.holdout_idx[0] - data.train_idx[-1] > spec_by_name(SPEC).horizon  # purged by the horizon
    assert len(data.y) > 4000


def test_an_earlier_as_of_leaves_earlier_feature_rows_unchanged(stored, full):
    cut = full.index[len(full.index) // 2]
    early = _load(stored, as_of=cut)
    shared = early.index.intersection(full.index)
    np.testing.assert_array_equal(early.X[early.index.isin(shared)], full.X[full.index.isin(shared)])


def test_switches_are_stored_under_the_universe(stored):
    from pipelines.ingest.synthetic_universe import synthetic_universe_sample

    with open_warehouse(stored) as warehouse:
        events = warehouse.read_market_events(tenant="default", symbol="UNIV_SYN")
    recorded = synthetic_universe_sample().switches
    assert len(events) == len(recorded) > 15
    assert events["type"].str.startswith("correlation_switch_to_").all()
    assert pd.DatetimeIndex(events["ts"]).as_unit("ns").equals(pd.DatetimeIndex(recorded["ts"]).as_unit("ns"))
    extract_samples(stored, ["SYNU00"], AS_OF)  # idempotent: no duplicate events
    with open_warehouse(stored) as warehouse:
        assert len(warehouse.read_market_events(tenant="default", symbol="UNIV_SYN")) == len(recorded)


def test_universe_names_expand_and_are_covered_only_when_complete():
    members = list(UNIVERSES["UNIV_ARCH"].members)
    assert expand_symbols(["UNIV_ARCH", "SPX", "SYN1"]) == members + ["SYN1"]
    assert universes_covered(["UNIV_ARCH"], "SPX", "1d") == ["UNIV_ARCH"]
    assert universes_covered(["SPX", "SYN1"], "SPX", "1d") == []
    assert universes_covered(["UNIV_ARCH"], "SPX", "1m") == []


def test_plan_keeps_a_universe_job_once():
    from pipelines.steps.adapters import plan

    job = {"spec_name": SPEC, "symbol": "UNIV_SYN", "timeframe": "1d"}
    other = {"spec_name": "direction_h1", "symbol": "SYNU00", "timeframe": "1d"}
    assert plan([[job, other], [dict(job)]]) == [job, other]
