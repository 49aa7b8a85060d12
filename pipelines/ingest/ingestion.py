"""Idempotent ingestion of bars, ticks and book snapshots, gated by Great Expectations.

One code path serves the Airflow extract task (:func:`pipelines.steps.extract.extract_samples`) and ``alphaops ingest``
(``ingest_file``); both end in ``ingest``:

1. read the source (rows in the order the source delivers them);
2. validate the whole batch with the GX suite (``pipelines.ingest.quality``);
3. on any failure: log a ``rejected`` row in ``ingest_log`` (with the rendered report) and
   raise ``IngestRejected``. Nothing is written to the data tables: all or nothing;
4. otherwise compare with what the warehouse already holds for the key (tenant, symbol,
   timeframe) over the batch's time range: rows whose timestamp is new are ``rows_new``,
   rows whose values differ are ``rows_changed`` (late corrections), the rest are skipped.
   New and changed rows are staged (``Warehouse.staged_ingest``: a staging table no read
   sees, one insert per 100 monthly partitions, ClickHouse's limit per INSERT block); the
   ``ok`` row in ``ingest_log`` commits them, and then they are moved into the table, where
   ReplacingMergeTree keeps the latest version.

The batch is visible whole or not at all, even if the process is killed at any point: before
the commit nothing of it is visible (the next open of the warehouse discards it and logs it
``aborted``, which ``alphaops data`` shows as the last ingest), and after the commit the next
open finishes moving it in before anything reads.

Re-ingesting the same data therefore writes nothing (``rows_new == rows_changed == 0``), and a
correction replaces the value while the row count stays the same. An ingest never deletes:
rows the warehouse holds that a batch lacks stay as they are. If a write fails, a ``failed``
row is logged, nothing of the batch is visible, and the error propagates; running the ingest
again writes the batch.

``as_of`` is explicit: it is the "now" of the quality rules (no timestamp may be later). The
ingest log's ``logged_at`` is the only wall-clock value, as an audit fact.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from pipelines.config import Settings
from pipelines.ingest.quality import QualityReport, failure_report, validate
from pipelines.ingest.sources import (
    BAR_EXTRA,
    BOOK_COLUMNS,
    OHLCV,
    BinanceKlineSource,
    BookFileSource,
    Kind,
    OhlcvFileSource,
    Source,
    SourceError,
    TickFileSource,
    infer_timeframe,
)
from pipelines.values import as_timestamp

if TYPE_CHECKING:
    from warehouse import Warehouse

DEFAULT_TIMEFRAME = {"bars": "1d", "ticks": "tick", "book": "book"}
MAX_PARTITIONS_PER_INSERT = 100  # ClickHouse's default max_partitions_per_insert_block


class IngestRejected(ValueError):
    """The quality gate rejected a batch; ``report`` says which rules failed and where."""

    def __init__(self, report: QualityReport, ingest_id: str = "") -> None:
        super().__init__(report.render())
        self.report = report
        self.ingest_id = ingest_id

    def __str__(self) -> str:
        return self.report.render()

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (e.g. across process boundaries)
        return (type(self), (self.report, self.ingest_id))


@dataclass
class IngestResult:
    """What one successful ingest did (JSON-safe through ``to_dict``)."""

    ingest_id: str
    tenant: str
    symbol: str
    timeframe: str
    kind: str
    source: str
    rows_in: int
    rows_written: int
    rows_rejected: int
    rows_new: int
    rows_changed: int
    checksum: str
    ts_min: pd.Timestamp | None
    ts_max: pd.Timestamp | None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("ts_min", "ts_max"):
            out[key] = None if out[key] is None or pd.isna(out[key]) else pd.Timestamp(out[key]).isoformat()
        for key in ("rows_in", "rows_written", "rows_rejected", "rows_new", "rows_changed"):
            out[key] = int(out[key])
        return out


# -- helpers ------------------------------------------------------------------------------

def _new_ingest_id(as_of: pd.Timestamp) -> str:
    return f"ing-{as_of.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:10]}"


def _value_columns(kind: str, frame: pd.DataFrame) -> list[str]:
    if kind == "bars":
        return OHLCV + [c for c in BAR_EXTRA if c in frame.columns]
    if kind == "ticks":
        return ["price", "qty", "side"]
    return list(BOOK_COLUMNS)


def _canonical(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Validated frame → sorted, typed, only the columns the warehouse stores."""
    cols = _value_columns(kind, frame)
    out = frame[cols + (["trade_id"] if kind == "ticks" else [])].copy()
    for col in cols:
        out[col] = out[col].astype(float)
    if kind == "ticks":
        out["trade_id"] = out["trade_id"].astype(str)
        return out.sort_values(["trade_id"], kind="stable").sort_index(kind="stable")
    return out.sort_index(kind="stable")


