"""What training reads: feature matrices (``ml_features``, float32 arrays with their column names
per key in ``feature_sets``) and labels (``ml_labels``, one row per timestamp and label)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from warehouse.backends import WarehouseError
from warehouse.schema import DATABASE
from warehouse.tables import Tables


FEATURE_READ_ROWS = 100_000  # rows of ml_features per query of read_features


class TrainingTables(Tables):
    """Versioned feature matrices and labels per (tenant, symbol, timeframe)."""

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
        values = np.ascontiguousarray(matrix.to_numpy(dtype=np.float32))  # one float32 copy at most
        n_rows, width = values.shape
        offsets = pa.array(np.arange(0, n_rows * width + 1, max(width, 1), dtype=np.int64)[: n_rows + 1])

        def same(value: str) -> pa.Array:
            return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n_rows, dtype=np.int32)), pa.array([value]))

        table = pa.table({
            "tenant": same(tenant), "symbol": same(symbol), "timeframe": same(timeframe),
            "ts": pa.array(pd.DatetimeIndex(matrix.index).tz_convert("UTC").as_unit("ms"),
                           type=pa.timestamp("ms", tz="UTC")),
            "feature_set_version": same(feature_set_version),
            "values": pa.LargeListArray.from_arrays(offsets, pa.array(values.reshape(-1), from_pandas=False)),
            "version": pa.array(np.full(n_rows, version, dtype=np.uint64)),
        })
        return self.insert_table("ml_features", table)

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
        index_sql = f"""SELECT ts FROM {DATABASE}.ml_features FINAL
                WHERE {where} AND feature_set_version = {{fsv:String}} ORDER BY ts"""
        ts = self.backend.query_arrow(index_sql, params).column("ts").to_pandas()
        index = pd.DatetimeIndex(ts, name="ts").tz_convert("UTC").as_unit("ns")
        matrix = np.empty((len(index), len(columns)), dtype=np.float32)
        # Read in time slices of FEATURE_READ_ROWS rows: the engine's result and its Arrow copy
        # exist for one slice at a time, beside the one float32 matrix they fill.
        for first in range(0, len(index), FEATURE_READ_ROWS):
            last = min(first + FEATURE_READ_ROWS, len(index)) - 1
            piece_where, piece_params = self._key_where(tenant, symbol, timeframe, index[first], index[last])
            table = self.backend.query_arrow(
                f"""SELECT values FROM {DATABASE}.ml_features FINAL
                    WHERE {piece_where} AND feature_set_version = {{fsv:String}} ORDER BY ts""",
                {**piece_params, "fsv": feature_set_version})
            if table.num_rows != last - first + 1:
                raise WarehouseError(f"features of {symbol} {timeframe} changed while being read "
                                     f"({table.num_rows} rows in {index[first]}..{index[last]}, expected "
                                     f"{last - first + 1}); read again")
            row = first
            for chunk in table.column("values").chunks:
                part = chunk.flatten().to_numpy(zero_copy_only=False).reshape(-1, len(columns))
                matrix[row:row + len(part)] = part
                row += len(part)
            del table
        return pd.DataFrame(matrix, index=index, columns=columns, copy=False)

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
        wanted = {f"label{i}": str(name) for i, name in enumerate(labels)}
        if not wanted:
            raise WarehouseError("read_labels needs at least one label name")
        params.update(wanted)
        listed = ", ".join(f"{{{key}:String}}" for key in wanted)
        long = self.query(  # only the labels asked for: a symbol stores every family's labels
            f"""SELECT ts, label, value FROM {DATABASE}.ml_labels FINAL
                WHERE {where} AND label IN ({listed}) ORDER BY ts""", params)
        wide = long.pivot(index="ts", columns="label", values="value")
        wide.index = pd.DatetimeIndex(wide.index, name="ts").tz_convert("UTC")
        return wide.reindex(columns=list(labels))
