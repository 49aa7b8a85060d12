"""What every group of tables builds on: one backend, queries that name themselves when they
fail, inserts from pandas that keep NaN as NaN, and the key and time-range filters.

``Tables`` holds the connection. The table groups (``warehouse.market``, ``warehouse.training``,
``warehouse.live``, ``warehouse.ledger``, ``warehouse.ingest``) extend it with their domain
methods, and ``warehouse.connection.Warehouse`` joins them into one object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from warehouse.backends import Backend, WarehouseError
from warehouse.schema import DATABASE, DDL, MIGRATIONS


@dataclass
class Tables:
    """Generic access to the warehouse tables over one backend."""

    backend: Backend
    # table -> the staging table that receives its inserts while a batch is staged (staged_ingest)
    _redirect: dict[str, str] = field(default_factory=dict, repr=False)

    def ensure_schema(self) -> None:
        self.backend.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        for ddl in DDL.values():
            self.backend.command(ddl)
        for migration in MIGRATIONS:
            self.backend.command(migration)

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
        self.backend.insert_arrow(self._redirect.get(table, table), arrow_from_frame(frame))
        return len(frame)

    def insert_table(self, table: str, data: pa.Table) -> int:
        """Insert an Arrow table as it is (no pandas round trip), like :meth:`insert`."""
        if table not in DDL:
            raise WarehouseError(f"unknown table {table!r}")
        if data.num_rows:
            self.backend.insert_arrow(self._redirect.get(table, table), data)
        return data.num_rows

    def count(self, table: str, where: str = "1", params: dict[str, Any] | None = None) -> int:
        out = self.query(f"SELECT count() AS n FROM {DATABASE}.{table} FINAL WHERE {where}", params)
        return int(out["n"].iloc[0])

    @staticmethod
    def _tenant_where(tenant: str, **equal: str | None) -> tuple[str, dict[str, Any]]:
        """``tenant = … AND <column> = …`` for each ``column=value`` given that is not None, and its params."""
        clauses = ["tenant = {tenant:String}"]
        params: dict[str, Any] = {"tenant": tenant}
        for column, value in equal.items():
            if value is not None:
                clauses.append(f"{column} = {{{column}:String}}")
                params[column] = value
        return " AND ".join(clauses), params

    @staticmethod
    def _key_where(tenant: str, symbol: str, timeframe: str, start: pd.Timestamp | None,
                   end: pd.Timestamp | None) -> tuple[str, dict[str, Any]]:
        clauses = ["tenant = {tenant:String}", "symbol = {symbol:String}", "timeframe = {timeframe:String}"]
        params: dict[str, Any] = {"tenant": tenant, "symbol": symbol, "timeframe": timeframe}
        if start is not None:
            clauses.append("ts >= {start:DateTime64(3, 'UTC')}")
            params["start"] = ms_text(start)
        if end is not None:
            clauses.append("ts <= {end:DateTime64(3, 'UTC')}")
            params["end"] = ms_text(end)
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


def ms_text(value: pd.Timestamp) -> str:
    """A tz-aware timestamp as ClickHouse ``DateTime64(3, 'UTC')`` text."""
    return pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def nullable_floats(rows: Sequence[dict[str, Any]], key: str) -> pa.Array:
    """``rows[i][key]`` as float64, NULL where it is missing or None."""
    return pa.array([None if r.get(key) is None else float(r[key]) for r in rows], type=pa.float64())


def arrow_from_frame(frame: pd.DataFrame) -> pa.Table:
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