def checksum(frame: pd.DataFrame) -> str:
    """sha256 over the canonical frame: column names, ts (int64 ns) and each column's values."""
    digest = hashlib.sha256()
    digest.update(",".join(map(str, frame.columns)).encode())
    digest.update(np.ascontiguousarray(frame.index.asi8).tobytes())
    for col in frame.columns:
        values = frame[col]
        if pd.api.types.is_float_dtype(values.dtype):
            digest.update(np.ascontiguousarray(values.to_numpy(dtype=np.float64)).tobytes())
        else:
            digest.update("\x1f".join(values.astype(str)).encode())
    return digest.hexdigest()


def _changes(new: pd.DataFrame, old: pd.DataFrame, cols: list[str], key: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(is_new, is_changed) per row of ``new``; NaN equals NaN."""
    if old.empty:
        return np.ones(len(new), dtype=bool), np.zeros(len(new), dtype=bool)

    def keyed(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame.index = pd.DatetimeIndex(frame.index).as_unit("ns")
        if key:
            frame = frame.set_index(key, append=True)
        return frame[~frame.index.duplicated(keep="last")]

    new_k, old_k = keyed(new), keyed(old)
    present = new_k.index.isin(old_k.index)
    a = new_k[cols].to_numpy(dtype=float)
    b = old_k.reindex(columns=cols).reindex(new_k.index).to_numpy(dtype=float)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    return ~present, present & ~same.all(axis=1)


def _existing(warehouse: "Warehouse", kind: str, *, tenant: str, symbol: str, timeframe: str,
              start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    args = {"tenant": tenant, "symbol": symbol, "timeframe": timeframe, "start": start, "end": end}
    if kind == "bars":
        return warehouse.read_bars(**args)
    if kind == "ticks":
        return warehouse.read_ticks(**args)
    return warehouse.read_book(**args)


def _partition_chunks(frame: pd.DataFrame) -> list[pd.DataFrame]:
    """Split a sorted frame into inserts that each touch at most ``MAX_PARTITIONS_PER_INSERT``
    monthly partitions.

    The tables are partitioned by month and ClickHouse refuses an INSERT block that touches
    more than 100 partitions (``max_partitions_per_insert_block``), so 20 years of daily bars
    cannot go in one insert. A batch spanning at most 100 months is still one insert. The
    chunks go into the batch's staging table, so a failure after some of them leaves nothing
    visible (see the module doc).
    """
    if frame.empty:
        return []
    month = np.asarray(frame.index.year * 12 + frame.index.month)
    codes = np.unique(month, return_inverse=True)[1]  # 0.. for each distinct month, in order
    group = codes // MAX_PARTITIONS_PER_INSERT
    return [frame[group == g] for g in np.unique(group)]


def _log_row(*, ingest_id: str, tenant: str, symbol: str, timeframe: str, kind: str, source: str, status: str,
             rows_in: int, rows_written: int, rows_rejected: int, rows_new: int, rows_changed: int,
             checksum_: str, ts_min: pd.Timestamp | None, ts_max: pd.Timestamp | None, report: str) -> pd.DataFrame:
    """The ``ingest_log`` row of one attempt (its ``logged_at`` is the audit time, not an input)."""
    from warehouse import ingest_log_frame

    return ingest_log_frame(ingest_id=ingest_id, tenant=tenant, symbol=symbol, timeframe=timeframe, kind=kind,
                            source=source, status=status, rows_in=rows_in, rows_written=rows_written,
                            rows_rejected=rows_rejected, rows_new=rows_new, rows_changed=rows_changed,
                            checksum=checksum_, ts_min=ts_min, ts_max=ts_max, report=report)


def _log(warehouse: "Warehouse", **row: Any) -> None:
    warehouse.insert("ingest_log", _log_row(**row))


def _warning_lines(report: QualityReport) -> list[str]:
    lines = []
    for w in report.warnings:
        where = ""
        if w.examples:
            first = w.examples[0]
            where = f"; first at row {first['row']} ({pd.Timestamp(first['ts']).isoformat()})"
        lines.append(f"{w.rule}: {w.detail or f'{w.rows} rows'}{where}")
    return lines


# -- the one code path ----------------------------------------------------------------------

def ingest(source: Source, *, symbol: str, timeframe: str, settings: Settings, as_of: pd.Timestamp,
           warehouse: "Warehouse | None" = None) -> IngestResult:
    """Read, validate, and write the batch if (and only if) every rule passes; see the module doc.

    Raises ``IngestRejected`` (a ``ValueError``) after logging a ``rejected`` row when a rule
    fails or the source cannot be read; the data tables are untouched then. Without a
    ``warehouse``, it is opened only after the source was read and validated, for the
    compare-and-write (one critical section, so concurrent ingests of the same rows count
    each row as new once).
    """
    as_of = as_timestamp(as_of)
    kind: Kind = source.kind
    ingest_id = _new_ingest_id(as_of)
    label = f"{symbol} {timeframe} from {source.name}"
    try:
        frame = source.read()
        if isinstance(frame.index, pd.DatetimeIndex):  # the warehouse keeps ms (bars) / µs (ticks, book)
            frame.index = frame.index.floor("ms" if kind == "bars" else "us").rename("ts")
        report = validate(frame, kind=kind, timeframe=timeframe, as_of=as_of,
                          max_gap_bars=settings.max_gap_bars, label=label)
    except SourceError as exc:
        frame = pd.DataFrame()
        report = failure_report(kind, exc.rule, str(exc), as_of=as_of, label=label, read=False)
    canonical = _canonical(frame, kind) if report.ok else frame
    if warehouse is None:
        from warehouse import open_warehouse

        with open_warehouse(settings) as opened:
            return _write_batch(opened, source, canonical, report, symbol=symbol, timeframe=timeframe,
                                settings=settings, ingest_id=ingest_id)
    return _write_batch(warehouse, source, canonical, report, symbol=symbol, timeframe=timeframe,
                        settings=settings, ingest_id=ingest_id)


def _write_batch(warehouse: "Warehouse", source: Source, canonical: pd.DataFrame, report: QualityReport, *,
                 symbol: str, timeframe: str, settings: Settings, ingest_id: str) -> IngestResult:
    """Log a rejected batch and raise; or write its new and changed rows and log them (``ingest``'s
    warehouse part: ``canonical`` is the validated batch, or the raw frame when rejected)."""
    kind: Kind = source.kind
    tenant = settings.scope
    common = {"ingest_id": ingest_id, "tenant": tenant, "symbol": symbol, "timeframe": timeframe,
              "kind": kind, "source": source.name}
    if not report.ok:
        frame = canonical
        valid_ts = frame.index[~frame.index.isna()] if isinstance(frame.index, pd.DatetimeIndex) else []
        _log(warehouse, **common, status="rejected", rows_in=len(frame), rows_written=0,
             rows_rejected=len(frame), rows_new=0, rows_changed=0, checksum_="",
             ts_min=min(valid_ts) if len(valid_ts) else None, ts_max=max(valid_ts) if len(valid_ts) else None,
             report=report.render())
        raise IngestRejected(report, ingest_id)

    digest = checksum(canonical)
    ts_min, ts_max = canonical.index.min(), canonical.index.max()
    cols = _value_columns(kind, canonical)
    compare_cols = OHLCV + BAR_EXTRA if kind == "bars" else cols
    old = _existing(warehouse, kind, tenant=tenant, symbol=symbol, timeframe=timeframe, start=ts_min, end=ts_max)
    new = canonical.reindex(columns=compare_cols + (["trade_id"] if kind == "ticks" else []))
    is_new, is_changed = _changes(new, old, compare_cols, ["trade_id"] if kind == "ticks" else [])
    to_write = canonical[is_new | is_changed]
    write = {"bars": warehouse.write_bars, "ticks": warehouse.write_ticks, "book": warehouse.write_book}[kind]
    counts = {"rows_in": len(canonical), "rows_rejected": 0, "rows_new": int(is_new.sum()),
              "rows_changed": int(is_changed.sum()), "checksum_": digest, "ts_min": ts_min, "ts_max": ts_max}
    written = 0
    if to_write.empty:  # nothing new: the ok row alone is the whole batch
        _log(warehouse, **common, **counts, status="ok", rows_written=0, report=report.render())
    else:
        batch = None
        try:
            # Staged, then committed by its ok row: visible whole or not at all (module doc).
            with warehouse.staged_ingest(kind, ingest_id=ingest_id,
                                         meta={**common, "rows_in": len(canonical), "checksum": digest}) as batch:
                for chunk in _partition_chunks(to_write):
                    written += write(chunk, tenant=tenant, symbol=symbol, timeframe=timeframe, source=source.name,
                                     ingest_id=ingest_id)
                batch.commit(_log_row(**common, **counts, status="ok", rows_written=written,
                                      report=report.render()))
        except Exception as exc:  # record the attempt, then let the task fail (and retry: it is idempotent)
            if batch is not None and batch.committed:
                raise  # committed: its rows are made visible by the next open of the warehouse
            _log(warehouse, **common, **counts, status="failed", rows_written=0,
                 report=f"write failed after staging {written} of {len(to_write)} rows: {exc}; "
                        "nothing of the batch was made visible")
            raise
    return IngestResult(ingest_id=ingest_id, tenant=tenant, symbol=symbol, timeframe=timeframe, kind=kind,
                        source=source.name, rows_in=len(canonical), rows_written=int(written), rows_rejected=0,
                        rows_new=int(is_new.sum()), rows_changed=int(is_changed.sum()), checksum=digest,
                        ts_min=ts_min, ts_max=ts_max, warnings=_warning_lines(report))


class _Preread:
    """A source read once (to infer the timeframe); replays the frame or the read error."""

    def __init__(self, source: Source) -> None:
        self.name = source.name
        self.kind: Kind = source.kind
        self._frame: pd.DataFrame | None = None
        self._error: SourceError | None = None
        try:
            self._frame = source.read()
        except SourceError as exc:
            self._error = exc

    def read(self) -> pd.DataFrame:
        if self._error is not None:
            raise self._error
        assert self._frame is not None
        return self._frame.copy()

    def inferred_timeframe(self) -> str:
        if self._frame is None or self.kind != "bars":
            return DEFAULT_TIMEFRAME[self.kind]
        try:
            return infer_timeframe(self._frame.index)
        except ValueError:
            return DEFAULT_TIMEFRAME["bars"]


def file_source(path: str | Path, *, kind: Kind = "bars", fmt: Literal["binance"] | str | None = None) -> Source:
    """The source class for a file: bars (OHLCV CSV/Parquet, or ``fmt="binance"`` klines), ticks, book."""
    if kind == "bars":
        if fmt == "binance":
            return BinanceKlineSource(path)
        if fmt not in (None, "csv", "parquet", "ohlcv"):
            raise ValueError(f"unknown format {fmt!r} for bars; use None (CSV/Parquet by suffix) or 'binance'")
        return OhlcvFileSource(path)
    if fmt not in (None, "csv", "parquet"):
        raise ValueError(f"format {fmt!r} is only for bars")
    if kind == "ticks":
        return TickFileSource(path)
    if kind == "book":
        return BookFileSource(path)
    raise ValueError(f"unknown kind {kind!r}; use bars, ticks or book")


def ingest_file(path: str | Path, *, symbol: str, settings: Settings, as_of: pd.Timestamp,
                timeframe: str | None = None, kind: Kind = "bars", fmt: str | None = None,
                warehouse: "Warehouse | None" = None) -> IngestResult:
    """Ingest one file. ``timeframe=None`` infers it for bars from the median spacing
    (falls back to ``1d``); ticks default to ``tick`` and book snapshots to ``book``.
    The memory guard sizes the file's rows first (Parquet metadata, or a CSV's lines)."""
    from pipelines.memory import require_memory

    require_memory(settings, "ingest", rows=file_rows(Path(path)), n_features=0)
    source: Source = file_source(path, kind=kind, fmt=fmt)
    if timeframe is None:
        pre = _Preread(source)
        timeframe, source = pre.inferred_timeframe(), pre
    return ingest(source, symbol=symbol, timeframe=timeframe, settings=settings, as_of=as_of, warehouse=warehouse)


def file_rows(path: Path) -> int:
    """Rows of a Parquet file (from its metadata) or lines of any other file (0 if unreadable:
    reading it then names the problem)."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        with path.open("rb") as handle:
            return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    except (OSError, ValueError):
        return 0


