"""load_dataset: one float32 read and one copy, the same rows as the pandas join of features,
label and next return, and a byte cap that keeps the latest rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.catalog import spec_by_name
from pipelines.steps.build import build_features, build_labels
from pipelines.config import get_settings
from pipelines.evaluation.datasets import load_dataset
from pipelines.ingest.ingestion import ingest
from pipelines.ingest.samples import SyntheticSource
from warehouse import open_warehouse

AS_OF = pd.Timestamp("2026-01-01", tz="UTC")
SYMBOL = "DSETS"


@pytest.fixture(scope="module")
def stored(alphaops_home):
    settings = get_settings(feature_chunk_rows=1_000)  # several pieces: chunked features are what is stored
    ingest(SyntheticSource(seed=13, n_bars=4_000), symbol=SYMBOL, timeframe="1m", settings=settings, as_of=AS_OF)
    ref = build_features(settings, symbol=SYMBOL, timeframe="1m", as_of=AS_OF)
    build_labels(settings, symbol=SYMBOL, timeframe="1m", spec_names=["direction_h1"], as_of=AS_OF)
    return settings, ref


def _load(settings, **kwargs):
    with open_warehouse(settings) as warehouse:
        return load_dataset(warehouse, spec_by_name("direction_h1"), tenant="default", symbol=SYMBOL, timeframe="1m",
                            as_of=AS_OF, holdout_fraction=0.2, **kwargs)


def test_the_rows_are_those_of_the_pandas_join(stored):
    import features

    settings, ref = stored
    data = _load(settings, feature_set_version=ref["feature_set_version"])
    with open_warehouse(settings) as warehouse:
        feats = warehouse.read_features(tenant="default", symbol=SYMBOL, timeframe="1m",
                                        feature_set_version=ref["feature_set_version"], end=AS_OF)
        label = warehouse.read_labels(tenant="default", symbol=SYMBOL, timeframe="1m", labels=["dir_up_h1"])
        close = warehouse.read_bars(tenant="default", symbol=SYMBOL, timeframe="1m", end=AS_OF)["close"]
    assert feats.dtypes.unique().tolist() == [np.dtype(np.float32)]
    expected = (feats[data.feature_names].iloc[features.WARMUP:].join(label["dir_up_h1"])
                .assign(_next=close.pct_change().shift(-1).reindex(feats.index)).dropna())
    assert data.X.dtype == np.float32 and data.X.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(data.X, expected[data.feature_names].to_numpy(dtype=np.float32))
    np.testing.assert_array_equal(data.y, expected["dir_up_h1"].to_numpy().astype(np.int64))
    assert data.index.equals(pd.DatetimeIndex(expected.index))
    np.testing.assert_array_equal(data.next_return, expected["_next"].to_numpy())


def test_a_byte_cap_keeps_the_latest_rows(stored):
    settings, ref = stored
    full = _load(settings, feature_set_version=ref["feature_set_version"])
    row_bytes = 4 * len(full.feature_names)
    capped = _load(settings, feature_set_version=ref["feature_set_version"], max_bytes=1_000 * row_bytes)
    assert len(capped.y) == 1_000 and capped.X.nbytes <= 1_000 * row_bytes
    np.testing.assert_array_equal(capped.X, full.X[-1_000:])
    assert capped.index.equals(full.index[-1_000:])


def test_a_spec_that_supplies_its_rows_gets_them_as_they_are():
    """``ModelSpec.rows`` (chart_pattern's generated windows) replaces the warehouse read; the
    fingerprint is stable, and rows that do not align are refused with a clear error."""
    from dataclasses import replace

    from models.families.chart_pattern import generated_rows
    from pipelines.evaluation.datasets import supplied_dataset

    spec = replace(spec_by_name("chart_pattern_cnn"), rows=lambda fraction: generated_rows(fraction, train_per_class=5))
    data = supplied_dataset(spec, 0.2)
    rows = generated_rows(0.2, train_per_class=5)
    np.testing.assert_array_equal(data.X, rows.X)
    np.testing.assert_array_equal(data.train_idx, rows.train_idx)
    np.testing.assert_array_equal(data.holdout_idx, rows.holdout_idx)
    assert data.y.dtype == np.int64 and data.feature_names == ["open", "high", "low", "close", "volume"]
    assert supplied_dataset(spec, 0.2).fingerprint == data.fingerprint
    assert supplied_dataset(spec, 0.3).fingerprint != data.fingerprint  # another holdout, another slice
    short = replace(spec, rows=lambda fraction: replace(rows, next_return=rows.next_return[:-1]))
    with pytest.raises(ValueError, match="must align"):
        supplied_dataset(short, 0.2)
    overlapping = replace(spec, rows=lambda fraction: replace(rows, holdout_idx=rows.train_idx[-20:]))
    with pytest.raises(ValueError, match="before at least 10 holdout rows"):
        supplied_dataset(overlapping, 0.2)
