"""The live loop's tables: the prediction log (``ml_predictions``, outcomes filled in later),
trade results and the monitor's history of checks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from warehouse.schema import DATABASE
from warehouse.tables import Tables, ms_text, nullable_floats


class LiveTables(Tables):
    """Prediction log, trade results and monitor history (``pipelines.live.monitor``, ``pipelines.ingest.feedback``)."""

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
        where, params = self._tenant_where(tenant, model=model)
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

    def canary_predictions(self, *, tenant: str, model: str, since: pd.Timestamp) -> pd.DataFrame:
        """The prediction-log rows of ``model`` from ``since`` on, with what the canary decision
        weighs per version: ``model_version, output, confidence, outcome, latency_us, error, fallback``."""
        return self.query(
            f"""SELECT model_version, output, confidence, outcome, latency_us, error, fallback
                FROM {DATABASE}.ml_predictions FINAL
                WHERE tenant = {{tenant:String}} AND model = {{model:String}}
                  AND ts >= {{start:DateTime64(6, 'UTC')}}""",
            {"tenant": tenant, "model": model, "start": since.strftime("%Y-%m-%d %H:%M:%S.%f")})

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
        where, params = self._tenant_where(tenant, symbol=symbol)
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
        table = pa.table({
            "tenant": pa.array([tenant] * len(rows)),
            "model": pa.array([str(r["model"]) for r in rows]),
            "model_version": pa.array([str(r.get("version") or "") for r in rows]),
            "checked_at": pa.array([pd.Timestamp(r["checked_at"]).tz_convert("UTC").floor("ms") for r in rows],
                                   type=pa.timestamp("ms", tz="UTC")),
            "drift_share": pa.array([float(r.get("drift_share") or 0.0) for r in rows], type=pa.float64()),
            "drifted": pa.array([int(bool(r.get("drifted"))) for r in rows], type=pa.uint8()),
            "live_accuracy": nullable_floats(rows, "live_accuracy"),
            "backtest_accuracy": nullable_floats(rows, "backtest_accuracy"),
            "latency_p50_us": nullable_floats(rows, "latency_p50_us"),
            "latency_p95_us": nullable_floats(rows, "latency_p95_us"),
            "latency_p99_us": nullable_floats(rows, "latency_p99_us"),
            "error_rate": pa.array([float(r.get("error_rate") or 0.0) for r in rows], type=pa.float64()),
            "fallback_rate": pa.array([float(r.get("fallback_rate") or 0.0) for r in rows], type=pa.float64()),
            "n_predictions": pa.array([int(r.get("n_predictions") or 0) for r in rows], type=pa.uint64()),
            "retrain": pa.array([int(bool(r.get("retrain"))) for r in rows], type=pa.uint8()),
            "reasons": pa.array([[str(x) for x in r.get("reasons") or []] for r in rows], type=pa.list_(pa.string())),
            "report_uri": pa.array([str(r.get("report_uri") or "") for r in rows]),
        })
        self.backend.insert_arrow("monitor_history", table)
        return len(rows)

    def read_monitor_history(self, *, tenant: str, model: str | None = None) -> pd.DataFrame:
        """Monitor results ordered by check time."""
        where, params = self._tenant_where(tenant, model=model)
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
            {"tenant": tenant, "since": ms_text(since), "before": ms_text(before)})
        return dict(zip(frame["model"].astype(str), pd.DatetimeIndex(frame["last_check"]).tz_convert("UTC")))