def data_summary(settings: Settings, warehouse: "Warehouse | None" = None) -> list[dict[str, Any]]:
    """Per kind, symbol and timeframe: rows, ts_min, ts_max and the last ingest
    (``{"id", "status", "rows_written", "logged_at"}``), for ``alphaops data --json``.
    Keys that were only ever rejected appear with ``rows = 0``."""
    if warehouse is None:
        from warehouse import open_warehouse

        with open_warehouse(settings) as opened:
            return data_summary(settings, warehouse=opened)
    parts = []
    for kind in ("bars", "ticks", "book"):
        inv = warehouse.inventory(settings.scope, kind)
        inv.insert(0, "kind", kind)
        parts.append(inv)
    inventory = pd.concat(parts, ignore_index=True)
    last = warehouse.last_ingests(settings.scope)
    merged = inventory.merge(last, on=["kind", "symbol", "timeframe"], how="outer")
    merged = merged.sort_values(["kind", "symbol", "timeframe"], kind="stable")

    def iso(value: Any) -> str | None:
        return None if value is None or pd.isna(value) else as_timestamp(value).isoformat()

    out = []
    for row in merged.itertuples(index=False):
        last_ingest = None
        if isinstance(row.last_id, str):
            last_ingest = {"id": row.last_id, "status": row.last_status,
                           "rows_written": int(row.last_rows_written), "logged_at": iso(row.last_logged_at)}
        out.append({"kind": row.kind, "symbol": row.symbol, "timeframe": row.timeframe,
                    "rows": 0 if pd.isna(row.rows) else int(row.rows),
                    "ts_min": iso(row.ts_min), "ts_max": iso(row.ts_max), "last_ingest": last_ingest})
    return out
