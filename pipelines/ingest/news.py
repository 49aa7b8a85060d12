"""Ingestion of timestamped headlines (``alphaops ingest FILE --kind news``): all or nothing, idempotent.

A news file (CSV or Parquet, chosen by suffix) has one headline per row:

| column | also accepted as | required |
|---|---|---|
| ``ts`` | timestamp, time, datetime, date, published_at | yes: ISO text or epoch s/ms/µs/ns; naive times are UTC |
| ``symbol`` | ticker | yes, unless the ingest is given one symbol for the whole file |
| ``headline`` | title, text | yes |
| ``source`` | publisher | no (``unknown``) |
| ``headline_id`` | id | no: derived as sha256(symbol, ts, headline)[:16], so a file ingested again has the same ids |
| ``label`` | sentiment | no: one of ``models.text_sentiment.LABELS`` (case, ``_`` and ``-`` ignored: ``very_bullish`` is ``very bullish``); empty cells mean unlabelled |
| ``score`` | | no: a sentiment score in [-1, +1], turned into its label by ``label_of``; a row with both must agree |

Labelled headlines are the training set of the sentiment head (``alphaops sentiment train-head``,
``models.sentiment_head``); the features never read the labels.

The batch passes through the same steps as bars (``pipelines.ingest.ingestion``): every rule
is checked before the first write; a failure logs a ``rejected`` row in ``ingest_log`` with
the report and raises :class:`~pipelines.ingest.ingestion.IngestRejected`; otherwise the new
and changed rows (by key symbol, ts, headline_id) are staged and committed by the ``ok`` row
(``Warehouse.staged_ingest("news")``), so the batch is visible whole or not at all. Ingesting
the same file again writes nothing. The rules are plain pandas checks (a news batch is small),
reported in the bar gate's format (:class:`~pipelines.ingest.quality.QualityReport`):

| rule | what fails |
|---|---|
| ``schema.missing_column`` | no ts, symbol or headline column |
| ``not_empty`` | no rows |
| ``no_nan`` | an unparseable or missing timestamp, an empty symbol or an empty headline |
| ``symbol_valid`` | a symbol outside ``[A-Za-z0-9._-]``, or longer than 32 characters |
| ``headline_length`` | a headline longer than :data:`MAX_HEADLINE_CHARS` characters |
| ``headline_unique`` | the same (symbol, ts, headline_id) twice |
| ``ts_not_future`` | a timestamp after ``as_of`` |
| ``label_valid`` | a label outside the five, a score that is not a number in [-1, +1], or a label and a score that disagree |
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipelines.config import Settings
from pipelines.ingest.quality import MAX_EXAMPLES, QualityReport, RuleResult, failure_report
from pipelines.ingest.sources import SourceError, _find, _read_table, parse_timestamps
from pipelines.values import as_timestamp

if TYPE_CHECKING:
    from warehouse import Warehouse

NEWS_KIND = "news"
NEWS_TIMEFRAME = "news"  # the ingest log's timeframe column for headline batches
MAX_HEADLINE_CHARS = 1000
TS_NAMES = ("ts", "timestamp", "time", "datetime", "date", "published_at")
SYMBOL_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
NEWS_RULE_TEXT = {
    "symbol_valid": "symbols must be 1-32 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
    "headline_length": f"a headline may have at most {MAX_HEADLINE_CHARS} characters",
    "headline_unique": "(symbol, ts, headline_id) must be unique",
    "no_nan": "ts, symbol and headline must be present (a timestamp must parse)",
    "label_valid": "label must be one of very bearish, bearish, neutral, bullish, very bullish (or empty); "
                   "score a number in [-1, +1] whose label (models.text_sentiment.label_of) agrees with label",
}
BAD_LABEL_PREFIX = "invalid: "  # a row whose label or score fails label_valid (never stored)


def headline_ids(symbols: pd.Series, ts: pd.Series, headlines: pd.Series) -> pd.Series:
    """sha256 of symbol, ts (ns) and headline, 16 hex digits: the same row gets the same id again."""
    stamps = pd.DatetimeIndex(ts).asi8
    return pd.Series([hashlib.sha256(f"{s}\x1f{t}\x1f{h}".encode()).hexdigest()[:16]
                      for s, t, h in zip(symbols.astype(str), stamps, headlines.astype(str))], index=symbols.index)


def labels_from_frame(raw: pd.DataFrame) -> pd.Series:
    """The ``label`` of each row from a ``label``/``sentiment`` and/or ``score`` column ('' when none).
    A row whose label is not one of the five, whose score is not a number in [-1, +1], or whose
    label and score disagree gets ``BAD_LABEL_PREFIX`` plus what it held (rule ``label_valid``)."""
    from models.text_sentiment import LABELS, label_of

    label_col = _find(raw, ("label", "sentiment"))
    score_col = _find(raw, ("score",))
    out = pd.Series("", index=raw.index, dtype=object)
    bad = pd.Series(False, index=raw.index)
    if label_col is not None:
        text = raw[label_col].astype("string").str.strip().str.lower().str.replace(r"[_\s-]+", " ", regex=True)
        out = text.fillna("").astype(object)
        bad |= ~out.isin(("", *LABELS))
    if score_col is not None:
        given = raw[score_col].notna() & (raw[score_col].astype("string").str.strip() != "")
        number = pd.to_numeric(raw[score_col].where(given), errors="coerce")
        ok = given & number.notna() & (number.abs() <= 1)
        from_score = pd.Series("", index=raw.index, dtype=object)
        if ok.any():
            from_score[ok] = label_of(number[ok].to_numpy(dtype=np.float64))
        bad |= given & ~ok
        bad |= (out != "") & (from_score != "") & (out != from_score)
        out = out.where(out != "", from_score)
    if bad.any():
        shown = {c: raw[c].astype("string").fillna("") for c in (label_col, score_col) if c is not None}
        out[bad] = [BAD_LABEL_PREFIX + ", ".join(f"{c}={shown[c][i]!r}" for c in shown) for i in out.index[bad]]
    return out


def headlines_from_frame(raw: pd.DataFrame, where: str, symbol: str | None = None) -> pd.DataFrame:
    """A raw table → ``ts, symbol, headline, source, headline_id, label`` (rows as delivered; nothing repaired)."""
    ts_col = _find(raw, TS_NAMES)
    symbol_col = _find(raw, ("symbol", "ticker"))
    headline_col = _find(raw, ("headline", "title", "text"))
    missing = [name for name, col in (("ts", ts_col), ("symbol", symbol_col if symbol is None else "given"),
                                      ("headline", headline_col)) if col is None]
    if missing:
        found = ", ".join(map(str, raw.columns)) or "none"
        raise SourceError(f"{where}: missing column {', '.join(map(repr, missing))} (found: {found})",
                          rule="schema.missing_column")
    source_col = _find(raw, ("source", "publisher"))
    id_col = _find(raw, ("headline_id", "id"))
    out = pd.DataFrame({
        "ts": parse_timestamps(raw[ts_col]).as_unit("ns").floor("us"),
        "symbol": raw[symbol_col].astype("string").str.strip() if symbol is None else symbol,
        "headline": raw[headline_col].astype("string").str.strip(),
        "source": raw[source_col].astype("string").str.strip().fillna("unknown") if source_col else "unknown",
    })
    if symbol is not None and symbol_col is not None:  # a file with its own symbol column keeps it
        out["symbol"] = raw[symbol_col].astype("string").str.strip()
    out["headline_id"] = raw[id_col].astype("string").str.strip() if id_col else \
        headline_ids(out["symbol"].fillna(""), out["ts"], out["headline"].fillna(""))
    out["label"] = labels_from_frame(raw).to_numpy()
    return out.reset_index(drop=True)


class NewsFileSource:
    """Headlines from a CSV or Parquet file (columns in the module doc)."""

    kind = NEWS_KIND

    def __init__(self, path: str | Path, symbol: str | None = None) -> None:
        self.path = Path(path)
        self.symbol = symbol
        self.name = f"file:{self.path.name}"

    def read(self) -> pd.DataFrame:
        return headlines_from_frame(_read_table(self.path), str(self.path), self.symbol)


class NewsFrameSource:
    """Headlines already in memory (the synthetic market's, or a test's)."""

    kind = NEWS_KIND

    def __init__(self, frame: pd.DataFrame, *, name: str, symbol: str | None = None) -> None:
        self.frame, self.name, self.symbol = frame, name, symbol

    def read(self) -> pd.DataFrame:
        return headlines_from_frame(self.frame.copy(), self.name, self.symbol)


@dataclass
class NewsIngestResult:
    ingest_id: str
    symbols: list[str]
    rows_in: int
    rows_new: int
    rows_changed: int
    rows_written: int
    ts_min: pd.Timestamp | None
    ts_max: pd.Timestamp | None

    def to_dict(self) -> dict[str, Any]:
        iso = (lambda t: None if t is None or pd.isna(t) else pd.Timestamp(t).isoformat())
        return {"ingest_id": self.ingest_id, "kind": NEWS_KIND, "symbols": self.symbols,
                "rows_in": int(self.rows_in), "rows_new": int(self.rows_new),
                "rows_changed": int(self.rows_changed), "rows_written": int(self.rows_written),
                "ts_min": iso(self.ts_min), "ts_max": iso(self.ts_max)}


def validate_news(frame: pd.DataFrame, *, as_of: pd.Timestamp, label: str = "") -> QualityReport:
    """Every rule of the module doc on the batch as delivered; ``ok`` only if none fails."""
    started = time.perf_counter()
    show = ["ts", "symbol", "source", "headline"]
    checks: list[tuple[str, np.ndarray]] = []
    if frame.empty:
        checks.append(("not_empty", np.zeros(0, dtype=bool)))
    ts, symbol, headline = frame["ts"], frame["symbol"].fillna(""), frame["headline"].fillna("")
    checks.append(("no_nan", (ts.isna() | (symbol == "") | (headline == "")).to_numpy(dtype=bool)))
    checks.append(("symbol_valid", ~symbol.map(lambda s: bool(SYMBOL_PATTERN.match(s)) or s == "")
                   .to_numpy(dtype=bool)))
    checks.append(("headline_length", (headline.str.len() > MAX_HEADLINE_CHARS).to_numpy(dtype=bool)))
    checks.append(("headline_unique", frame.duplicated(["symbol", "ts", "headline_id"], keep=False)
                   .to_numpy(dtype=bool)))
    checks.append(("ts_not_future", (ts > as_of).fillna(False).to_numpy(dtype=bool)))
    if "label" in frame:
        checks.append(("label_valid", frame["label"].astype(str).str.startswith(BAD_LABEL_PREFIX)
                       .to_numpy(dtype=bool)))
        show.append("label")
    failures = []
    for rule, bad in checks:
        if rule == "not_empty":
            failures.append(RuleResult(rule=rule, rows=0, detail="the file has a header but no headline rows"))
            continue
        rows = np.flatnonzero(bad)
        if len(rows):
            examples = [{"row": int(i), **{c: _cell(frame[c].iloc[i]) for c in show}} for i in rows[:MAX_EXAMPLES]]
            failures.append(RuleResult(rule=rule, rows=len(rows), examples=examples,
                                       detail=NEWS_RULE_TEXT.get(rule, "")))
    return QualityReport(kind=NEWS_KIND, n_rows=len(frame), ok=not failures, failures=failures,
                         rules_checked=[rule for rule, _ in checks], as_of=as_of,
                         seconds=time.perf_counter() - started, label=label)


def _cell(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 60:
        return value[:57] + "..."
    return None if value is pd.NA else value


def _log(*, ingest_id: str, tenant: str, symbols: str, source: str, status: str,
         rows_in: int, rows_written: int, rows_new: int, rows_changed: int, checksum: str,
         ts_min: Any, ts_max: Any, report: str) -> pd.DataFrame:
    from warehouse import ingest_log_frame

    return ingest_log_frame(ingest_id=ingest_id, tenant=tenant, symbol=symbols, timeframe=NEWS_TIMEFRAME,
                            kind=NEWS_KIND, source=source, status=status, rows_in=rows_in,
                            rows_written=rows_written, rows_rejected=0 if status == "ok" else rows_in,
                            rows_new=rows_new, rows_changed=rows_changed, checksum=checksum,
                            ts_min=ts_min, ts_max=ts_max, report=report)


def news_checksum(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    for column in ("symbol", "headline_id", "headline", "source", "label"):
        digest.update("\x1f".join(frame[column].astype(str)).encode())
    digest.update(np.ascontiguousarray(pd.DatetimeIndex(frame["ts"]).asi8).tobytes())
    return digest.hexdigest()


def ingest_news(source: Any, *, settings: Settings, as_of: pd.Timestamp,
                warehouse: "Warehouse | None" = None) -> NewsIngestResult:
    """Read, validate and write one batch of headlines (see the module doc).

    Raises :class:`~pipelines.ingest.ingestion.IngestRejected` after logging a ``rejected``
    row when a rule fails or the source cannot be read.
    """
    as_of = as_timestamp(as_of)
    ingest_id = f"ing-{as_of.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:10]}"
    label = f"from {source.name}"
    try:
        frame = source.read()
        report = validate_news(frame, as_of=as_of, label=label)
    except SourceError as exc:
        frame = pd.DataFrame(columns=["ts", "symbol", "headline", "source", "headline_id", "label"])
        report = failure_report(NEWS_KIND, exc.rule, str(exc), as_of=as_of, label=label, read=False)
    if warehouse is None:  # opened only for the compare-and-write, after the read and the checks
        from warehouse import open_warehouse

        with open_warehouse(settings) as opened:
            return _write(opened, source.name, frame, report, settings, ingest_id)
    return _write(warehouse, source.name, frame, report, settings, ingest_id)


def _write(warehouse: "Warehouse", source_name: str, frame: pd.DataFrame, report: QualityReport,
           settings: Settings, ingest_id: str) -> NewsIngestResult:
    """Log a rejected batch and raise; or stage its new and changed rows and commit them."""
    from pipelines.ingest.ingestion import IngestRejected

    tenant = settings.scope
    symbols = sorted(set(frame["symbol"].dropna().astype(str))) if len(frame) else []
    symbol_text = ",".join(symbols)[:200]
    valid_ts = frame["ts"].dropna() if len(frame) else pd.Series([], dtype="datetime64[ns, UTC]")
    ts_min = valid_ts.min() if len(valid_ts) else None
    ts_max = valid_ts.max() if len(valid_ts) else None
    common = {"ingest_id": ingest_id, "tenant": tenant, "symbols": symbol_text, "source": source_name}
    if not report.ok:
        warehouse.insert("ingest_log", _log(**common, status="rejected", rows_in=len(frame),
                                            rows_written=0, rows_new=0, rows_changed=0, checksum="",
                                            ts_min=ts_min, ts_max=ts_max, report=report.render()))
        raise IngestRejected(report, ingest_id)
    batch = frame.sort_values(["ts", "headline_id"], kind="stable").reset_index(drop=True)
    old = warehouse.read_news(tenant=tenant, start=ts_min, end=ts_max)
    key = ["symbol", "ts", "headline_id"]
    if old.empty:
        is_new, is_changed = np.ones(len(batch), dtype=bool), np.zeros(len(batch), dtype=bool)
    else:
        old = old.assign(ts=pd.DatetimeIndex(old["ts"]).as_unit("ns"))
        merged = batch.assign(ts=pd.DatetimeIndex(batch["ts"]).as_unit("ns")).merge(
            old, on=key, how="left", suffixes=("", "_old"), indicator=True)
        is_new = (merged["_merge"] == "left_only").to_numpy()
        is_changed = ~is_new & ((merged["headline"] != merged["headline_old"])
                                | (merged["source"] != merged["source_old"])
                                | (merged["label"] != merged["label_old"])).to_numpy()
    to_write = batch[is_new | is_changed]
    counts = {"rows_in": len(batch), "rows_new": int(is_new.sum()), "rows_changed": int(is_changed.sum()),
              "checksum": news_checksum(batch), "ts_min": ts_min, "ts_max": ts_max}
    written = 0
    if to_write.empty:
        warehouse.insert("ingest_log", _log(**common, **counts, status="ok", rows_written=0,
                                            report=report.render()))
    else:
        staged = None
        try:
            with warehouse.staged_ingest("news", ingest_id=ingest_id, meta={
                    "tenant": tenant, "symbol": symbol_text, "timeframe": NEWS_TIMEFRAME, "kind": NEWS_KIND,
                    "source": source_name, "rows_in": len(batch), "checksum": counts["checksum"]}) as staged:
                # Monthly partitions, at most 100 per insert (ClickHouse's limit per INSERT block).
                month = pd.DatetimeIndex(to_write["ts"]).year * 12 + pd.DatetimeIndex(to_write["ts"]).month
                group = np.unique(np.asarray(month), return_inverse=True)[1] // 100
                for g in np.unique(group):
                    written += warehouse.write_news(to_write[group == g], tenant=tenant, feed=source_name,
                                                    ingest_id=ingest_id)
                staged.commit(_log(**common, **counts, status="ok", rows_written=written,
                                   report=report.render()))
        except Exception as exc:
            if staged is not None and staged.committed:
                raise
            warehouse.insert("ingest_log", _log(**common, **counts, status="failed", rows_written=0,
                                                report=f"write failed after staging {written} of {len(to_write)} "
                                                       f"rows: {exc}; nothing of the batch was made visible"))
            raise
    return NewsIngestResult(ingest_id=ingest_id, symbols=symbols, rows_in=len(batch), rows_new=counts["rows_new"],
                            rows_changed=counts["rows_changed"], rows_written=written, ts_min=ts_min, ts_max=ts_max)


def ingest_news_file(path: str | Path, *, settings: Settings, as_of: pd.Timestamp, symbol: str | None = None,
                     warehouse: "Warehouse | None" = None) -> NewsIngestResult:
    """``alphaops ingest FILE --kind news``: :func:`ingest_news` on :class:`NewsFileSource`."""
    return ingest_news(NewsFileSource(path, symbol), settings=settings, as_of=as_of, warehouse=warehouse)
