"""The warehouse: bars, ticks, book, features, labels, predictions, trades and logs, and all
the SQL that reads and writes them.

One DDL for both engines (``warehouse.schema``). Embedded, it is chDB (ClickHouse's engine in
process) under ``$ALPHAOPS_HOME/warehouse``, held by one process at a time under a lock file
with a busy timeout (``warehouse.backends``, ``warehouse.lock``); in production it is a
ClickHouse server through clickhouse-connect (``ALPHAOPS_CLICKHOUSE_URL``). Ingest batches are
crash-atomic (``warehouse.ingest``). The tables come in groups, one module each:
``warehouse.market`` (bars, ticks, book, market events), ``warehouse.training`` (features,
labels), ``warehouse.live`` (prediction log, trades, monitor history), ``warehouse.ledger``
(tested hypotheses) and ``warehouse.patterns`` (the pattern library's embedded windows).

Use::

    with open_warehouse(settings) as warehouse:
        bars = warehouse.read_bars(tenant=settings.tenant, symbol="SPX", timeframe="1d")
"""

from warehouse.backends import DEFAULT_BUSY_TIMEOUT_SECONDS, WarehouseError
from warehouse.connection import Warehouse, open_warehouse
from warehouse.ingest import STAGE_PREFIX, StagedIngest, ingest_log_frame
from warehouse.schema import DATABASE

__all__ = [
    "DATABASE",
    "DEFAULT_BUSY_TIMEOUT_SECONDS",
    "STAGE_PREFIX",
    "StagedIngest",
    "Warehouse",
    "WarehouseError",
    "ingest_log_frame",
    "open_warehouse",
]
