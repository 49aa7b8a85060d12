"""Ingestion into the warehouse: rejected whole on any rule, idempotent, corrections, samples."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines.config import Settings, get_settings
from pipelines.ingest.ingestion import IngestRejected, checksum, data_summary, ingest, ingest_file
from pipelines.steps.extract import extract_samples
from pipelines.ingest.sources import FrameSource
from pipelines.ingest.samples import SAMPLE_SYMBOLS, SyntheticSource
from warehouse import DATABASE, open_warehouse

DATA = Path(__file__).resolve().parents[2] / "data"
AS_OF = pd.Timestamp("2025-01-01", tz="UTC")
SYMBOL = "TEST"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One warehouse path for the module (chDB holds one path per process); tests open and close it."""
    settings = get_settings(home=tmp_path_factory.mktemp("extract-home"), clickhouse_url=None, max_gap_bars=5)
    result = ingest_file(DATA / "good_bars.csv", symbol=SYMBOL, timeframe="1d", settings=settings, as_of=AS_OF)
    assert result.rows_new == 10
    return settings


def _log_row(settings: Settings, ingest_id: str) -> pd.Series:
    with open_warehouse(settings) as wh:
        rows = wh.query(f"SELECT * FROM {DATABASE}.ingest_log WHERE ingest_id = {{id:String}}", {"id": ingest_id})
    assert len(rows) == 1
    return rows.iloc[0]


def _bars(settings: Settings, symbol: str = SYMBOL, timeframe: str = "1d") -> pd.DataFrame:
    with open_warehouse(settings) as wh:
        return wh.read_bars(tenant=settings.tenant, symbol=symbol, timeframe=timeframe)


@pytest.mark.parametrize(("filename", "rule"), [
    ("bad_duplicate_ts.csv", "ts_unique"),
    ("bad_not_monotonic.csv", "ts_monotonic"),
    ("bad_high_below_open_close.csv", "high_ge_open_close"),
    ("bad_low_above_open_close.csv", "low_le_open_close"),
    ("bad_price_nonpositive.csv", "price_positive"),
    ("bad_negative_volume.csv", "volume_nonnegative"),
    ("bad_nan.csv", "no_nan"),
    ("bad_future_ts.csv", "ts_not_future"),
    ("bad_missing_column.csv", "schema.missing_column"),
    ("bad_non_numeric_close.csv", "schema.dtype"),
])
def test_bad_file_is_rejected_whole(settings: Settings, filename: str, rule: str) -> None:
    before = _bars(settings)
    with open_warehouse(settings) as wh:
        count_before = wh.count("bars")
    with pytest.raises(IngestRejected) as rejected:
        ingest_file(DATA / filename, symbol=SYMBOL, timeframe="1d", settings=settings, as_of=AS_OF)
    report = rejected.value.report
    assert not report.ok and rule in [f.rule for f in report.failures]
    assert f"FAIL {rule}" in str(rejected.value) and isinstance(rejected.value, ValueError)
    with open_warehouse(settings) as wh:
        assert wh.count("bars") == count_before
    pd.testing.assert_frame_equal(_bars(settings), before)  # not one value touched
    log = _log_row(settings, rejected.value.ingest_id)
    assert log["status"] == "rejected" and log["rows_written"] == 0
    assert log["rows_rejected"] == log["rows_in"]
    assert f"FAIL {rule}" in log["report"] and filename in log["report"]


