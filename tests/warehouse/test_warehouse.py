"""The warehouse on chDB: idempotent upserts, late corrections, per-key feature sets, >100 partitions,
and staged ingest batches: their recovery and what a batch that raises leaves."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.config import Settings, get_settings
from warehouse import DATABASE, STAGE_PREFIX, Warehouse, WarehouseError, ingest_log_frame, open_warehouse
from warehouse.ingest import SERVER_ABANDON_AFTER_SECONDS, SERVER_PUBLISH_GRACE_SECONDS, _sql_string

KEY = {"tenant": "default", "timeframe": "1d"}


def bars(n: int, start: str = "2000-01-03", scale: float = 1.0, freq: str = "B") -> pd.DataFrame:
    idx = pd.date_range(start, periods=n, freq=freq, tz="UTC", name="ts")
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
        pd.testing.assert_frame_equal(got_n, narrow.astype(np.float32), check_freq=False)  # stored as float32
        assert list(got_w.columns) == ["a", "b", "tick_ratio"] and np.isnan(got_w.iloc[0, 2])
        with pytest.raises(WarehouseError, match="not in the warehouse"):
            w.read_features(symbol="STOREN", feature_set_version="fs-missing", **KEY)


def test_one_chdb_path_per_process_is_enforced(alphaops_home, tmp_path):
    with open_warehouse(get_settings()):
        with pytest.raises(WarehouseError, match="already holds"):
            with Warehouse.open(None, tmp_path / "other"):
                pass


def test_without_the_lock_only_old_staging_tables_are_taken_over(tmp_path: Path) -> None:
    """On a ClickHouse server other writers may be alive: recovery waits a minute before it
    finishes a committed batch and an hour before it discards an uncommitted one."""
    settings = get_settings(home=tmp_path / "home", clickhouse_url=None)
    with open_warehouse(settings) as wh:
        def stage(ingest_id: str, age: float) -> None:
            meta = json.dumps({"table": "bars", "ingest_id": ingest_id, "tenant": settings.tenant, "symbol": "SRV",
                               "timeframe": "1h", "kind": "bars", "source": "test", "created": time.time() - age})
            name = f"{STAGE_PREFIX}bars__{ingest_id.replace('-', '_')}"
            wh.command(f"CREATE TABLE {DATABASE}.{name} AS {DATABASE}.bars COMMENT {_sql_string(meta)}")

        stage("ing-young-uncommitted", 5.0)
        stage("ing-old-uncommitted", SERVER_ABANDON_AFTER_SECONDS + 5.0)
        stage("ing-young-committed", 5.0)
        stage("ing-old-committed", SERVER_PUBLISH_GRACE_SECONDS + 5.0)
        for ingest_id in ("ing-young-committed", "ing-old-committed"):
            wh.insert("ingest_log", _ok_row(ingest_id, settings))
        done = wh.recover_staged_ingests(exclusive=False)
        assert {(d["ingest_id"], d["outcome"]) for d in done} == {("ing-old-uncommitted", "aborted"),
                                                                  ("ing-old-committed", "published")}
        assert wh.staged_tables() == [f"{STAGE_PREFIX}bars__ing_young_committed",
                                      f"{STAGE_PREFIX}bars__ing_young_uncommitted"]
        assert {d["ingest_id"] for d in wh.recover_staged_ingests(exclusive=True)} == {
            "ing-young-committed", "ing-young-uncommitted"}  # under the chDB lock: all at once
        assert wh.staged_tables() == []


def _ok_row(ingest_id: str, settings: Settings) -> pd.DataFrame:
    return ingest_log_frame(ingest_id=ingest_id, tenant=settings.tenant, symbol="SRV", timeframe="1h", kind="bars",
                            source="test", status="ok", rows_in=0, rows_written=0, rows_rejected=0, rows_new=0,
                            rows_changed=0, checksum="", ts_min=None, ts_max=None, report="")


def test_a_batch_that_raises_before_its_commit_leaves_nothing(tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path / "home", clickhouse_url=None)
    rows = bars(3_000, freq="h")
    with open_warehouse(settings) as wh:
        with pytest.raises(RuntimeError, match="source went away"):
            with wh.staged_ingest("bars", ingest_id="ing-raises", meta={"tenant": settings.tenant}):
                wh.write_bars(rows, tenant=settings.tenant, symbol="RAISES", timeframe="1h", source="t",
                              ingest_id="ing-raises")
                assert len(wh.staged_tables()) == 1
                assert wh.count("bars", "symbol = 'RAISES'") == 0  # staged rows are not visible
                raise RuntimeError("source went away")
        assert wh.staged_tables() == [] and wh.count("bars", "symbol = 'RAISES'") == 0
        with wh.staged_ingest("bars", ingest_id="ing-commits", meta={"tenant": settings.tenant}) as batch:
            wh.write_bars(rows, tenant=settings.tenant, symbol="RAISES", timeframe="1h", source="t",
                          ingest_id="ing-commits")
            with pytest.raises(WarehouseError, match="needs its one ingest_log row with status ok"):
                batch.commit(_ok_row("ing-other", settings))
            batch.commit(_ok_row("ing-commits", settings))
        assert wh.count("bars", "symbol = 'RAISES'") == 3_000 and wh.staged_tables() == []


def test_features_read_in_time_slices_equal_the_written_matrix(alphaops_home, monkeypatch):
    import warehouse.training

    monkeypatch.setattr(warehouse.training, "FEATURE_READ_ROWS", 700)  # 2,500 rows: four slices
    idx = bars(2_500).index
    matrix = pd.DataFrame(np.random.default_rng(3).standard_normal((2_500, 4)), index=idx, columns=list("abcd"))
    matrix.iloc[::97, 2] = np.nan
    with open_warehouse(get_settings()) as w:
        w.write_features(matrix, symbol="STORESLICE", feature_set_version="fs-t", **KEY)
        got = w.read_features(symbol="STORESLICE", feature_set_version="fs-t", **KEY)
        tail = w.read_features(symbol="STORESLICE", feature_set_version="fs-t", start=idx[1_000], **KEY)
    pd.testing.assert_frame_equal(got, matrix.astype(np.float32), check_freq=False)
    pd.testing.assert_frame_equal(tail, matrix.iloc[1_000:].astype(np.float32), check_freq=False)
