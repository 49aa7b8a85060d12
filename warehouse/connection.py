"""Opening the warehouse: ``Warehouse``, every table group on one backend, and ``open_warehouse``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from warehouse.backends import DEFAULT_BUSY_TIMEOUT_SECONDS, Backend, ChdbBackend, ClickHouseBackend
from warehouse.ingest import IngestBatches
from warehouse.ledger import LedgerTables
from warehouse.live import LiveTables
from warehouse.market import MarketTables
from warehouse.news import NewsTables
from warehouse.patterns import PatternTables
from warehouse.training import TrainingTables

if TYPE_CHECKING:
    from pipelines.config import Settings


class Warehouse(IngestBatches, MarketTables, NewsTables, TrainingTables, LiveTables, LedgerTables, PatternTables):
    """Domain access to the warehouse tables for one backend."""

    @classmethod
    @contextmanager
    def open(cls, url: str | None, path: Path, *,
             busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS) -> Iterator[Warehouse]:
        """Open the ClickHouse server at ``url``, or chDB at ``path`` when ``url`` is None.

        On chDB, the block holds the warehouse against every other process (see
        ``warehouse.backends``): keep it to reads and writes, and compute outside it. A process
        that finds it held waits up to ``busy_timeout_seconds``, then raises ``WarehouseError``
        naming the holder. The first open of a session finishes or discards the ingest batches
        that writers killed mid-way left behind (``recover_staged_ingests``) before anything reads.
        """
        backend: Backend = ClickHouseBackend(url) if url else ChdbBackend(path, busy_timeout_seconds)
        try:
            warehouse = cls(backend)
            warehouse.ensure_schema()
            if getattr(backend, "first_open", True):
                warehouse.recover_staged_ingests(exclusive=isinstance(backend, ChdbBackend))
            yield warehouse
        finally:
            backend.close()


def open_warehouse(settings: Settings) -> AbstractContextManager[Warehouse]:
    """``Warehouse.open`` on the settings' URL or embedded path, with the settings' busy timeout."""
    return Warehouse.open(settings.clickhouse_url, settings.warehouse_path,
                          busy_timeout_seconds=settings.warehouse_busy_timeout_seconds)