def test_missing_file_is_logged_as_rejected(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(IngestRejected, match="file not found") as rejected:
        ingest_file(tmp_path / "absent.csv", symbol=SYMBOL, timeframe="1d", settings=settings, as_of=AS_OF)
    assert rejected.value.report.failures[0].rule == "source.missing_file"
    assert _log_row(settings, rejected.value.ingest_id)["status"] == "rejected"


def test_reingest_same_file_writes_nothing(settings: Settings) -> None:
    with open_warehouse(settings) as wh:
        count_before = wh.count("bars", "symbol = 'TEST'")
    result = ingest_file(DATA / "good_bars.csv", symbol=SYMBOL, timeframe="1d", settings=settings, as_of=AS_OF)
    assert (result.rows_in, result.rows_new, result.rows_changed, result.rows_written) == (10, 0, 0, 0)
    with open_warehouse(settings) as wh:
        assert wh.count("bars", "symbol = 'TEST'") == count_before == 10
        raw = wh.query(f"SELECT count() AS n FROM {DATABASE}.bars WHERE symbol = 'TEST'")  # without FINAL
    assert int(raw["n"].iloc[0]) == 10  # nothing duplicated, even before merges
    log = _log_row(settings, result.ingest_id)
    assert log["status"] == "ok" and log["rows_new"] == 0 and log["checksum"] == result.checksum
    json.dumps(result.to_dict())  # JSON-safe for XCom and --json


def test_late_correction_replaces_the_value_and_keeps_the_count(settings: Settings, tmp_path: Path) -> None:
    corrected = pd.read_csv(DATA / "good_bars.csv")
    corrected.loc[3, "close"] = 103.25  # a vendor correction of one close
    corrected.loc[3, "high"] = 104.0
    path = tmp_path / "corrected.csv"
    corrected.to_csv(path, index=False)
    result = ingest_file(path, symbol=SYMBOL, timeframe="1d", settings=settings, as_of=AS_OF)
    assert (result.rows_new, result.rows_changed, result.rows_written) == (0, 1, 1)
    bars = _bars(settings)
    assert len(bars) == 10
    assert bars.loc[pd.Timestamp("2024-01-05", tz="UTC"), "close"] == 103.25
    # restore the original so the module's other tests see the file's values
    restored = ingest_file(DATA / "good_bars.csv", symbol=SYMBOL, timeframe="1d", settings=settings, as_of=AS_OF)
    assert restored.rows_changed == 1 and len(_bars(settings)) == 10


def test_gaps_warn_and_the_batch_is_written(settings: Settings) -> None:
    result = ingest_file(DATA / "gap_bars.csv", symbol="GAPPY", timeframe="1d", settings=settings, as_of=AS_OF)
    assert result.rows_written == 6
    assert len(result.warnings) == 1 and result.warnings[0].startswith("gap:")
    assert "2024-01-22" in result.warnings[0]
    assert "WARN gap" in _log_row(settings, result.ingest_id)["report"]


def test_binance_klines_with_inferred_timeframe(settings: Settings) -> None:
    result = ingest_file(DATA / "binance_BTCUSDT-1m-sample.csv", symbol="BTCUSDT", settings=settings,
                         as_of=AS_OF, fmt="binance")
    assert result.timeframe == "1m" and result.rows_new == 5 and result.source.startswith("binance:")
    bars = _bars(settings, "BTCUSDT", "1m")
    assert bars["n_trades"].iloc[0] == 1124 and bars["sell_volume"].iloc[0] == pytest.approx(35.92724 - 20.97254)


def test_ticks_and_book_are_idempotent(settings: Settings, tmp_path: Path) -> None:
    ticks = tmp_path / "ticks.csv"
    ticks.write_text("ts,price,qty,side,trade_id\n2024-01-01T00:00:00.000100Z,100.5,0.2,buy,1\n"
                     "2024-01-01T00:00:00.000100Z,100.4,0.1,sell,2\n2024-01-01T00:00:01Z,100.6,1.0,buy,3\n")
    first = ingest_file(ticks, symbol="BTCUSDT", settings=settings, as_of=AS_OF, kind="ticks")
    again = ingest_file(ticks, symbol="BTCUSDT", settings=settings, as_of=AS_OF, kind="ticks")
    assert (first.timeframe, first.rows_new, again.rows_new, again.rows_written) == ("tick", 3, 0, 0)
    book = tmp_path / "book.csv"
    book.write_text("ts,bid_price,bid_size,ask_price,ask_size,bid_depth,ask_depth\n"
                    "2024-01-01T00:00:00Z,99.9,1,100.1,2,10,12\n2024-01-01T00:00:01Z,100.0,1,100.2,2,10,12\n")
    assert ingest_file(book, symbol="BTCUSDT", settings=settings, as_of=AS_OF, kind="book").rows_new == 2
    assert ingest_file(book, symbol="BTCUSDT", settings=settings, as_of=AS_OF, kind="book").rows_written == 0
    with open_warehouse(settings) as wh:
        stored = wh.read_ticks(tenant=settings.tenant, symbol="BTCUSDT", timeframe="tick")
        assert stored["side"].tolist() == [1, -1, 1] and stored.index[0].microsecond == 100
        assert wh.count("book", "symbol = 'BTCUSDT'") == 2
    crossed = tmp_path / "crossed.csv"
    crossed.write_text(book.read_text().replace("100.2,2", "99.0,2"))
    with pytest.raises(IngestRejected, match="book_not_crossed"):
        ingest_file(crossed, symbol="BTCUSDT", settings=settings, as_of=AS_OF, kind="book")


def test_ingest_takes_any_source_and_checksums_the_canonical_frame(settings: Settings) -> None:
    source = SyntheticSource(seed=9, n_bars=300)
    with open_warehouse(settings) as wh:
        a = ingest(source, symbol="SYNX", timeframe="1m", settings=settings, as_of=AS_OF, warehouse=wh)
        b = ingest(FrameSource(source.read().iloc[::-1].sort_index(), name="copy"), symbol="SYNX",
                   timeframe="1m", settings=settings, as_of=AS_OF, warehouse=wh)
    assert a.rows_new == 300 and b.rows_new == 0 and a.checksum == b.checksum
    assert a.checksum == checksum(source.read())
    assert a.ts_min == pd.Timestamp("2024-01-01", tz="UTC") and len(a.checksum) == 64


def test_extract_samples_is_idempotent_and_stores_events(settings: Settings) -> None:
    first = extract_samples(settings, ["SPX", "SYN1"], AS_OF)
    assert [(r["symbol"], r["timeframe"], r["rows"], r["rows_new"]) for r in first] == [
        ("SPX", "1d", 5031, 5031), ("SYN1", "1m", 20_000, 20_000)]
    assert first[1]["events_written"] > 0
    json.dumps(first)
    second = extract_samples(settings, ["SPX", "SYN1"], AS_OF)
    counts = [(r["rows_new"], r["rows_changed"], r["rows_written"], r["events_written"]) for r in second]
    assert counts == [(0, 0, 0, 0)] * 2
    with open_warehouse(settings) as wh:
        assert wh.count("bars", "symbol = 'SPX'") == 5031
        events = wh.read_market_events(tenant=settings.tenant, symbol="SYN1")
    assert len(events) == first[1]["events_written"]
    expected = SAMPLE_SYMBOLS["SYN1"]().events()
    assert list(zip(events["ts"], events["type"])) == list(zip(expected["ts"], expected["type"]))
    known = ", ".join(SAMPLE_SYMBOLS)
    with pytest.raises(ValueError, match=rf"unknown sample symbol\(s\) 'NOPE'; known: {known}$"):
        extract_samples(settings, ["SPX", "NOPE"], AS_OF)


def test_data_summary(settings: Settings) -> None:
    with pytest.raises(IngestRejected):
        ingest_file(DATA / "bad_nan.csv", symbol="NEVER", timeframe="1d", settings=settings, as_of=AS_OF)
    summary = data_summary(settings)
    json.dumps(summary)
    by_key = {(r["kind"], r["symbol"], r["timeframe"]): r for r in summary}
    test = by_key[("bars", SYMBOL, "1d")]
    assert test["rows"] == 10 and test["ts_min"].startswith("2024-01-02") and test["ts_max"].startswith("2024-01-15")
    assert test["last_ingest"]["status"] in {"ok", "rejected"} and test["last_ingest"]["id"].startswith("ing-")
    never = by_key[("bars", "NEVER", "1d")]  # only ever rejected: listed with no rows
    assert never["rows"] == 0 and never["ts_min"] is None and never["last_ingest"]["status"] == "rejected"


def test_failed_write_is_logged_and_raised(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from warehouse import Warehouse

    def broken(self: Warehouse, *args: object, **kwargs: object) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(Warehouse, "write_bars", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        ingest_file(DATA / "good_bars.csv", symbol="BROKEN", timeframe="1d", settings=settings, as_of=AS_OF)
    with open_warehouse(settings) as wh:
        log = wh.query(f"SELECT status, report FROM {DATABASE}.ingest_log WHERE symbol = 'BROKEN'")
        assert wh.count("bars", "symbol = 'BROKEN'") == 0
    assert log["status"].tolist() == ["failed"] and "disk full" in log["report"].iloc[0]
