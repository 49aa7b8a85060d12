"""The warehouse on chDB: idempotent upserts, late corrections, per-key feature sets, >100 partitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.store import Warehouse, WarehouseError, open_warehouse
from pipelines.config import get_settings

KEY = {"tenant": "default", "timeframe": "1d"}


def bars(n: int, start: str = "2000-01-03", scale: float = 1.0) -> pd.DataFrame:
    idx = pd.date_range(start, periods=n, freq="B", tz="UTC", name="ts")
    close = 100 + np.arange(n, dtype=float) * scale
    return pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close,
                         "volume": np.full(n, 1000.0)}, index=idx)


def test_upsert_is_idempotent_and_late_corrections_replace(alphaops_home):
    with open_warehouse(get_settings()) as w:
        w.write_bars(bars(10), symbol="STOREA", source="t", ingest_id="1", **KEY)
        w.write_bars(bars(10), symbol="STOREA", source="t", ingest_id="2", **KEY)
        assert w.count("bars", "symbol = {s:String}", {"s": "STOREA"}) == 10
        corrected = bars(10).iloc[[4]].assign(close=555.0, high=556.0)
        w.write_bars(corrected, symbol="STOREA", source="t", ingest_id="3", **KEY)
        back = w.read_bars(symbol="STOREA", **KEY)
        assert len(back) == 10 and back["close"].iloc[4] == 555.0 and back["close"].iloc[3] == 103.0


def test_inserts_spanning_more_than_100_monthly_partitions(alphaops_home):
    with open_warehouse(get_settings()) as w:
        w.write_bars(bars(3000, scale=0.01), symbol="STORELONG", source="t", ingest_id="1", **KEY)
        assert w.count("bars", "symbol = {s:String}", {"s": "STORELONG"}) == 3000


def test_feature_sets_are_per_symbol_so_column_counts_may_differ(alphaops_home):
    idx = bars(5).index
    with open_warehouse(get_settings()) as w:
        narrow = pd.DataFrame(np.arange(10.0).reshape(5, 2), index=idx, columns=["a", "b"])
        wide = pd.DataFrame(np.arange(15.0).reshape(5, 3), index=idx, columns=["a", "b", "tick_ratio"])
        wide.iloc[0, 2] = np.nan
        w.write_features(narrow, symbol="STOREN", feature_set_version="fs-t", **KEY)
        w.write_features(wide, symbol="STOREW", feature_set_version="fs-t", **KEY)
        got_n = w.read_features(symbol="STOREN", feature_set_version="fs-t", **KEY)
        got_w = w.read_features(symbol="STOREW", feature_set_version="fs-t", **KEY)
        pd.testing.assert_frame_equal(got_n, narrow, check_freq=False)
        assert list(got_w.columns) == ["a", "b", "tick_ratio"] and np.isnan(got_w.iloc[0, 2])
        with pytest.raises(WarehouseError, match="not in the warehouse"):
            w.read_features(symbol="STOREN", feature_set_version="fs-missing", **KEY)


def test_one_chdb_path_per_process_is_enforced(alphaops_home, tmp_path):
    with open_warehouse(get_settings()):
        with pytest.raises(WarehouseError, match="already holds"):
            with Warehouse.open(None, tmp_path / "other"):
                pass
