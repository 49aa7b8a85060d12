"""The two engines behind the warehouse, one interface: chDB in process, or a ClickHouse server.

chDB admits one process per data path, so the embedded warehouse is a short critical section:
opening ``ChdbBackend`` takes an exclusive lock on the lock file beside the data path
(``warehouse.lock``), then opens the chDB session; ``close`` closes the session, then releases
the lock. A process that finds the lock taken waits for it, polling, up to a busy timeout
(``ALPHAOPS_WAREHOUSE_BUSY_TIMEOUT_SECONDS``), and then fails naming the holder. Within one
process, nested opens of the same path (from any thread) share the session, reference-counted;
the last one out closes it. A ClickHouse server takes a new clickhouse-connect client per open.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from warehouse import lock
from warehouse.schema import DATABASE

DEFAULT_BUSY_TIMEOUT_SECONDS = 120.0  # the Settings default too (warehouse_busy_timeout_seconds)


class WarehouseError(RuntimeError):
    """A warehouse operation failed; the message names the table or query."""


class Backend(Protocol):
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


class ChdbBackend:
    """chDB on one data path: exclusive across processes (file lock), shared within this one."""

    _guard = threading.RLock()  # guards _held and every query on the shared session
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
                with self._guard:
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
                    if lock.try_lock(fd):
                        lock.write_holder(fd)
                        try:
                            session = chdb.session.Session(self.path)
                        except Exception as exc:
                            lock.release(fd)
                            raise WarehouseError(f"cannot open the chDB warehouse {self.path!r}: {exc}") from exc
                        self._held[self.path] = _Held(session, fd, 1)
                        self._session = session
                        self.first_open = True  # this open took the lock: no other writer is alive
                        fd = None  # owned by _held now
                        return
                waited = time.monotonic() - started
                if waited >= busy_timeout_seconds:
                    raise WarehouseError(lock.busy_message(self.path, lock_path, waited))
                # Poll with a growing pause (1 ms up to 50 ms), like SQLite's busy handler.
                time.sleep(min(delay, busy_timeout_seconds - waited))
                delay = min(delay * 2, 0.05)
        finally:
            if fd is not None:
                os.close(fd)

    def query_arrow(self, sql: str, params: dict[str, Any] | None) -> pa.Table:
        with self._guard:
            return self._session.query(sql, "ArrowTable", params=params or {})

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        with self._guard:
            self._session.query(sql, params=params or {})

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        columns = ", ".join(f"`{c}`" for c in data.column_names)
        arrow_batch = data  # noqa: F841  (read by chDB's Python() table function)
        with self._guard:
            self._session.query(
                f"INSERT INTO {DATABASE}.{table} ({columns}) SELECT {columns} FROM Python(arrow_batch) "
                "SETTINGS max_partitions_per_insert_block = 0"  # 20 years of daily bars = 240 partitions
            )

    def close(self) -> None:
        """Drop this reference; the last one closes the session, then releases the file lock."""
        with self._guard:
            held = self._held[self.path]
            held.refs -= 1
            if held.refs > 0:
                return
            del self._held[self.path]
            try:
                held.session.close()
            finally:
                lock.release(held.lock_fd)

    @classmethod
    def _forget_after_fork(cls) -> None:
        """In a forked child: the parent's session and lock are not the child's to use or release.

        The child closes its copies of the lock files (the parent keeps its lock) and keeps the
        session objects referenced so that their finaliser never closes the parent's engine.
        """
        cls._guard = threading.RLock()
        for held in cls._held.values():
            _inherited_sessions.append(held.session)
            os.close(held.lock_fd)
        cls._held = {}


_inherited_sessions: list[Any] = []
os.register_at_fork(after_in_child=ChdbBackend._forget_after_fork)


class ClickHouseBackend:
    """A ClickHouse server through clickhouse-connect."""

    first_open = True  # every open is a new client; other writers may be alive (see warehouse.ingest)

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
