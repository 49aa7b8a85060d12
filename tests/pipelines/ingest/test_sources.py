"""Sources: files, Binance dumps, tick and book files, timeframes (no warehouse)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.ingest.sources import (
    BinanceKlineSource,
    BookFileSource,
    OhlcvFileSource,
    SourceError,
    TickFileSource,
    infer_timeframe,
    parse_timestamps,
    timeframe_delta,
)

DATA = Path(__file__).resolve().parents[2] / "data"


def test_ohlcv_csv_is_canonical_utc_float_in_file_order() -> None:
    bars = OhlcvFileSource(DATA / "good_bars.csv").read()
    assert isinstance(bars.index, pd.DatetimeIndex) and bars.index.name == "ts"
    assert str(bars.index.tz) == "UTC"
    assert list(bars.columns) == ["open", "high", "low", "close", "volume"]
    assert all(dtype == np.float64 for dtype in bars.dtypes)
    assert bars.index[0] == pd.Timestamp("2024-01-02", tz="UTC")
    assert bars["close"].iloc[-1] == pytest.approx(107.20)
    # file order is kept (not sorted) so the quality gate can see it
    swapped = OhlcvFileSource(DATA / "bad_not_monotonic.csv").read()
    assert not swapped.index.is_monotonic_increasing


def test_ohlcv_any_case_epoch_ms_naive_and_aware_times(tmp_path: Path) -> None:
    epoch = tmp_path / "epoch.csv"
    epoch.write_text("Timestamp,OPEN,High,low,Close,VOLUME,n_trades\n"
                     "1704067200000,1,2,0.5,1.5,10,3\n1704067260000,1.5,2,1,1.2,11,4\n")
    bars = OhlcvFileSource(epoch).read()
    assert list(bars.index) == [pd.Timestamp("2024-01-01 00:00", tz="UTC"), pd.Timestamp("2024-01-01 00:01", tz="UTC")]
    assert bars["n_trades"].tolist() == [3.0, 4.0]  # optional microstructure columns come along

    seconds = tmp_path / "seconds.csv"
    seconds.write_text("time,open,high,low,close,volume\n1704067200,1,2,0.5,1.5,10\n")
    assert OhlcvFileSource(seconds).read().index[0] == pd.Timestamp("2024-01-01", tz="UTC")

    aware = tmp_path / "aware.csv"
    aware.write_text("datetime,open,high,low,close,volume\n2024-01-01T02:00:00+02:00,1,2,0.5,1.5,10\n"
                     "2024-01-01 01:00:00,1,2,0.5,1.5,10\n")
    index = OhlcvFileSource(aware).read().index
    assert index[0] == pd.Timestamp("2024-01-01 00:00", tz="UTC")  # converted
    assert index[1] == pd.Timestamp("2024-01-01 01:00", tz="UTC")  # naive taken as UTC


def test_ohlcv_parquet_and_column_map(tmp_path: Path) -> None:
    frame = pd.DataFrame({"Date": pd.date_range("2024-01-01", periods=3, freq="D"), "o": [1.0, 2, 3],
                          "High": [2.0, 3, 4], "Low": [0.5, 1, 2], "Close": [1.5, 2.5, 3.5], "Volume": [1, 2, 3]})
    path = tmp_path / "bars.parquet"
    frame.to_parquet(path)
    bars = OhlcvFileSource(path, column_map={"o": "open"}).read()
    assert bars["open"].tolist() == [1.0, 2.0, 3.0]
    assert bars["volume"].dtype == np.float64
    assert bars.index[-1] == pd.Timestamp("2024-01-03", tz="UTC")


def test_missing_file_and_missing_column_name_the_file_and_column(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="nope.csv: file not found") as missing:
        OhlcvFileSource(tmp_path / "nope.csv").read()
    assert missing.value.rule == "source.missing_file"
    with pytest.raises(SourceError, match=r"bad_missing_column.csv: missing column 'volume'") as col:
        OhlcvFileSource(DATA / "bad_missing_column.csv").read()
    assert col.value.rule == "schema.missing_column"
    assert isinstance(col.value, ValueError)
    no_ts = tmp_path / "no_ts.csv"
    no_ts.write_text("when,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,10\n")
    with pytest.raises(SourceError, match="missing timestamp column"):
        OhlcvFileSource(no_ts).read()


def test_non_numeric_value_stays_visible_for_the_dtype_rule() -> None:
    bars = OhlcvFileSource(DATA / "bad_non_numeric_close.csv").read()
    assert bars["close"].dtype == object
    assert bars["close"].iloc[4] == "n/a?"
    assert bars["close"].iloc[3] == pytest.approx(103.2)  # the good values are numbers
    assert bars["open"].dtype == np.float64


def test_binance_klines_ms() -> None:
    bars = BinanceKlineSource(DATA / "binance_BTCUSDT-1m-sample.csv").read()
    assert len(bars) == 5
    assert bars.index[0] == pd.Timestamp("2024-01-01 00:00", tz="UTC")
    assert infer_timeframe(bars.index) == "1m"
    first = bars.iloc[0]
    assert first["open"] == pytest.approx(42283.58) and first["close"] == pytest.approx(42298.61)
    assert first["n_trades"] == 1124
    assert first["buy_volume"] == pytest.approx(20.97254)
    assert first["sell_volume"] == pytest.approx(35.92724 - 20.97254)
    np.testing.assert_allclose(bars["buy_volume"] + bars["sell_volume"], bars["volume"])


def test_binance_klines_microseconds_and_header(tmp_path: Path) -> None:
    text = (DATA / "binance_BTCUSDT-1m-sample.csv").read_text().splitlines()
    micro = [f"{int(line.split(',')[0]) * 1000}," + ",".join(line.split(",")[1:]) for line in text]
    header = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,"
              "taker_buy_volume,taker_buy_quote_volume,ignore")
    path = tmp_path / "BTCUSDT-1m-2025-01-01.csv"
    path.write_text("\n".join([header, *micro]) + "\n")
    bars = BinanceKlineSource(path).read()
    assert len(bars) == 5
    assert bars.index[1] == pd.Timestamp("2024-01-01 00:01", tz="UTC")


def test_tick_and_book_files(tmp_path: Path) -> None:
    ticks_path = tmp_path / "ticks.csv"
    ticks_path.write_text("ts,price,qty,side\n2024-01-01T00:00:00.000100Z,100.5,0.2,buy\n"
                          "2024-01-01T00:00:00.000100Z,100.4,0.1,SELL\n2024-01-01T00:00:01Z,100.6,1.0,-1\n")
    ticks = TickFileSource(ticks_path).read()
    assert ticks["side"].tolist() == [1.0, -1.0, -1.0]
    assert ticks.index[0] == pd.Timestamp("2024-01-01 00:00:00.000100", tz="UTC")
    assert ticks["trade_id"].tolist()[:2] == ["1704067200000100-0", "1704067200000100-1"]  # stable fallback ids
    book_path = tmp_path / "book.parquet"
    pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=2, freq="s", tz="UTC"),
                  "bid_price": [99.9, 100.0], "bid_size": [5.0, 4], "ask_price": [100.1, 100.2],
                  "ask_size": [3.0, 6], "bid_depth": [50.0, 40], "ask_depth": [30.0, 60]}).to_parquet(book_path)
    book = BookFileSource(book_path).read()
    assert list(book.columns) == ["bid_price", "bid_size", "ask_price", "ask_size", "bid_depth", "ask_depth"]
    assert book["ask_depth"].iloc[1] == 60.0


def test_timeframes() -> None:
    assert timeframe_delta("15m") == pd.Timedelta(minutes=15)
    assert timeframe_delta("4h") == pd.Timedelta(hours=4)
    with pytest.raises(ValueError, match="unknown timeframe"):
        timeframe_delta("fortnight")
    weekdays = pd.bdate_range("2024-01-01", periods=30, tz="UTC")
    assert infer_timeframe(weekdays) == "1d"
    assert infer_timeframe(pd.date_range("2024-01-01", periods=5, freq="5min", tz="UTC")) == "5m"
    # unparseable timestamps become NaT (the quality gate rejects them by row), not an exception
    assert parse_timestamps(pd.Series(["2024-01-01", "not a date"])).isna().tolist() == [False, True]
