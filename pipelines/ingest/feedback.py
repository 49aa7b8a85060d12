"""Feedback from trading: trade results into ``trade_results``, predictions joined with outcomes.

A trade result is one closed trade: ``symbol, entry_ts, exit_ts, entry_price, exit_price,
pnl, r_multiple, signal_source`` (required), ``trade_id`` and ``side`` (optional: a stable
id is derived from symbol, entry time, source and side; the side is inferred from the PnL
and the price move, 0 when that is ambiguous). Every other column is kept, per trade, as a
JSON object in ``context`` (e.g. ``exit_reason``, the features at entry) and comes back as
columns from :func:`trades_frame`, which is what the ``trade_quality`` family trains on.

Ingestion is all-or-nothing: a batch with a missing column, an unreadable or reversed time,
a non-finite number or a duplicate id raises ``ValueError`` naming the column, and nothing
is written. Writing the same trades again replaces them (keyed by symbol and trade id).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import Settings

REQUIRED = ("symbol", "entry_ts", "exit_ts", "entry_price", "exit_price", "pnl", "r_multiple", "signal_source")
NUMERIC = ("entry_price", "exit_price", "pnl", "r_multiple")
CORE = ("trade_id", "side", "context", *REQUIRED)
_SIDES = {"long": 1, "buy": 1, "1": 1, "+1": 1, "1.0": 1, "short": -1, "sell": -1, "-1": -1, "-1.0": -1}


def _first_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _read(trades: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(trades, pd.DataFrame):
        return trades.copy()
    path = Path(trades)
    if not path.exists():
        raise FileNotFoundError(f"trades file not found: {path}")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    return pd.read_csv(path)


def _context(row: pd.Series) -> str:
    def plain(v: Any) -> Any:
        if isinstance(v, (np.generic,)):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, pd.Timestamp):
            return v.isoformat()
        return v

    return json.dumps({str(k): plain(v) for k, v in row.items()}, default=str, sort_keys=True)


def validate_trades(trades: pd.DataFrame, *, symbol: str | None = None) -> pd.DataFrame:
    """The canonical trade frame (``trade_results`` columns) or ``ValueError`` naming the column."""
    frame = trades.copy()
    if "symbol" not in frame and symbol is not None:
        frame["symbol"] = symbol
    missing = [c for c in REQUIRED if c not in frame]
    if missing:
        raise ValueError(f"trades: missing required column(s) {', '.join(repr(c) for c in missing)} "
                         f"(required: {', '.join(REQUIRED)})")
    if frame.empty:
        raise ValueError("trades: no rows")
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame(index=frame.index)
    out["symbol"] = frame["symbol"].astype(str).str.strip()
    for col in ("symbol", "signal_source"):
        values = frame[col]
        empty = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
        if empty.any():
            raise ValueError(f"trades: column {col!r} is empty on {int(empty.sum())} row(s) "
                             f"(first at row {_first_row(empty)})")
    out["signal_source"] = frame["signal_source"].astype(str).str.strip()
    for col in ("entry_ts", "exit_ts"):
        parsed = pd.to_datetime(frame[col], utc=True, errors="coerce", format="mixed")
        bad = parsed.isna().to_numpy()
        if bad.any():
            raise ValueError(f"trades: column {col!r} has {int(bad.sum())} missing or unreadable timestamp(s) "
                             f"(first at row {_first_row(bad)}: {frame[col].iloc[_first_row(bad)]!r})")
        out[col] = parsed
    reversed_ = (out["exit_ts"] < out["entry_ts"]).to_numpy()
    if reversed_.any():
        i = _first_row(reversed_)
        raise ValueError(f"trades: column 'exit_ts' is before 'entry_ts' on {int(reversed_.sum())} row(s) "
                         f"(first at row {i}: entry {out['entry_ts'].iloc[i]}, exit {out['exit_ts'].iloc[i]})")
    for col in NUMERIC:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            raise ValueError(f"trades: column {col!r} has {int(bad.sum())} non-finite or non-numeric value(s) "
                             f"(first at row {_first_row(bad)}: {frame[col].iloc[_first_row(bad)]!r})")
        if col in ("entry_price", "exit_price") and (values <= 0).any():
            bad = values <= 0
            raise ValueError(f"trades: column {col!r} must be positive; {int(bad.sum())} row(s) are not "
                             f"(first at row {_first_row(bad)})")
        out[col] = values
    if "side" in frame:
        text = frame["side"].astype(str).str.strip().str.lower()
        side = text.map(_SIDES)
        bad = side.isna().to_numpy()
        if bad.any():
            raise ValueError(f"trades: column 'side' must be long/short, buy/sell or +1/-1; "
                             f"{int(bad.sum())} row(s) are not (first at row {_first_row(bad)}: "
                             f"{frame['side'].iloc[_first_row(bad)]!r})")
        out["side"] = side.astype(np.int8)
    else:  # a profit on a rising price was a long, on a falling price a short
        out["side"] = (np.sign(out["pnl"]) * np.sign(out["exit_price"] - out["entry_price"])).astype(np.int8)
    if "trade_id" in frame:
        ids = frame["trade_id"]
        empty = ids.isna().to_numpy() | (ids.astype(str).str.strip() == "").to_numpy()
        if empty.any():
            raise ValueError(f"trades: column 'trade_id' is empty on {int(empty.sum())} row(s) "
                             f"(first at row {_first_row(empty)})")
        out["trade_id"] = ids.astype(str).str.strip()
    else:
        keys = (out["symbol"] + "|" + out["entry_ts"].map(lambda t: t.isoformat()) + "|" + out["signal_source"]
                + "|" + out["side"].astype(str))
        out["trade_id"] = keys.map(lambda k: hashlib.sha1(k.encode()).hexdigest()[:16])
    dup = out.duplicated(["symbol", "trade_id"], keep="first").to_numpy()
    if dup.any():
        i = _first_row(dup)
        raise ValueError(f"trades: column 'trade_id' has {int(dup.sum())} duplicate(s) "
                         f"(first at row {i}: {out['symbol'].iloc[i]} {out['trade_id'].iloc[i]!r})")
    extra = [c for c in frame.columns if c not in CORE]
    if "context" in frame:
        out["context"] = frame["context"].map(
            lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v))
            else v if isinstance(v, str) else json.dumps(v, default=str, sort_keys=True))
    elif extra:
        out["context"] = frame[extra].apply(_context, axis=1)
    else:
        out["context"] = ""
    return out[["symbol", "trade_id", "entry_ts", "exit_ts", "side", "entry_price", "exit_price", "pnl",
                "r_multiple", "signal_source", "context"]]


def ingest_trades(settings: Settings, trades: pd.DataFrame | str | Path, *, symbol: str | None = None) -> int:
    """Validate trade results (a frame, CSV or Parquet file) and upsert them; returns the rows written.

    ``symbol`` fills a missing ``symbol`` column. Raises ``ValueError`` naming the offending
    column before anything is written.
    """
    from warehouse import open_warehouse

    canonical = validate_trades(_read(trades), symbol=symbol)
    with open_warehouse(settings) as warehouse:
        return warehouse.write_trades(canonical, tenant=settings.scope)


def trades_frame(settings: Settings, symbol: str) -> pd.DataFrame:
    """The symbol's trade results ordered by entry time, with ``context`` expanded into columns
    (a context that is not a JSON object stays in the ``context`` column)."""
    from warehouse import open_warehouse

    with open_warehouse(settings) as warehouse:
        frame = warehouse.read_trades(tenant=settings.scope, symbol=symbol)
    if frame.empty:
        return frame

    def parse(text: str) -> dict[str, Any] | None:
        try:
            value = json.loads(text) if text else {}
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    parsed = frame["context"].map(parse)
    if parsed.notna().all():
        extra = pd.DataFrame(list(parsed), index=frame.index)
        extra = extra[[c for c in extra.columns if c not in frame.columns]]
        frame = pd.concat([frame.drop(columns=["context"]), extra], axis=1)
    return frame.reset_index(drop=True)


