"""The pattern library (``ml_pattern_windows``): embedded windows of feature vectors with their
later outcomes, searched by ClickHouse's vector distance functions.

A row is one window ending at bar ``ts`` of one symbol and timeframe, embedded by one encoder
(``library``: ``<model name>@v<version>``), with its outcome class and its forward log return
over ``horizon`` bars. ``source`` tells where the outcome came from: ``history`` (the spec's
label on past bars) or ``trade`` (a closed trade's result). Writes are idempotent: a (library,
symbol, timeframe, source, ts) already stored is skipped, so a search reads the table without ``FINAL``.
:meth:`PatternTables.search_patterns` ranks by ``cosineDistance`` (or ``L2Distance``) with an
``ORDER BY … LIMIT k``. :meth:`PatternTables.create_hnsw_copy` builds a table of one
library with ClickHouse's ``vector_similarity`` (HNSW) index, where the engine supports it
(ClickHouse ≥ 25.8 and chDB 4.4, which embeds 26.9; not the compose stack's 24.8).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from warehouse.backends import WarehouseError
from warehouse.schema import DATABASE
from warehouse.tables import Tables, ms_text

PATTERN_TABLE = "ml_pattern_windows"
DISTANCES = {"cosine": "cosineDistance", "l2": "L2Distance"}
_SEARCH_COLUMNS = "symbol, timeframe, ts, source, outcome, forward_return, horizon"


def vector_literal(embedding: Any) -> str:
    """A finite float vector as ClickHouse ``Array(Float32)`` parameter text."""
    values = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if not len(values) or not np.isfinite(values).all():
        raise ValueError(f"a query embedding must be a non-empty finite vector, got shape {values.shape}")
    return "[" + ",".join(repr(float(v)) for v in values) + "]"


class PatternTables(Tables):
    """Writes, counts and similarity searches of ``ml_pattern_windows``."""

    def write_pattern_windows(self, *, tenant: str, library: str, symbol: str, timeframe: str,
                              ts: pd.DatetimeIndex, embeddings: np.ndarray, outcomes: np.ndarray,
                              forward_returns: np.ndarray, horizon: int, source: str) -> int:
        """Append the windows not stored yet for (library, symbol, timeframe, source); return how many were new."""
        ts = pd.DatetimeIndex(ts)
        embeddings = np.asarray(embeddings, dtype=np.float32)
        outcomes, forward_returns = np.asarray(outcomes), np.asarray(forward_returns, dtype=np.float64)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(ts) or not (len(outcomes) == len(forward_returns)
                                                                        == len(ts)):
            raise ValueError(f"need one embedding row, outcome and forward return per timestamp: {len(ts)} "
                             f"timestamps, embeddings {embeddings.shape}, {len(outcomes)} outcomes, "
                             f"{len(forward_returns)} forward returns")
        if ts.tz is None:
            raise ValueError("pattern timestamps must be timezone-aware (UTC)")
        if not len(ts):
            return 0
        if not np.isfinite(embeddings).all():
            raise ValueError("pattern embeddings hold NaN or infinite values")
        ts = ts.tz_convert("UTC").floor("ms")
        stored = self.query(
            f"SELECT ts FROM {DATABASE}.{PATTERN_TABLE} WHERE tenant = {{tenant:String}} AND library = {{library:String}} "
            "AND symbol = {symbol:String} AND timeframe = {timeframe:String} AND source = {source:String} "
            "AND ts >= {start:DateTime64(3, 'UTC')} AND ts <= {end:DateTime64(3, 'UTC')}",
            {"tenant": tenant, "library": library, "symbol": symbol, "timeframe": timeframe, "source": source,
             "start": ms_text(ts.min()), "end": ms_text(ts.max())})
        known = pd.DatetimeIndex(stored["ts"]).tz_convert("UTC") if len(stored) else pd.DatetimeIndex([], tz="UTC")
        new = ~ts.isin(known) & ~ts.duplicated()
        n = int(new.sum())
        if not n:
            return 0
        rows = np.flatnonzero(new)
        width = embeddings.shape[1]
        flat = np.ascontiguousarray(embeddings[rows]).reshape(-1)
        same = lambda value: pa.array([value] * n)  # noqa: E731
        table = pa.table({
            "tenant": same(tenant), "library": same(library), "symbol": same(symbol), "timeframe": same(timeframe),
            "ts": pa.array(ts[rows], type=pa.timestamp("ms", tz="UTC")), "source": same(source),
            "embedding": pa.ListArray.from_arrays(pa.array(np.arange(0, n * width + 1, width, dtype=np.int32)),
                                                  pa.array(flat, type=pa.float32())),
            "outcome": pa.array(outcomes[rows].astype(np.int8)),
            "forward_return": pa.array(forward_returns[rows], from_pandas=False),
            "horizon": pa.array(np.full(n, horizon, dtype=np.uint16)),
            "version": pa.array(np.full(n, time.time_ns(), dtype=np.uint64)),
        })
        self.backend.insert_arrow(PATTERN_TABLE, table)
        return n

    def count_pattern_windows(self, *, tenant: str, library: str | None = None, symbol: str | None = None) -> int:
        where, params = self._tenant_where(tenant, library=library, symbol=symbol)
        out = self.query(f"SELECT count() AS n FROM {DATABASE}.{PATTERN_TABLE} WHERE {where}", params)
        return int(out["n"].iloc[0])

    def last_pattern_ts(self, *, tenant: str, library: str, symbol: str, timeframe: str,
                        source: str) -> pd.Timestamp | None:
        """The latest stored window's ``ts`` for (library, symbol, timeframe, source), or None."""
        where, params = self._tenant_where(tenant, library=library, symbol=symbol, timeframe=timeframe, source=source)
        out = self.query(f"SELECT count() AS n, max(ts) AS last FROM {DATABASE}.{PATTERN_TABLE} WHERE {where}", params)
        if not int(out["n"].iloc[0]):
            return None
        last = pd.Timestamp(out["last"].iloc[0])
        return last.tz_convert("UTC") if last.tzinfo is not None else last.tz_localize("UTC")

    def search_patterns(self, *, tenant: str, library: str, embedding: Any, limit: int = 10,
                        symbol: str | None = None, metric: str = "cosine", table: str = PATTERN_TABLE) -> pd.DataFrame:
        """The ``limit`` stored windows nearest to ``embedding``, nearest first: their symbol, timeframe,
        ts, source, outcome, forward_return, horizon and ``distance``."""
        if metric not in DISTANCES:
            raise ValueError(f"metric must be one of {sorted(DISTANCES)}, got {metric!r}")
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        where, params = self._tenant_where(tenant, library=library, symbol=symbol)
        params.update(query=vector_literal(embedding), limit=limit)
        return self.query(
            f"SELECT {_SEARCH_COLUMNS}, {DISTANCES[metric]}(embedding, {{query:Array(Float32)}}) AS distance "
            f"FROM {DATABASE}.{table} WHERE {where} ORDER BY distance ASC LIMIT {{limit:UInt32}}", params)

    def aggregate_pattern_outcomes(self, *, tenant: str, library: str, embedding: Any, limit: int = 10,
                                   symbol: str | None = None, metric: str = "cosine") -> pd.DataFrame:
        """Per outcome class among the ``limit`` nearest windows: count, share, mean forward return,
        mean distance (one SQL query over the search)."""
        where, params = self._tenant_where(tenant, library=library, symbol=symbol)
        if metric not in DISTANCES:
            raise ValueError(f"metric must be one of {sorted(DISTANCES)}, got {metric!r}")
        params.update(query=vector_literal(embedding), limit=int(limit))
        return self.query(
            f"SELECT outcome, count() AS n, n / {{limit:UInt32}} AS share, avg(forward_return) AS mean_forward_return, "
            f"avg(distance) AS mean_distance FROM (SELECT outcome, forward_return, "
            f"{DISTANCES[metric]}(embedding, {{query:Array(Float32)}}) AS distance FROM {DATABASE}.{PATTERN_TABLE} "
            f"WHERE {where} ORDER BY distance ASC LIMIT {{limit:UInt32}}) GROUP BY outcome ORDER BY outcome", params)

    def create_hnsw_copy(self, *, tenant: str, library: str, dim: int, name: str, metric: str = "cosine") -> str:
        """Copy one library into table ``name`` with a ``vector_similarity('hnsw', …, dim)`` index on
        ``embedding`` (rebuilt when it exists); return the table name for :meth:`search_patterns`."""
        if metric not in DISTANCES or not name.isidentifier():
            raise ValueError(f"bad metric {metric!r} or table name {name!r}")
        self.command(f"DROP TABLE IF EXISTS {DATABASE}.{name}")
        try:
            self.command(f"""CREATE TABLE {DATABASE}.{name} (
                tenant LowCardinality(String), library LowCardinality(String), symbol LowCardinality(String),
                timeframe LowCardinality(String), ts DateTime64(3, 'UTC'), source LowCardinality(String),
                embedding Array(Float32), outcome Int8, forward_return Float64, horizon UInt16,
                INDEX embedding_hnsw embedding TYPE vector_similarity('hnsw', '{DISTANCES[metric]}', {int(dim)})
            ) ENGINE = MergeTree ORDER BY (tenant, library, symbol, timeframe, ts)""")
        except Exception as exc:
            raise WarehouseError(f"this ClickHouse has no vector_similarity index: {exc}") from exc
        where, params = self._tenant_where(tenant, library=library)
        self.command(f"INSERT INTO {DATABASE}.{name} SELECT tenant, library, symbol, timeframe, ts, source, embedding, "
                     f"outcome, forward_return, horizon FROM {DATABASE}.{PATTERN_TABLE} WHERE {where}", params)
        self.command(f"OPTIMIZE TABLE {DATABASE}.{name} FINAL")
        return name

    def drop_table(self, name: str) -> None:
        """Drop a table made by :meth:`create_hnsw_copy`."""
        if not name.isidentifier() or name == PATTERN_TABLE:
            raise ValueError(f"refusing to drop {name!r}")
        self.command(f"DROP TABLE IF EXISTS {DATABASE}.{name}")
