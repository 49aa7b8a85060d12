"""The warehouse: bars, ticks, book, features, labels, predictions, trades and logs.

One DDL for both engines. Embedded, it is chDB (ClickHouse's engine in process) under
``$ALPHAOPS_HOME/warehouse``; in production it is a ClickHouse server through
clickhouse-connect (``ALPHAOPS_CLICKHOUSE_URL``). Tables are ReplacingMergeTree keyed by
(tenant, symbol, timeframe, ts), partitioned by month, so writing the same rows again is a
no-op and a late correction replaces the old row. Reads use ``FINAL``.

chDB admits one process per data path, so the embedded warehouse is a short critical section:
``Warehouse.open`` takes an exclusive ``flock`` on the lock file beside the data path
(``<path>.lock``), then opens the chDB session; leaving the block closes the session, then
releases the lock. A process that finds the lock taken waits for it, up to a busy timeout
(``ALPHAOPS_WAREHOUSE_BUSY_TIMEOUT_SECONDS``), and then fails naming the holder, whose PID
and command line are written into the lock file. Within one process, nested opens of the
same path (from any thread) share the session, reference-counted; the last one out closes it.

An ingest batch (bars, ticks or book) is visible whole or not at all, even when its writer is
killed (``Warehouse.staged_ingest``). Its rows go into a staging table of their own
(``staged__<table>__<ingest id>``, same engine and partitioning), which no read looks at. The
batch's ``ok`` row in ``ingest_log`` is the commit: one row, so one part, written at once or
not at all. Only then are the staging table's partitions moved into the real table (``ALTER
TABLE … MOVE PARTITION … TO TABLE``, parts moved without rewriting them) and the staging table
dropped. Partition moves are atomic one by one, not together, so a writer killed in the middle
of them leaves a committed batch half moved: whoever opens the warehouse next finishes the
move before anything else reads (``recover_staged_ingests``), and discards staging tables
that never got their commit row, logging them ``aborted``. On chDB, the process that opens the
warehouse holds its lock, so every staging table it finds belongs to a dead writer. On a
ClickHouse server other writers may be alive, so a committed batch is finished only a minute
after its commit and an uncommitted one is discarded only after an hour; there, readers on
other connections can also see a batch being moved during the one ``ALTER`` that moves it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

DATABASE = "alphaops"
log = logging.getLogger(__name__)
DEFAULT_BUSY_TIMEOUT_SECONDS = 120.0  # the Settings default too (warehouse_busy_timeout_seconds)
OHLCV = ["open", "high", "low", "close", "volume"]
BAR_EXTRA = ["buy_volume", "sell_volume", "bid_size", "ask_size", "spread", "n_trades",
             "funding_rate", "liquidations"]
BOOK = ["bid_price", "bid_size", "ask_price", "ask_size", "bid_depth", "ask_depth"]

_KEY = "tenant LowCardinality(String), symbol LowCardinality(String), timeframe LowCardinality(String)"
_MERGE = "ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(ts) ORDER BY (tenant, symbol, timeframe, ts)"

DDL: dict[str, str] = {
    "bars": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.bars (
        {_KEY}, ts DateTime64(3, 'UTC'),
        open Float64, high Float64, low Float64, close Float64, volume Float64,
        buy_volume Nullable(Float64), sell_volume Nullable(Float64),
        bid_size Nullable(Float64), ask_size Nullable(Float64), spread Nullable(Float64),
        n_trades Nullable(Float64), funding_rate Nullable(Float64), liquidations Nullable(Float64),
        source LowCardinality(String), ingest_id String, version UInt64
    ) {_MERGE}""",
    "ticks": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.ticks (
        {_KEY}, ts DateTime64(6, 'UTC'), trade_id String,
        price Float64, qty Float64, side Int8,
        source LowCardinality(String), ingest_id String, version UInt64
    ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(ts)
      ORDER BY (tenant, symbol, timeframe, ts, trade_id)""",
    "book": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.book (
        {_KEY}, ts DateTime64(6, 'UTC'),
        bid_price Float64, bid_size Float64, ask_price Float64, ask_size Float64,
        bid_depth Float64, ask_depth Float64,
        source LowCardinality(String), ingest_id String, version UInt64
    ) {_MERGE}""",
    "ml_features": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.ml_features (
        {_KEY}, ts DateTime64(3, 'UTC'), feature_set_version LowCardinality(String),
        values Array(Float64), version UInt64
    ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(ts)
      ORDER BY (tenant, symbol, timeframe, feature_set_version, ts)""",
    "feature_sets": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.feature_sets (
        {_KEY}, feature_set_version String, names Array(String), version UInt64
    ) ENGINE = ReplacingMergeTree(version) ORDER BY (tenant, symbol, timeframe, feature_set_version)""",
    "ml_labels": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.ml_labels (
        {_KEY}, ts DateTime64(3, 'UTC'), label LowCardinality(String),
        value Float64, version UInt64
    ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(ts)
      ORDER BY (tenant, symbol, timeframe, label, ts)""",
    "ml_predictions": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.ml_predictions (
        tenant LowCardinality(String), model LowCardinality(String), model_version String,
        symbol LowCardinality(String), ts DateTime64(6, 'UTC'), routed_to LowCardinality(String),
        features Array(Float64), output Float64, confidence Float64, latency_us Float64,
        error String, fallback UInt8, outcome Nullable(Float64), version UInt64
    ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(ts)
      ORDER BY (tenant, model, symbol, ts, model_version)""",
    "trade_results": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.trade_results (
        tenant LowCardinality(String), symbol LowCardinality(String), trade_id String,
        entry_ts DateTime64(3, 'UTC'), exit_ts DateTime64(3, 'UTC'),
        side Int8, entry_price Float64, exit_price Float64, pnl Float64, r_multiple Float64,
        signal_source LowCardinality(String), context String, version UInt64
    ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(entry_ts)
      ORDER BY (tenant, symbol, trade_id)""",
    "ingest_log": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.ingest_log (
        ingest_id String, tenant LowCardinality(String), symbol LowCardinality(String),
        timeframe LowCardinality(String), kind LowCardinality(String), source String,
        status LowCardinality(String), rows_in UInt64, rows_written UInt64, rows_rejected UInt64,
        rows_new UInt64, rows_changed UInt64, checksum String,
        ts_min Nullable(DateTime64(3, 'UTC')), ts_max Nullable(DateTime64(3, 'UTC')),
        report String, logged_at DateTime64(3, 'UTC')
    ) ENGINE = MergeTree ORDER BY (tenant, logged_at, ingest_id)""",
    "market_events": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.market_events (
        tenant LowCardinality(String), symbol LowCardinality(String), ts DateTime64(3, 'UTC'),
        type LowCardinality(String), n_bars UInt32, source LowCardinality(String), version UInt64
    ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(ts)
      ORDER BY (tenant, symbol, ts, type)""",
    "monitor_history": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.monitor_history (
        tenant LowCardinality(String), model LowCardinality(String), model_version String,
        checked_at DateTime64(3, 'UTC'), drift_share Float64, drifted UInt8,
        live_accuracy Nullable(Float64), backtest_accuracy Nullable(Float64),
        latency_p50_us Nullable(Float64), latency_p95_us Nullable(Float64),
        latency_p99_us Nullable(Float64), error_rate Float64, fallback_rate Float64,
        n_predictions UInt64, retrain UInt8, reasons Array(String), report_uri String
    ) ENGINE = MergeTree ORDER BY (tenant, model, checked_at)""",
    "hypothesis_ledger": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.hypothesis_ledger (
        tenant LowCardinality(String), run_id String, model String, model_version String,
        spec LowCardinality(String), symbol LowCardinality(String), status LowCardinality(String),
        p_value Float64, n_permutations UInt32, n_trials UInt32, q_value Nullable(Float64),
        deflated_sharpe Nullable(Float64), n_trials_run UInt32, decision LowCardinality(String),
        recorded_at DateTime64(3, 'UTC'), version UInt64
    ) ENGINE = ReplacingMergeTree(version) ORDER BY (tenant, run_id, model, model_version)""",
}


STAGE_PREFIX = "staged__"          # staging tables of ingest batches: staged__<table>__<ingest id>
STAGED_TABLES = ("bars", "ticks", "book")
SERVER_PUBLISH_GRACE_SECONDS = 60.0    # ClickHouse server: a live writer moves its batch within this
SERVER_ABANDON_AFTER_SECONDS = 3600.0  # ClickHouse server: an uncommitted batch this old is abandoned


class WarehouseError(RuntimeError):
    """A warehouse operation failed; the message names the table or query."""


class _Backend(Protocol):
    def query_arrow(self, sql: str, params: dict[str, Any] | None) -> pa.Table: ...
    def command(self, sql: str, params: dict[str, Any] | None = None) -> None: ...
    def insert_arrow(self, table: str, data: pa.Table) -> None: ...
    def close(self) -> None: ...


@dataclass
class _Held:
    """This process's hold on one chDB path: the session, the locked file and its users."""

    session: Any
    lock_fd: int
    refs: int


class _ChdbBackend:
    """chDB on one data path: exclusive across processes (file lock), shared within this one."""

    _lock = threading.RLock()  # guards _held and every query on the shared session
    _held: dict[str, _Held] = {}

    def __init__(self, path: Path, busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS) -> None:
        import chdb.session

        self.path = str(path)
        lock_path = Path(f"{self.path}.lock")
        started = time.monotonic()
        delay = 0.001
        fd: int | None = None
        try:
            while True:
                with self._lock:
                    open_paths = [p for p in self._held if p != self.path]
                    if open_paths:
                        raise WarehouseError(
                            f"chDB already holds warehouse {open_paths[0]!r} in this process; "
                            f"close it before opening {self.path!r}"
                        )
                    held = self._held.get(self.path)
                    if held is not None:  # a nested open, or another thread's: share the session
                        held.refs += 1
                        self._session = held.session
                        self.first_open = False
                        return
                    if fd is None:
                        lock_path.parent.mkdir(parents=True, exist_ok=True)
                        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                    if _try_flock(fd):
                        _write_holder(fd)
                        try:
                            session = chdb.session.Session(self.path)
                        except Exception as exc:
                            _release_flock(fd)
                            raise WarehouseError(f"cannot open the chDB warehouse {self.path!r}: {exc}") from exc
                        self._held[self.path] = _Held(session, fd, 1)
                        self._session = session
                        self.first_open = True  # this open took the lock: no other writer is alive
                        fd = None  # owned by _held now
                        return
                waited = time.monotonic() - started
                if waited >= busy_timeout_seconds:
                    raise WarehouseError(_busy_message(self.path, lock_path, waited))
                # Poll with a growing pause (1 ms up to 50 ms), like SQLite's busy handler.
                time.sleep(min(delay, busy_timeout_seconds - waited))
                delay = min(delay * 2, 0.05)
        finally:
            if fd is not None:
                os.close(fd)

    def query_arrow(self, sql: str, params: dict[str, Any] | None) -> pa.Table:
        with self._lock:
            return self._session.query(sql, "ArrowTable", params=params or {})

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        with self._lock:
            self._session.query(sql, params=params or {})

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        columns = ", ".join(f"`{c}`" for c in data.column_names)
        arrow_batch = data  # noqa: F841  (read by chDB's Python() table function)
        with self._lock:
            self._session.query(
                f"INSERT INTO {DATABASE}.{table} ({columns}) SELECT {columns} FROM Python(arrow_batch) "
                "SETTINGS max_partitions_per_insert_block = 0"  # 20 years of daily bars = 240 partitions
            )

    def close(self) -> None:
        """Drop this reference; the last one closes the session, then releases the file lock."""
        with self._lock:
            held = self._held[self.path]
            held.refs -= 1
            if held.refs > 0:
                return
            del self._held[self.path]
            try:
                held.session.close()
            finally:
                _release_flock(held.lock_fd)

    @classmethod
    def _forget_after_fork(cls) -> None:
        """In a forked child: the parent's session and lock are not the child's to use or release.

        The child closes its copies of the lock files (the parent keeps its lock) and keeps the
        session objects referenced so that their finaliser never closes the parent's engine.
        """
        cls._lock = threading.RLock()
        for held in cls._held.values():
            _inherited_sessions.append(held.session)
            os.close(held.lock_fd)
        cls._held = {}


_inherited_sessions: list[Any] = []
os.register_at_fork(after_in_child=_ChdbBackend._forget_after_fork)


def _try_flock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` without waiting; False if another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _write_holder(fd: int) -> None:
    """Record this process as the holder in the lock file (read by those who wait)."""
    try:
        with open(f"/proc/{os.getpid()}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = " ".join([sys.executable, *sys.argv])
    holder = {"pid": os.getpid(), "command": command, "since": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)


def _release_flock(fd: int) -> None:
    """Clear the holder record, release the lock and close the file."""
    try:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _busy_message(path: str, lock_path: Path, waited: float) -> str:
    """Why an open gave up: who holds the warehouse (from the lock file), since when, how long we waited."""
    try:
        holder = json.loads(lock_path.read_text() or "null")
    except (OSError, ValueError):
        holder = None
    if isinstance(holder, dict):
        held_for = time.time() - float(holder.get("since", time.time()))
        who = (f"PID {holder.get('pid')} ({holder.get('command') or 'command unknown'}) "
               f"has held it for {held_for:.1f} s")
    else:
        who = "its holder released it just now, or wrote no record"
    return (f"warehouse {path!r} is busy: {who}; gave up after waiting {waited:.1f} s "
            f"(raise ALPHAOPS_WAREHOUSE_BUSY_TIMEOUT_SECONDS to wait longer; lock file {lock_path})")


class _ClickHouseBackend:
    """A ClickHouse server through clickhouse-connect."""

    first_open = True  # every open is a new client; other writers may be alive (see the module doc)

    def __init__(self, url: str) -> None:
        import clickhouse_connect

        self._client = clickhouse_connect.get_client(dsn=url)

    def query_arrow(self, sql: str, params: dict[str, Any] | None) -> pa.Table:
        return self._client.query_arrow(sql, parameters=params or {})

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._client.command(sql, parameters=params or {})

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        self._client.insert_arrow(f"{DATABASE}.{table}", data,
                                  settings={"max_partitions_per_insert_block": 0})

    def close(self) -> None:
        self._client.close()


def _arrow_from_frame(frame: pd.DataFrame) -> pa.Table:
    """Arrow table that keeps NaN as NaN (not NULL) in float columns and arrays."""
    arrays = {}
    for name in frame.columns:
        col = frame[name]
        first = col.iloc[0] if len(col) else None
        if isinstance(first, (np.ndarray, list)) and len(first) and isinstance(first[0], str):
            arrays[name] = pa.array([list(map(str, v)) for v in col.values], type=pa.list_(pa.string()))
        elif isinstance(first, (np.ndarray, list)):
            matrix = np.vstack([np.asarray(v, dtype=np.float64) for v in col.values])
            width = matrix.shape[1]
            offsets = pa.array(np.arange(0, matrix.size + 1, max(width, 1), dtype=np.int32)[: len(col) + 1])
            arrays[name] = pa.ListArray.from_arrays(offsets, pa.array(matrix.ravel(), from_pandas=False))
        elif pd.api.types.is_float_dtype(col.dtype):
            arrays[name] = pa.array(col.to_numpy(), from_pandas=False)
        else:
            arrays[name] = pa.array(col)
    return pa.table(arrays)


class StagedIngest:
    """One ingest batch being written into its staging table (``Warehouse.staged_ingest``)."""

    def __init__(self, warehouse: "Warehouse", *, table: str, ingest_id: str, stage: str) -> None:
        self.warehouse, self.table, self.ingest_id, self.stage = warehouse, table, ingest_id, stage
        self.committed = False

    def commit(self, log_row: pd.DataFrame) -> None:
        """Write the batch's ``ok`` row into ``ingest_log`` (one row, one part: the commit),
        then move the staged rows into the table. Should the move fail, the batch is still
        committed, and the next first open of the warehouse finishes it."""
        if (len(log_row) != 1 or str(log_row["status"].iloc[0]) != "ok"
                or str(log_row["ingest_id"].iloc[0]) != self.ingest_id):
            raise WarehouseError(f"the commit of ingest {self.ingest_id} needs its one ingest_log row with status ok")
        self.warehouse._redirect.pop(self.table, None)
        self.warehouse.insert("ingest_log", log_row)
        self.committed = True
        try:
            self.warehouse._publish(self.stage, self.table)
        except Exception as exc:
            raise WarehouseError(f"ingest {self.ingest_id} is committed, but moving its rows from {self.stage} into "
                                 f"{self.table} failed: {exc}; the next open of the warehouse finishes it") from exc


def _stage_name(table: str, ingest_id: str) -> str:
    """``staged__<table>__<ingest id>`` with every character outside [0-9A-Za-z_] as ``_``."""
    return f"{STAGE_PREFIX}{table}__{re.sub(r'[^0-9A-Za-z_]', '_', ingest_id)}"


def _stage_meta(name: str, comment: str) -> dict[str, Any]:
    """What a staging table's comment says about its batch; the table from the name if the comment is unreadable."""
    try:
        meta = json.loads(comment) if comment else {}
    except ValueError:
        meta = {}
    if not isinstance(meta, dict):
        meta = {}
    if meta.get("table") not in STAGED_TABLES:
        table = name.removeprefix(STAGE_PREFIX).split("__", 1)[0]
        if table not in STAGED_TABLES:
            raise WarehouseError(f"staging table {name!r} names no ingest table")
        meta["table"] = table
    meta.setdefault("ingest_id", "")
    return meta


def _sql_string(text: str) -> str:
    """``text`` as a ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ingest_log_frame(*, ingest_id: str, tenant: str, symbol: str, timeframe: str, kind: str, source: str,
                     status: str, rows_in: int, rows_written: int, rows_rejected: int, rows_new: int,
                     rows_changed: int, checksum: str, ts_min: Any, ts_max: Any, report: str) -> pd.DataFrame:
    """One ``ingest_log`` row; ``logged_at`` is the wall clock (an audit fact, not an input)."""
    def stamp(value: Any) -> pd.Series:
        if value is None or pd.isna(value):
            return pd.Series(pd.DatetimeIndex([pd.NaT], tz="UTC"))
        ts = pd.Timestamp(value)
        return pd.Series(pd.DatetimeIndex([ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")]))

    def count(value: int) -> np.ndarray:
        return np.array([value], dtype=np.uint64)

    return pd.DataFrame({
        "ingest_id": [ingest_id], "tenant": [tenant], "symbol": [symbol], "timeframe": [timeframe],
        "kind": [kind], "source": [source], "status": [status],
        "rows_in": count(rows_in), "rows_written": count(rows_written), "rows_rejected": count(rows_rejected),
        "rows_new": count(rows_new), "rows_changed": count(rows_changed),
        "checksum": [checksum], "ts_min": stamp(ts_min), "ts_max": stamp(ts_max), "report": [report],
        "logged_at": pd.Series(pd.DatetimeIndex([pd.Timestamp.now(tz="UTC")])),
    })


@dataclass
class Warehouse:
    """Domain access to the warehouse tables for one backend."""

    backend: _Backend
    # table -> the staging table that receives its inserts while a batch is staged (staged_ingest)
    _redirect: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    @contextmanager
    def open(cls, url: str | None, path: Path, *,
             busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS) -> Iterator["Warehouse"]:
        """Open the ClickHouse server at ``url``, or chDB at ``path`` when ``url`` is None.

        On chDB, the block holds the warehouse against every other process (see the module
        doc): keep it to reads and writes, and compute outside it. A process that finds it
        held waits up to ``busy_timeout_seconds``, then raises ``WarehouseError`` naming the holder.
        The first open of a session finishes or discards the ingest batches that writers killed
        mid-way left behind (``recover_staged_ingests``) before anything reads.
        """
        backend: _Backend = _ClickHouseBackend(url) if url else _ChdbBackend(path, busy_timeout_seconds)
        try:
            warehouse = cls(backend)
            warehouse.ensure_schema()
            if getattr(backend, "first_open", True):
                warehouse.recover_staged_ingests(exclusive=isinstance(backend, _ChdbBackend))
            yield warehouse
        finally:
            backend.close()

    # -- generic -----------------------------------------------------------------------
    def ensure_schema(self) -> None:
        self.backend.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        for ddl in DDL.values():
            self.backend.command(ddl)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
        try:
            return self.backend.query_arrow(sql, params).to_pandas()
        except Exception as exc:  # the engines raise their own types; name the query
            raise WarehouseError(f"query failed: {exc}\n  sql: {' '.join(sql.split())[:300]}") from exc

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.backend.command(sql, params)

    def insert(self, table: str, frame: pd.DataFrame) -> int:
        """Insert ``frame`` into ``table``, or into its staging table while a batch is staged."""
        if frame.empty:
            return 0
        if table not in DDL:
            raise WarehouseError(f"unknown table {table!r}")
        self.backend.insert_arrow(self._redirect.get(table, table), _arrow_from_frame(frame))
        return len(frame)

    # -- crash-atomic ingest batches (see the module doc) ---------------------------------
    @contextmanager
    def staged_ingest(self, table: str, *, ingest_id: str, meta: dict[str, Any]) -> Iterator["StagedIngest"]:
        """Stage one ingest batch of ``table``: inside the block, every insert into ``table``
        through this object goes to a new staging table that no read sees. ``commit`` on the
        yielded batch writes its ``ingest_log`` row (the commit point) and moves the rows in.
        Leaving the block without a commit, or by an exception before it, drops the staging
        table: nothing of the batch was ever visible. ``meta`` (tenant, symbol, timeframe,
        kind, source) is kept in the staging table's comment, for the ``aborted`` log row a
        later open writes if this process dies first."""
        if table not in STAGED_TABLES:
            raise WarehouseError(f"only {', '.join(STAGED_TABLES)} are ingested in staged batches, not {table!r}")
        if table in self._redirect:
            raise WarehouseError(f"a batch of {table} is already staged on this connection ({self._redirect[table]})")
        stage = _stage_name(table, ingest_id)
        comment = json.dumps({**meta, "table": table, "ingest_id": ingest_id, "pid": os.getpid(),
                              "host": socket.gethostname(), "created": time.time()}, default=str)
        self.command(f"CREATE TABLE {DATABASE}.{stage} AS {DATABASE}.{table} COMMENT {_sql_string(comment)}")
        batch = StagedIngest(self, table=table, ingest_id=ingest_id, stage=stage)
        self._redirect[table] = stage
        try:
            yield batch
        except BaseException:
            self._redirect.pop(table, None)
            if not batch.committed:
                try:
                    self._drop_stage(stage)
                except Exception as exc:  # the first error is the one to report; a later open drops it
                    log.warning("could not drop the staging table %s: %s", stage, exc)
            raise
        self._redirect.pop(table, None)
        if not batch.committed:
            self._drop_stage(stage)

    def recover_staged_ingests(self, *, exclusive: bool) -> list[dict[str, Any]]:
        """Finish the ingest batches whose writer died after committing them (move the rest of
        their rows in), and discard those it never committed (log them ``aborted``).

        ``exclusive`` says that no other writer can be alive (chDB, under its lock): every
        staging table is then a dead writer's. Without it (a ClickHouse server), a committed
        batch is finished only ``SERVER_PUBLISH_GRACE_SECONDS`` after its creation and an
        uncommitted one is discarded after ``SERVER_ABANDON_AFTER_SECONDS``. Returns what was
        done, one dict per staging table.
        """
        stages = self.query(
            "SELECT name, comment, toUnixTimestamp(metadata_modification_time) AS modified FROM system.tables "
            "WHERE database = {db:String} AND startsWith(name, {prefix:String}) ORDER BY name",
            {"db": DATABASE, "prefix": STAGE_PREFIX})
        done = []
        for name, comment, modified in zip(stages["name"], stages["comment"], stages["modified"]):
            meta = _stage_meta(str(name), str(comment))
            age = time.time() - float(meta.get("created") or modified)
            committed = bool(meta["ingest_id"]) and self._ingest_logged(meta["ingest_id"], "ok")
            if committed:
                if not exclusive and age < SERVER_PUBLISH_GRACE_SECONDS:
                    continue
                self._publish(str(name), meta["table"])
                outcome = "published"
            else:
                if not exclusive and age < SERVER_ABANDON_AFTER_SECONDS:
                    continue
                self._abandon(str(name), meta)
                outcome = "aborted"
            log.warning("ingest %s (%s): its writer died; the batch was %s", meta["ingest_id"], name,
                        "made visible (it was committed)" if committed else "discarded (it was never committed)")
            done.append({"stage": str(name), "ingest_id": meta["ingest_id"], "table": meta["table"],
                         "outcome": outcome})
        return done

    def staged_tables(self) -> list[str]:
        """Staging tables present now (batches being written, or left by a dead writer)."""
        return self.query("SELECT name FROM system.tables WHERE database = {db:String} "
                          "AND startsWith(name, {prefix:String}) ORDER BY name",
                          {"db": DATABASE, "prefix": STAGE_PREFIX})["name"].astype(str).tolist()

    def _ingest_logged(self, ingest_id: str, status: str) -> bool:
        """Whether ``ingest_log`` holds a ``status`` row of ``ingest_id`` (``ok`` is the commit)."""
        found = self.query(f"SELECT count() AS n FROM {DATABASE}.ingest_log "
                           "WHERE ingest_id = {id:String} AND status = {status:String}",
                           {"id": ingest_id, "status": status})
        return int(found["n"].iloc[0]) > 0

    def _publish(self, stage: str, table: str) -> None:
        """Move every partition of ``stage`` into ``table`` (one ALTER), then drop ``stage``."""
        parts = self.query(
            "SELECT DISTINCT partition_id FROM system.parts WHERE database = {db:String} AND table = {t:String} "
            "AND active ORDER BY partition_id", {"db": DATABASE, "t": stage})["partition_id"].astype(str).tolist()
        bad = [p for p in parts if not re.fullmatch(r"[0-9A-Za-z_-]+", p)]
        if bad:
            raise WarehouseError(f"unexpected partition id {bad[0]!r} in {stage}")
        if parts:
            moves = ", ".join(f"MOVE PARTITION ID '{p}' TO TABLE {DATABASE}.{table}" for p in parts)
            self.command(f"ALTER TABLE {DATABASE}.{stage} {moves}")
        self._drop_stage(stage)

    def _abandon(self, stage: str, meta: dict[str, Any]) -> None:
        """Log an uncommitted batch ``aborted`` (once), then drop its staging table."""
        if not self._ingest_logged(meta["ingest_id"], "aborted"):
            staged = self.query(f"SELECT count() AS n, min(ts) AS ts_min, max(ts) AS ts_max FROM {DATABASE}.{stage}")
            n = int(staged["n"].iloc[0])
            who = f"PID {meta.get('pid', '?')} on {meta.get('host', '?')}"
            self.insert("ingest_log", ingest_log_frame(
                ingest_id=meta["ingest_id"], tenant=meta.get("tenant", ""), symbol=meta.get("symbol", ""),
                timeframe=meta.get("timeframe", ""), kind=meta.get("kind", meta["table"]),
                source=meta.get("source", ""), status="aborted", rows_in=int(meta.get("rows_in", n)),
                rows_written=0, rows_rejected=0, rows_new=0, rows_changed=0, checksum=meta.get("checksum", ""),
                ts_min=staged["ts_min"].iloc[0] if n else None, ts_max=staged["ts_max"].iloc[0] if n else None,
                report=(f"the process writing this batch ({who}) died before committing it: {n} staged rows were "
                        "discarded and none was ever visible; ingest the source again")))
        self._drop_stage(stage)

    def _drop_stage(self, stage: str) -> None:
        if not stage.startswith(STAGE_PREFIX):
            raise WarehouseError(f"{stage!r} is not a staging table")
        self.command(f"DROP TABLE IF EXISTS {DATABASE}.{stage} SYNC")

    def count(self, table: str, where: str = "1", params: dict[str, Any] | None = None) -> int:
        out = self.query(f"SELECT count() AS n FROM {DATABASE}.{table} FINAL WHERE {where}", params)
        return int(out["n"].iloc[0])

    # -- bars --------------------------------------------------------------------------
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

    def inventory(self, tenant: str) -> pd.DataFrame:
        """Per symbol and timeframe: rows and time range."""
        return self.query(
            f"""SELECT symbol, timeframe, count() AS rows, min(ts) AS ts_min, max(ts) AS ts_max
                FROM {DATABASE}.bars FINAL WHERE tenant = {{tenant:String}}
                GROUP BY symbol, timeframe ORDER BY symbol, timeframe""",
            {"tenant": tenant},
        )

    # -- ticks, book snapshots and market events -----------------------------------------
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
        frame = self.query(f"""SELECT ts, price, qty, side, trade_id FROM {DATABASE}.ticks FINAL
                               WHERE {where} ORDER BY ts, trade_id""", params)
        frame = frame.set_index("ts")
        frame.index = pd.DatetimeIndex(frame.index, name="ts").tz_convert("UTC")
        return frame

    def write_book(self, book: pd.DataFrame, *, tenant: str, symbol: str, timeframe: str,
                   source: str, ingest_id: str) -> int:
        """Upsert top-of-book snapshots indexed by UTC ``ts``."""
        values = pd.DataFrame({col: book[col].astype(float) for col in BOOK}, index=book.index)
        return self.insert("book", _keyed(values, tenant=tenant, symbol=symbol, timeframe=timeframe,
                                          source=source, ingest_id=ingest_id))

    def read_book(self, *, tenant: str, symbol: str, timeframe: str,
                  start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pd.DataFrame:
        """Book snapshots as a frame indexed by UTC ``ts``."""
        where, params = self._key_where(tenant, symbol, timeframe, None, None)
        where += self._range_where(params, start, end, precision=6)
        frame = self.query(f"SELECT ts, {', '.join(BOOK)} FROM {DATABASE}.book FINAL WHERE {where} ORDER BY ts",
                           params)
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

    # -- features and labels -----------------------------------------------------------
    def write_features(self, matrix: pd.DataFrame, *, tenant: str, symbol: str, timeframe: str,
                       feature_set_version: str) -> int:
        version = np.uint64(time.time_ns())
        # Columns depend on the symbol's data (microstructure columns or not), so names are per key.
        self.insert("feature_sets", pd.DataFrame({
            "tenant": [tenant], "symbol": [symbol], "timeframe": [timeframe],
            "feature_set_version": [feature_set_version],
            "names": [list(map(str, matrix.columns))],
            "version": [version],
        }))
        frame = pd.DataFrame({
            "tenant": tenant, "symbol": symbol, "timeframe": timeframe,
            "ts": matrix.index, "feature_set_version": feature_set_version,
            "values": list(matrix.to_numpy(dtype=np.float64)), "version": version,
        })
        return self.insert("ml_features", frame)

    def read_features(self, *, tenant: str, symbol: str, timeframe: str, feature_set_version: str,
                      start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pd.DataFrame:
        where, params = self._key_where(tenant, symbol, timeframe, start, end)
        params["fsv"] = feature_set_version
        names = self.query(
            f"""SELECT names FROM {DATABASE}.feature_sets FINAL WHERE tenant = {{tenant:String}}
                AND symbol = {{symbol:String}} AND timeframe = {{timeframe:String}}
                AND feature_set_version = {{fsv:String}}""", params)
        if names.empty:
            raise WarehouseError(f"feature set {feature_set_version!r} of {symbol} {timeframe} is not in the "
                                 "warehouse; run the features step")
        columns = list(names["names"].iloc[0])
        table = self.backend.query_arrow(
            f"""SELECT ts, values FROM {DATABASE}.ml_features FINAL
                WHERE {where} AND feature_set_version = {{fsv:String}} ORDER BY ts""", params)
        index = pd.DatetimeIndex(table.column("ts").to_pandas(), name="ts").tz_convert("UTC").as_unit("ns")
        flat = table.column("values").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return pd.DataFrame(flat.reshape(len(index), len(columns)), index=index, columns=columns)

    def write_labels(self, labels: pd.DataFrame, *, tenant: str, symbol: str, timeframe: str) -> int:
        long = labels.rename_axis("ts").reset_index().melt(id_vars="ts", var_name="label", value_name="value")
        # NaN rows are written too: a label that became undefined must replace its old value.
        long.insert(0, "timeframe", timeframe)
        long.insert(0, "symbol", symbol)
        long.insert(0, "tenant", tenant)
        long["version"] = np.uint64(time.time_ns())
        return self.insert("ml_labels", long[["tenant", "symbol", "timeframe", "ts", "label", "value", "version"]])

    def read_labels(self, *, tenant: str, symbol: str, timeframe: str, labels: Sequence[str]) -> pd.DataFrame:
        where, params = self._key_where(tenant, symbol, timeframe, None, None)
        long = self.query(
            f"SELECT ts, label, value FROM {DATABASE}.ml_labels FINAL WHERE {where} ORDER BY ts", params)
        long = long[long["label"].isin(list(labels))]
        wide = long.pivot(index="ts", columns="label", values="value")
        wide.index = pd.DatetimeIndex(wide.index, name="ts").tz_convert("UTC")
        return wide.reindex(columns=list(labels))

    # -- prediction log, trade results and monitor history (pipelines.monitor / feedback) --
    def write_predictions(self, frame: pd.DataFrame) -> int:
        """Upsert prediction-log rows into ``ml_predictions``.

        ``frame`` has the table's columns; ``features`` holds one sequence of floats per row
        (may be empty for calls that raised), ``outcome`` is NaN/None while unknown (stored as
        NULL). A row written again with a higher ``version`` replaces the old one (outcomes).
        """
        if frame.empty:
            return 0
        feats = [np.asarray(v if v is not None else [], dtype=np.float64).reshape(-1) for v in frame["features"]]
        offsets = np.concatenate([[0], np.cumsum([len(v) for v in feats])]).astype(np.int32)
        flat = np.concatenate(feats) if offsets[-1] else np.empty(0, dtype=np.float64)
        outcome = pd.to_numeric(frame["outcome"], errors="coerce").to_numpy(dtype=np.float64)
        table = pa.table({
            "tenant": pa.array(frame["tenant"].astype(str).tolist()),
            "model": pa.array(frame["model"].astype(str).tolist()),
            "model_version": pa.array(frame["model_version"].astype(str).tolist()),
            "symbol": pa.array(frame["symbol"].astype(str).tolist()),
            "ts": pa.array(pd.DatetimeIndex(frame["ts"]).tz_convert("UTC").floor("us"),
                           type=pa.timestamp("us", tz="UTC")),
            "routed_to": pa.array(frame["routed_to"].fillna("").astype(str).tolist()),
            "features": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, from_pandas=False)),
            "output": pa.array(frame["output"].to_numpy(dtype=np.float64), from_pandas=False),
            "confidence": pa.array(frame["confidence"].to_numpy(dtype=np.float64), from_pandas=False),
            "latency_us": pa.array(frame["latency_us"].to_numpy(dtype=np.float64), from_pandas=False),
            "error": pa.array(frame["error"].fillna("").astype(str).tolist()),
            "fallback": pa.array(frame["fallback"].astype(bool).to_numpy().astype(np.uint8)),
            "outcome": pa.array(outcome, from_pandas=True),  # NaN -> NULL: not known yet
            "version": pa.array(frame["version"].to_numpy(dtype=np.uint64)),
        })
        self.backend.insert_arrow("ml_predictions", table)
        return len(frame)

    def read_predictions(self, *, tenant: str, model: str | None = None, start: pd.Timestamp | None = None,
                         end: pd.Timestamp | None = None, limit: int | None = None,
                         missing_outcome: bool = False) -> pd.DataFrame:
        """Prediction-log rows ordered by ``ts`` (``features`` as arrays); ``limit`` keeps the last rows."""
        params: dict[str, Any] = {"tenant": tenant}
        where = "tenant = {tenant:String}"
        if model is not None:
            where += " AND model = {model:String}"
            params["model"] = model
        if missing_outcome:
            where += " AND outcome IS NULL"
        where += self._range_where(params, start, end, precision=6)
        tail = ""
        if limit is not None:
            tail = " LIMIT {limit:UInt64}"
            params["limit"] = int(limit)
        frame = self.query(
            f"""SELECT * FROM (SELECT tenant, model, model_version, symbol, ts, routed_to, features, output,
                       confidence, latency_us, error, fallback, outcome, version
                FROM {DATABASE}.ml_predictions FINAL WHERE {where} ORDER BY ts DESC, model_version{tail})
                ORDER BY ts, model_version""", params)
        frame["ts"] = pd.DatetimeIndex(frame["ts"]).tz_convert("UTC")
        return frame

    def write_trades(self, trades: pd.DataFrame, *, tenant: str) -> int:
        """Upsert trade results keyed by (symbol, trade_id); columns as in ``trade_results``."""
        if trades.empty:
            return 0
        table = pa.table({
            "tenant": pa.array([tenant] * len(trades)),
            "symbol": pa.array(trades["symbol"].astype(str).tolist()),
            "trade_id": pa.array(trades["trade_id"].astype(str).tolist()),
            "entry_ts": pa.array(pd.DatetimeIndex(trades["entry_ts"]).tz_convert("UTC").floor("ms"),
                                 type=pa.timestamp("ms", tz="UTC")),
            "exit_ts": pa.array(pd.DatetimeIndex(trades["exit_ts"]).tz_convert("UTC").floor("ms"),
                                type=pa.timestamp("ms", tz="UTC")),
            "side": pa.array(trades["side"].to_numpy(dtype=np.int8)),
            **{c: pa.array(trades[c].to_numpy(dtype=np.float64), from_pandas=False)
               for c in ("entry_price", "exit_price", "pnl", "r_multiple")},
            "signal_source": pa.array(trades["signal_source"].astype(str).tolist()),
            "context": pa.array(trades["context"].fillna("").astype(str).tolist()),
            "version": pa.array(np.full(len(trades), time.time_ns(), dtype=np.uint64)),
        })
        self.backend.insert_arrow("trade_results", table)
        return len(trades)

    def read_trades(self, *, tenant: str, symbol: str | None = None) -> pd.DataFrame:
        """Trade results ordered by entry time (all symbols when ``symbol`` is None)."""
        params: dict[str, Any] = {"tenant": tenant}
        where = "tenant = {tenant:String}"
        if symbol is not None:
            where += " AND symbol = {symbol:String}"
            params["symbol"] = symbol
        frame = self.query(
            f"""SELECT symbol, trade_id, entry_ts, exit_ts, side, entry_price, exit_price, pnl, r_multiple,
                       signal_source, context
                FROM {DATABASE}.trade_results FINAL WHERE {where} ORDER BY entry_ts, symbol, trade_id""", params)
        for col in ("entry_ts", "exit_ts"):
            frame[col] = pd.DatetimeIndex(frame[col]).tz_convert("UTC")
        return frame

    def write_monitor_history(self, rows: Sequence[dict[str, Any]], *, tenant: str) -> int:
        """Append monitor results (one per model check) to ``monitor_history``."""
        if not rows:
            return 0

        def nullable(key: str) -> pa.Array:
            return pa.array([None if r.get(key) is None else float(r[key]) for r in rows], type=pa.float64())

        table = pa.table({
            "tenant": pa.array([tenant] * len(rows)),
            "model": pa.array([str(r["model"]) for r in rows]),
            "model_version": pa.array([str(r.get("version") or "") for r in rows]),
            "checked_at": pa.array([pd.Timestamp(r["checked_at"]).tz_convert("UTC").floor("ms") for r in rows],
                                   type=pa.timestamp("ms", tz="UTC")),
            "drift_share": pa.array([float(r.get("drift_share") or 0.0) for r in rows], type=pa.float64()),
            "drifted": pa.array([int(bool(r.get("drifted"))) for r in rows], type=pa.uint8()),
            "live_accuracy": nullable("live_accuracy"),
            "backtest_accuracy": nullable("backtest_accuracy"),
            "latency_p50_us": nullable("latency_p50_us"),
            "latency_p95_us": nullable("latency_p95_us"),
            "latency_p99_us": nullable("latency_p99_us"),
            "error_rate": pa.array([float(r.get("error_rate") or 0.0) for r in rows], type=pa.float64()),
            "fallback_rate": pa.array([float(r.get("fallback_rate") or 0.0) for r in rows], type=pa.float64()),
            "n_predictions": pa.array([int(r.get("n_predictions") or 0) for r in rows], type=pa.uint64()),
            "retrain": pa.array([int(bool(r.get("retrain"))) for r in rows], type=pa.uint8()),
            "reasons": pa.array([[str(x) for x in r.get("reasons") or []] for r in rows], type=pa.list_(pa.string())),
            "report_uri": pa.array([str(r.get("report_uri") or "") for r in rows]),
        })
        self.backend.insert_arrow("monitor_history", table)
        return len(rows)

    def write_hypotheses(self, rows: Sequence[dict[str, Any]], *, tenant: str) -> int:
        """Record (or replace, by run, model and version) the hypotheses a run tested."""
        if not rows:
            return 0

        def nullable(key: str) -> pa.Array:
            return pa.array([None if r.get(key) is None else float(r[key]) for r in rows], type=pa.float64())

        version = time.time_ns()
        table = pa.table({
            "tenant": pa.array([tenant] * len(rows)),
            **{key: pa.array([str(r[key]) for r in rows])
               for key in ("run_id", "model", "model_version", "spec", "symbol", "status", "decision")},
            "p_value": pa.array([float(r["p_value"]) for r in rows], type=pa.float64()),
            **{key: pa.array([int(r[key]) for r in rows], type=pa.uint32())
               for key in ("n_permutations", "n_trials", "n_trials_run")},
            "q_value": nullable("q_value"),
            "deflated_sharpe": nullable("deflated_sharpe"),
            "recorded_at": pa.array([pd.Timestamp(r["recorded_at"]).tz_convert("UTC").floor("ms") for r in rows],
                                    type=pa.timestamp("ms", tz="UTC")),
            "version": pa.array([version] * len(rows), type=pa.uint64()),
        })
        self.backend.insert_arrow("hypothesis_ledger", table)
        return len(rows)

    def read_hypotheses(self, *, tenant: str, run_id: str | None = None) -> pd.DataFrame:
        """The ledger of tested hypotheses, per run, in the order they were recorded."""
        params: dict[str, Any] = {"tenant": tenant}
        where = "tenant = {tenant:String}"
        if run_id is not None:
            where += " AND run_id = {run_id:String}"
            params["run_id"] = run_id
        return self.query(f"SELECT * EXCEPT version FROM {DATABASE}.hypothesis_ledger FINAL WHERE {where} "
                          "ORDER BY recorded_at, model, model_version", params)

    def read_monitor_history(self, *, tenant: str, model: str | None = None) -> pd.DataFrame:
        """Monitor results ordered by check time."""
        params: dict[str, Any] = {"tenant": tenant}
        where = "tenant = {tenant:String}"
        if model is not None:
            where += " AND model = {model:String}"
            params["model"] = model
        frame = self.query(f"SELECT * FROM {DATABASE}.monitor_history WHERE {where} ORDER BY checked_at, model",
                           params)
        frame["checked_at"] = pd.DatetimeIndex(frame["checked_at"]).tz_convert("UTC")
        return frame

    def last_monitor_checks(self, *, tenant: str, since: pd.Timestamp, before: pd.Timestamp,
                            that: str) -> dict[str, pd.Timestamp]:
        """Per model, the latest check in ``[since, before)`` that requested retraining
        (``that="requested_retrain"``) or wrote an HTML report (``that="wrote_report"``)."""
        conditions = {"requested_retrain": "retrain = 1", "wrote_report": "report_uri != ''"}
        if that not in conditions:
            raise ValueError(f"that must be one of {sorted(conditions)}, got {that!r}")
        frame = self.query(
            f"SELECT model, max(checked_at) AS last_check FROM {DATABASE}.monitor_history "
            f"WHERE tenant = {{tenant:String}} AND {conditions[that]} AND checked_at >= {{since:DateTime64(3, 'UTC')}} "
            "AND checked_at < {before:DateTime64(3, 'UTC')} GROUP BY model",
            {"tenant": tenant, "since": _ms_text(since), "before": _ms_text(before)})
        return dict(zip(frame["model"].astype(str), pd.DatetimeIndex(frame["last_check"]).tz_convert("UTC")))

    # -- helpers -----------------------------------------------------------------------
    @staticmethod
    def _key_where(tenant: str, symbol: str, timeframe: str, start: pd.Timestamp | None,
                   end: pd.Timestamp | None) -> tuple[str, dict[str, Any]]:
        clauses = ["tenant = {tenant:String}", "symbol = {symbol:String}", "timeframe = {timeframe:String}"]
        params: dict[str, Any] = {"tenant": tenant, "symbol": symbol, "timeframe": timeframe}
        if start is not None:
            clauses.append("ts >= {start:DateTime64(3, 'UTC')}")
            params["start"] = _ms_text(start)
        if end is not None:
            clauses.append("ts <= {end:DateTime64(3, 'UTC')}")
            params["end"] = _ms_text(end)
        return " AND ".join(clauses), params


    @staticmethod
    def _range_where(params: dict[str, Any], start: pd.Timestamp | None, end: pd.Timestamp | None,
                     precision: int) -> str:
        """`` AND ts >= start AND ts <= end`` at ``precision`` sub-second digits (ticks, book)."""
        clauses = ""
        for name, op, value in (("start", ">=", start), ("end", "<=", end)):
            if value is not None:
                clauses += f" AND ts {op} {{{name}:DateTime64({precision}, 'UTC')}}"
                text = pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S.%f")
                params[name] = text[: len(text) - (6 - precision)] if precision < 6 else text
        return clauses


def _ms_text(value: pd.Timestamp) -> str:
    """A tz-aware timestamp as ClickHouse ``DateTime64(3, 'UTC')`` text."""
    return pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


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


def open_warehouse(settings: Any) -> Any:
    """``Warehouse.open`` on the settings' URL or embedded path, with the settings' busy timeout."""
    return Warehouse.open(settings.clickhouse_url, settings.warehouse_path,
                          busy_timeout_seconds=settings.warehouse_busy_timeout_seconds)
