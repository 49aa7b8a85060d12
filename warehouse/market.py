"""Market data: bars, ticks, top-of-book snapshots and known market events."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from warehouse.backends import WarehouseError
from warehouse.schema import BAR_EXTRA, BOOK_COLUMNS, DATABASE, MARKET_TABLES, OHLCV, TICK_COLUMNS
from warehouse.tables import Tables


class MarketTables(Tables):
    """Reads and idempotent writes of ``bars``, ``ticks``, ``book`` and ``market_events``."""

    def write_bars(self, bars: pd.DataFrame, *, tenant: str, symbol: str, timeframe: str,
                   source: str, ingest_id: str) -> int:
        """Upsert bars indexed by UTC ``ts`` with OHLCV (+ optional microstructure) columns."""
        values = pd.DataFrame({col: bars[col].astype(float) if col in bars else np.nan
                               for col in OHLCV + BAR_EXTRA}, index=bars.index)
        return self.insert("bars", _keyed(values, tenant=tenant, symbol=symbol, timeframe=timeframe,
                                          source=source, ingest_id=ingest_id))

    def read_bars(self, *, tenant: str, symbol: str, timeframe: str,
                  start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pd.DataFrame:
        """Bars as a frame indexed by UTC ``ts``; microstructure columns only where present."""
        where, params = self._key_where(tenant, symbol, timeframe, start, end)
        cols = ", ".join(OHLCV + BAR_EXTRA)
        frame = self.query(f"SELECT ts, {cols} FROM {DATABASE}.bars FINAL WHERE {where} ORDER BY ts", params)
        frame = frame.set_index("ts")
        frame.index = pd.DatetimeIndex(frame.index, name="ts").tz_convert("UTC")
        empty_extras = [c for c in BAR_EXTRA if frame[c].isna().all()]
        return frame.drop(columns=empty_extras).astype(float)

    def count_bars(self, *, tenant: str, symbol: str, timeframe: str, end: pd.Timestamp | None = None) -> int:
        """Bars of one key up to ``end`` (what a step will read; the memory guard sizes it)."""
        where, params = self._key_where(tenant, symbol, timeframe, None, end)
        return self.count("bars", where, params)

    def inventory(self, tenant: str, kind: str = "bars") -> pd.DataFrame:
        """Per symbol and timeframe of ``kind`` (bars, ticks or book): rows and time range."""
        if kind not in MARKET_TABLES:
            raise WarehouseError(f"kind must be one of {', '.join(MARKET_TABLES)}, not {kind!r}")
        return self.query(
            f"""SELECT symbol, timeframe, count() AS rows, min(ts) AS ts_min, max(ts) AS ts_max
                FROM {DATABASE}.{kind} FINAL WHERE tenant = {{tenant:String}}
                GROUP BY symbol, timeframe ORDER BY symbol, timeframe""",
            {"tenant": tenant},
        )

    def write_ticks(self, ticks: pd.DataFrame, *, tenant: str, symbol: str, timeframe: str,
                    source: str, ingest_id: str) -> int:
        """Upsert trades indexed by UTC ``ts`` with ``price, qty, side, trade_id``."""
        frame = pd.DataFrame({
            "tenant": tenant, "symbol": symbol, "timeframe": timeframe,
            "ts": ticks.index, "trade_id": ticks["trade_id"].astype(str).to_numpy(),
            "price": ticks["price"].astype(float).to_numpy(), "qty": ticks["qty"].astype(float).to_numpy(),
            "side": ticks["side"].astype(np.int8).to_numpy(),
            "source": source, "ingest_id": ingest_id, "version": np.uint64(time.time_ns()),
        })
        return self.insert("ticks", frame)

    def read_ticks(self, *, tenant: str, symbol: str, timeframe: str,
                   start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pd.DataFrame:
        """Trades as a frame indexed by UTC ``ts`` (``price, qty, side, trade_id``)."""
        where, params = self._key_where(tenant, symbol, timeframe, None, None)
        where += self._range_where(params, start, end, precision=6)
        frame = self.query(f"""SELECT ts, {', '.join(TICK_COLUMNS)} FROM {DATABASE}.ticks FINAL
                               WHERE {where} ORDER BY ts, trade_id""", params)
        frame = frame.set_index("ts")
        frame.index = pd.DatetimeIndex(frame.index, name="ts").tz_convert("UTC")
        return frame

    def write_book(self, book: pd.DataFrame, *, tenant: str, symbol: str, timeframe: str,
                   source: str, ingest_id: str) -> int:
        """Upsert top-of-book snapshots indexed by UTC ``ts``."""
        values = pd.DataFrame({col: book[col].astype(float) for col in BOOK_COLUMNS}, index=book.index)
        return self.insert("book", _keyed(values, tenant=tenant, symbol=symbol, timeframe=timeframe,
                                          source=source, ingest_id=ingest_id))

    def read_book(self, *, tenant: str, symbol: str, timeframe: str,
                  start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pd.DataFrame:
        """Book snapshots as a frame indexed by UTC ``ts``."""
        where, params = self._key_where(tenant, symbol, timeframe, None, None)
        where += self._range_where(params, start, end, precision=6)
        frame = self.query(
            f"SELECT ts, {', '.join(BOOK_COLUMNS)} FROM {DATABASE}.book FINAL WHERE {where} ORDER BY ts", params)
        frame = frame.set_index("ts")
        frame.index = pd.DatetimeIndex(frame.index, name="ts").tz_convert("UTC")
        return frame.astype(float)

    def write_market_events(self, events: pd.DataFrame, *, tenant: str, symbol: str, source: str) -> int:
        """Upsert known market events (``ts``, ``type``, optional ``n_bars``), e.g. the anomalies
        injected by the synthetic market, so anomaly detectors can be scored against them."""
        frame = pd.DataFrame({
            "tenant": tenant, "symbol": symbol, "ts": pd.DatetimeIndex(events["ts"]),
            "type": events["type"].astype(str).to_numpy(),
            "n_bars": (events["n_bars"] if "n_bars" in events else pd.Series(1, index=events.index))
            .astype(np.uint32).to_numpy(),
            "source": source, "version": np.uint64(time.time_ns()),
        })
        return self.insert("market_events", frame)

    def read_market_events(self, *, tenant: str, symbol: str) -> pd.DataFrame:
        """Known market events for a symbol: ``ts, type, n_bars, source``, ordered by ts."""
        out = self.query(
            f"""SELECT ts, type, n_bars, source FROM {DATABASE}.market_events FINAL
                WHERE tenant = {{tenant:String}} AND symbol = {{symbol:String}} ORDER BY ts, type""",
            {"tenant": tenant, "symbol": symbol})
        out["ts"] = pd.DatetimeIndex(out["ts"]).tz_convert("UTC")
        return out


def _keyed(values: pd.DataFrame, *, tenant: str, symbol: str, timeframe: str, source: str,
           ingest_id: str) -> pd.DataFrame:
    """Rows for a (tenant, symbol, timeframe, ts)-keyed table: the key, the values, lineage, version."""
    frame = values.reset_index(names="ts")
    frame.insert(0, "timeframe", timeframe)
    frame.insert(0, "symbol", symbol)
    frame.insert(0, "tenant", tenant)
    frame["source"] = source
    frame["ingest_id"] = ingest_id
    frame["version"] = np.uint64(time.time_ns())
    return frame
