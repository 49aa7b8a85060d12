"""The hypothesis ledger (``hypothesis_ledger``): every model version a training run tested,
with its p-value, Benjamini–Hochberg q-value, deflated Sharpe and the decision taken."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from warehouse.schema import DATABASE
from warehouse.tables import Tables, nullable_floats


class LedgerTables(Tables):
    """Records and reads of ``hypothesis_ledger``, keyed by (tenant, run, model, version)."""

    def write_hypotheses(self, rows: Sequence[dict[str, Any]], *, tenant: str) -> int:
        """Record (or replace, by run, model and version) the hypotheses a run tested."""
        if not rows:
            return 0
        version = time.time_ns()
        table = pa.table({
            "tenant": pa.array([tenant] * len(rows)),
            **{key: pa.array([str(r[key]) for r in rows])
               for key in ("run_id", "model", "model_version", "spec", "symbol", "status", "decision")},
            "p_value": pa.array([float(r["p_value"]) for r in rows], type=pa.float64()),
            **{key: pa.array([int(r[key]) for r in rows], type=pa.uint32())
               for key in ("n_permutations", "n_trials", "n_trials_run")},
            "q_value": nullable_floats(rows, "q_value"),
            "deflated_sharpe": nullable_floats(rows, "deflated_sharpe"),
            "recorded_at": pa.array([pd.Timestamp(r["recorded_at"]).tz_convert("UTC").floor("ms") for r in rows],
                                    type=pa.timestamp("ms", tz="UTC")),
            "version": pa.array([version] * len(rows), type=pa.uint64()),
        })
        self.backend.insert_arrow("hypothesis_ledger", table)
        return len(rows)

    def read_hypotheses(self, *, tenant: str, run_id: str | None = None) -> pd.DataFrame:
        """The ledger of tested hypotheses, per run, in the order they were recorded."""
        where, params = self._tenant_where(tenant, run_id=run_id)
        return self.query(f"SELECT * EXCEPT version FROM {DATABASE}.hypothesis_ledger FINAL WHERE {where} "
                          "ORDER BY recorded_at, model, model_version", params)
