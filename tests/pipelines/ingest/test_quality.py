"""The Great Expectations gate on in-memory frames: every rule, gaps as warnings, the report."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from pipelines.ingest.quality import QualityReport, gap_bars, validate_bars, validate_book, validate_ticks
from pipelines.ingest.synthetic import SyntheticMarket

AS_OF = pd.Timestamp("2025-01-01", tz="UTC")


def _bars(n: int = 20, freq: str = "1min") -> pd.DataFrame:
    bars, _ = SyntheticMarket(seed=2, n_bars=n, freq=freq).generate()
    return bars[["open", "high", "low", "close", "volume"]].copy()


def _failed(report: QualityReport) -> dict[str, int]:
    return {r.rule: r.rows for r in report.failures}


def test_clean_batch_passes_with_every_rule_checked() -> None:
    report = validate_bars(_bars(), timeframe="1m", as_of=AS_OF, max_gap_bars=5)
    assert report.ok and not report.failures and not report.warnings
    for rule in ("schema.missing_column", "schema.dtype", "no_nan", "ts_unique", "ts_monotonic",
                 "high_ge_open_close", "low_le_open_close", "price_positive", "volume_nonnegative",
                 "ts_not_future", "gap"):
        assert rule in report.rules_checked
    assert "PASSED" in report.render()


def _set(frame: pd.DataFrame, row: int, col: str, value: object) -> pd.DataFrame:
    frame = frame.copy()
    if frame[col].dtype != object and not isinstance(value, (int, float)):
        frame[col] = frame[col].astype(object)
    frame.iloc[row, frame.columns.get_loc(col)] = value
    return frame


def _with_index(frame: pd.DataFrame, positions: dict[int, pd.Timestamp | None]) -> pd.DataFrame:
    index = list(frame.index)
    for pos, value in positions.items():
        index[pos] = pd.NaT if value is None else value
    return frame.set_axis(pd.DatetimeIndex(index, name="ts"))


@pytest.mark.parametrize(("name", "mutate", "rule", "rows", "bad_row"), [
    ("duplicate ts", lambda b: _with_index(b, {6: b.index[5]}), "ts_unique", 2, 5),
    ("out of order", lambda b: _with_index(b, {3: b.index[4], 4: b.index[3]}), "ts_monotonic", 1, 4),
    ("high below close", lambda b: _set(b, 2, "high", b["close"].iloc[2] * 0.99), "high_ge_open_close", 1, 2),
    ("low above open", lambda b: _set(b, 8, "low", b[["open", "close"]].iloc[8].min() * 1.001),
     "low_le_open_close", 1, 8),
    ("zero price", lambda b: _set(_set(b, 9, "open", 0.0), 9, "low", 0.0), "price_positive", 1, 9),
    ("negative volume", lambda b: _set(b, 1, "volume", -3.0), "volume_nonnegative", 1, 1),
    ("NaN close", lambda b: _set(b, 7, "close", np.nan), "no_nan", 1, 7),
    ("NaT ts", lambda b: _with_index(b, {11: None}), "no_nan", 1, 11),
    ("future ts", lambda b: _with_index(b, {19: pd.Timestamp("2030-01-01", tz="UTC")}), "ts_not_future", 1, 19),
    ("string in close", lambda b: _set(b, 4, "close", "12,5"), "schema.dtype", 1, 4),
])
def test_each_rule_rejects_and_points_at_the_row(name: str, mutate, rule: str, rows: int, bad_row: int) -> None:
    report = validate_bars(mutate(_bars()), timeframe="1m", as_of=AS_OF, max_gap_bars=10_000_000)
    assert not report.ok, name
    failed = _failed(report)
    assert failed[rule] == rows, report.render()
    result = next(r for r in report.failures if r.rule == rule)
    assert bad_row in [ex["row"] for ex in result.examples]
    text = report.render()
    assert f"FAIL {rule}: {rows} row" in text and "REJECTED" in text


def test_nan_is_reported_once_not_as_an_ohlc_violation() -> None:
    report = validate_bars(_set(_bars(), 7, "close", np.nan), timeframe="1m", as_of=AS_OF)
    assert _failed(report) == {"no_nan": 1}


def test_missing_column_stops_before_value_rules() -> None:
    report = validate_bars(_bars().drop(columns=["volume"]), timeframe="1m", as_of=AS_OF)
    assert _failed(report) == {"schema.missing_column": 20}
    assert "volume" in report.failures[0].detail
    assert "Value rules were not evaluated" in report.render()


def test_index_must_be_datetime() -> None:
    report = validate_bars(_bars().reset_index(drop=True), timeframe="1m", as_of=AS_OF)
    assert not report.ok and report.failures[0].rule == "schema.ts_index"


def test_examples_capped_at_five_rows() -> None:
    bars = _bars(50)
    bars.iloc[10:30, bars.columns.get_loc("volume")] = -1.0
    report = validate_bars(bars, timeframe="1m", as_of=AS_OF)
    result = report.failures[0]
    assert result.rule == "volume_nonnegative" and result.rows == 20 and len(result.examples) == 5
    assert [ex["row"] for ex in result.examples] == [10, 11, 12, 13, 14]


def test_gaps_are_warnings_and_the_batch_passes() -> None:
    bars = _bars(40).drop(index=_bars(40).index[10:20])  # a 10-minute hole (11 bars apart)
    report = validate_bars(bars, timeframe="1m", as_of=AS_OF, max_gap_bars=5)
    assert report.ok
    assert [(w.rule, w.rows) for w in report.warnings] == [("gap", 1)]
    assert report.warnings[0].examples[0]["gap_bars"] == pytest.approx(11.0)
    assert "WARN gap" in report.render()
    assert validate_bars(bars, timeframe="1m", as_of=AS_OF, max_gap_bars=20).warnings == []


def test_daily_gaps_count_business_days() -> None:
    days = pd.DatetimeIndex(["2024-01-05", "2024-01-08", "2024-01-09", "2024-01-22"], tz="UTC")  # Fri, Mon, Tue, Mon
    assert gap_bars(days, "1d")[1:].tolist() == [1.0, 1.0, 9.0]  # the weekend is not a gap
    monthly = pd.DatetimeIndex(["2024-01-15", "2024-02-15", "2024-06-15"], tz="UTC")
    assert gap_bars(monthly, "1mo")[1:].tolist() == [1.0, 4.0]
    assert gap_bars(pd.date_range("2024-01-01", periods=3, freq="4h", tz="UTC"), "1h")[1:].tolist() == [4.0, 4.0]


def test_ticks_suite() -> None:
    ts = pd.date_range("2024-01-01", periods=6, freq="s", tz="UTC", name="ts")
    ticks = pd.DataFrame({"price": [100.0, 100.1, 100.2, 100.1, 100.0, 99.9], "qty": [1.0, 2, 1, 1, 3, 1],
                          "side": [1.0, -1, 1, 1, -1, -1], "trade_id": list("abcdef")}, index=ts)
    assert validate_ticks(ticks, as_of=AS_OF).ok
    bad = ticks.copy()
    bad.iloc[2, bad.columns.get_loc("side")] = 0.0
    bad.iloc[3, bad.columns.get_loc("qty")] = 0.0
    bad.iloc[4, bad.columns.get_loc("trade_id")] = "d"
    bad = bad.set_axis(pd.DatetimeIndex([*ts[:4], ts[3], ts[5]], name="ts"))
    assert _failed(validate_ticks(bad, as_of=AS_OF)) == {"trade_unique": 2, "qty_positive": 1, "side_valid": 1}


def test_book_suite() -> None:
    ts = pd.date_range("2024-01-01", periods=4, freq="s", tz="UTC", name="ts")
    book = pd.DataFrame({"bid_price": [99.9, 100.0, 100.1, 100.0], "bid_size": [1.0, 2, 3, 4],
                         "ask_price": [100.1, 100.2, 100.3, 100.2], "ask_size": [1.0, 1, 1, 1],
                         "bid_depth": [10.0, 10, 10, 10], "ask_depth": [9.0, 9, 9, 9]}, index=ts)
    assert validate_book(book, as_of=AS_OF).ok
    bad = book.copy()
    bad.iloc[1, bad.columns.get_loc("ask_price")] = 99.0  # crossed
    bad.iloc[2, bad.columns.get_loc("bid_depth")] = -1.0
    assert _failed(validate_book(bad, as_of=AS_OF)) == {"book_not_crossed": 1, "size_nonnegative": 1}


def test_30k_bars_validate_quickly() -> None:
    bars, _ = SyntheticMarket(seed=1, n_bars=30_000).generate()
    validate_bars(bars.iloc[:100], timeframe="1m", as_of=AS_OF)  # warm the cached context and suite
    started = time.process_time()  # CPU time: robust when other jobs share the machine
    report = validate_bars(bars, timeframe="1m", as_of=AS_OF, max_gap_bars=5)
    elapsed = time.process_time() - started
    assert report.ok, report.render()
    assert len(report.rules_checked) == 14  # incl. size_nonnegative (microstructure columns) and timeframe
    assert elapsed < 5.0  # ~0.7 s of CPU here; a generous bound
