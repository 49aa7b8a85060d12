"""Crash-atomic ingest batches and the ingest log.

An ingest batch (bars, ticks or book) is visible whole or not at all, even when its writer is
killed (``IngestBatches.staged_ingest``). Its rows go into a staging table of their own
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

import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from warehouse.backends import WarehouseError
from warehouse.schema import DATABASE, MARKET_TABLES, NEWS_TABLE
from warehouse.tables import Tables

log = logging.getLogger(__name__)

STAGE_PREFIX = "staged__"          # staging tables of ingest batches: staged__<table>__<ingest id>
STAGED_TABLES = (*MARKET_TABLES, NEWS_TABLE)  # the tables ingested in staged batches
SERVER_PUBLISH_GRACE_SECONDS = 60.0    # ClickHouse server: a live writer moves its batch within this
SERVER_ABANDON_AFTER_SECONDS = 3600.0  # ClickHouse server: an uncommitted batch this old is abandoned


class StagedIngest:
    """One ingest batch being written into its staging table (``IngestBatches.staged_ingest``)."""

    def __init__(self, warehouse: IngestBatches, *, table: str, ingest_id: str, stage: str) -> None:
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


class IngestBatches(Tables):
    """Staged ingest batches, their recovery after a crash, and the ingest log."""

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

    def last_ingests(self, tenant: str) -> pd.DataFrame:
        """Per kind, symbol and timeframe, the latest ``ingest_log`` row: ``last_id, last_status,
        last_rows_written, last_logged_at``."""
        return self.query(
            f"""SELECT kind, symbol, timeframe, argMax(ingest_id, logged_at) AS last_id,
                       argMax(status, logged_at) AS last_status,
                       argMax(rows_written, logged_at) AS last_rows_written, max(logged_at) AS last_logged_at
                FROM {DATABASE}.ingest_log WHERE tenant = {{tenant:String}}
                GROUP BY kind, symbol, timeframe""", {"tenant": tenant})
