"""Data sources: files, exchange dumps and in-memory frames (the bundled samples and the synthetic
markets are in ``pipelines.ingest.samples``).

A source is one small class (see ``Source``): a ``name`` for lineage, a ``kind`` (``bars``,
``ticks`` or ``book``) and ``read()``, which returns the canonical frame for its kind:

- bars: a UTC ``DatetimeIndex`` named ``ts``; float columns ``open, high, low, close,
  volume``; optionally any of ``buy_volume, sell_volume, bid_size, ask_size, spread,
  n_trades, funding_rate, liquidations``.
- ticks: ``ts`` index; ``price, qty`` (float), ``side`` (+1 buy / -1 sell), ``trade_id`` (str).
- book: ``ts`` index; ``bid_price, bid_size, ask_price, ask_size, bid_depth, ask_depth``.

Rows stay in the order the source gives them, so the quality gate can check that timestamps
are monotonic *as delivered*; ``pipelines.ingest.ingestion`` sorts after validation. A source does not
fix bad values: a value that is not a number stays in its column as it was (the column is
then ``object``), so the Great Expectations dtype rule reports the exact rows. Structural
problems that leave nothing to validate (missing file, missing column, no timestamp column)
raise ``SourceError``, naming the file and the column.

Adding an exchange adapter means writing one class with ``name``, ``kind`` and ``read()``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from warehouse.schema import BAR_EXTRA, BOOK_COLUMNS, OHLCV

Kind = Literal["bars", "ticks", "book"]

TS_CANDIDATES = ("ts", "timestamp", "date", "time", "datetime", "open_time")

BINANCE_KLINE_COLUMNS = ["open_time", "open", "high", "low", "close", "volume", "close_time",
                         "quote_volume", "n_trades", "taker_buy_base", "taker_buy_quote", "ignore"]


class SourceError(ValueError):
    """A source cannot produce a frame at all: missing file, missing column, unreadable format.

    ``rule`` names the check for the ingest log (``source.missing_file``,
    ``schema.missing_column``, ``source.unreadable``).
    """

    def __init__(self, message: str, *, rule: str = "source.unreadable") -> None:
        super().__init__(message)
        self.rule = rule


@runtime_checkable
class Source(Protocol):
    """What ``pipelines.ingest.ingestion.ingest`` needs from a source."""

    name: str
    kind: Kind

    def read(self) -> pd.DataFrame:
        """The canonical frame for ``kind``, in the order the source delivers it."""
        ...


# -- timeframes -------------------------------------------------------------------------

_TF = re.compile(r"^(\d+)(s|m|min|h|d|w|mo)$")
_TF_UNIT = {"s": "s", "m": "min", "min": "min", "h": "h", "d": "D", "w": "W"}


def parse_timeframe(timeframe: str) -> tuple[int, str]:
    """``"15m"`` -> ``(15, "m")``. Units: s, m (minute), h, d, w, mo (calendar month)."""
    match = _TF.match(timeframe)
    if not match:
        raise ValueError(
            f"unknown timeframe {timeframe!r}: use <n><unit> with unit s, m, h, d, w or mo "
            f"(e.g. 1m, 5m, 1h, 1d, 1mo)"
        )
    unit = "m" if match.group(2) == "min" else match.group(2)
    return int(match.group(1)), unit


def timeframe_delta(timeframe: str) -> pd.Timedelta:
    """Nominal bar length (a month counts as 30 days)."""
    n, unit = parse_timeframe(timeframe)
    if unit == "mo":
        return pd.Timedelta(days=30 * n)
    return pd.Timedelta(n, unit=_TF_UNIT[unit])


def infer_timeframe(index: pd.DatetimeIndex) -> str:
    """Best-guess timeframe from the median spacing (weekends make daily bars look longer)."""
    if len(index) < 2:
        raise ValueError("need at least two timestamps to infer a timeframe; pass timeframe=")
    step = pd.Series(index).dropna().sort_values().diff().median()
    if pd.isna(step) or step <= pd.Timedelta(0):
        raise ValueError("cannot infer a timeframe from these timestamps; pass timeframe=")
    for tf in ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h"):
        if step == timeframe_delta(tf):
            return tf
    if pd.Timedelta(hours=20) <= step <= pd.Timedelta(days=3):
        return "1d"
    if pd.Timedelta(days=6) <= step <= pd.Timedelta(days=8):
        return "1w"
    if pd.Timedelta(days=27) <= step <= pd.Timedelta(days=32):
        return "1mo"
    seconds = int(step.total_seconds())
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


# -- parsing helpers --------------------------------------------------------------------

def _read_table(path: Path, **csv_kwargs: object) -> pd.DataFrame:
    if not path.exists():
        raise SourceError(f"{path}: file not found", rule="source.missing_file")
    suffixes = "".join(path.suffixes).lower()
    try:
        if ".parquet" in suffixes or path.suffix.lower() == ".pq":
            frame = pd.read_parquet(path)
            if isinstance(frame.index, pd.DatetimeIndex):
                frame = frame.reset_index()
            return frame
        return pd.read_csv(path, **csv_kwargs)  # type: ignore[arg-type]
    except SourceError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types; name the file
        raise SourceError(f"{path}: cannot read as {'Parquet' if 'parquet' in suffixes else 'CSV'}: {exc}") from exc


def _find(frame: pd.DataFrame, names: tuple[str, ...] | list[str]) -> str | None:
    """The frame's column whose lower-cased name is first among ``names``."""
    lower = {str(c).strip().lower(): c for c in frame.columns}
    for name in names:
        if name in lower:
            return lower[name]
    return None


def _require(frame: pd.DataFrame, name: str, where: str) -> str:
    col = _find(frame, (name,))
    if col is None:
        found = ", ".join(map(str, frame.columns)) or "none"
        raise SourceError(f"{where}: missing column {name!r} (found: {found})",
                          rule="schema.missing_column")
    return col


def parse_timestamps(values: pd.Series | pd.Index) -> pd.DatetimeIndex:
    """UTC timestamps from strings, datetimes or epoch numbers (s, ms, µs or ns by magnitude).

    Naive times are taken as UTC; aware ones are converted. Unparseable values become NaT,
    which the quality gate rejects with the row number.
    """
    series = pd.Series(values)
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series.dtype):
        out = pd.to_datetime(series, utc=True)
    elif pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        magnitude = float(np.nanmedian(np.abs(series.to_numpy(dtype=float)))) if series.notna().any() else 0.0
        unit = "ns" if magnitude >= 1e17 else "us" if magnitude >= 1e14 else "ms" if magnitude >= 1e11 else "s"
        out = pd.to_datetime(series, unit=unit, utc=True, errors="coerce")
    else:
        text = series.astype("string").str.strip()
        if text.str.fullmatch(r"\d{9,19}").fillna(False).all():  # epoch numbers read as text
            return parse_timestamps(pd.to_numeric(text))
        out = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
    return pd.DatetimeIndex(out, name="ts")


def to_number(series: pd.Series) -> pd.Series:
    """Floats where every value is a number; otherwise keep the bad values visible (object).

    Booleans are not numbers (a boolean volume column is a broken file, not 0/1 volume)."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype(object)
    try:
        return pd.to_numeric(series).astype(float)
    except (ValueError, TypeError):
        coerced = pd.to_numeric(series, errors="coerce")
        bad = coerced.isna() & series.notna()
        out = coerced.astype(object)
        out[bad] = series[bad]
        return out


def columns_frame(index: pd.DatetimeIndex, columns: Mapping[str, pd.Series]) -> pd.DataFrame:
    """A frame of ``columns`` (their values, in order) on ``index``, the index named ``ts``."""
    frame = pd.DataFrame({name: pd.Series(col).to_numpy() for name, col in columns.items()}, index=index)
    frame.index.name = "ts"
    return frame


def bars_from_frame(raw: pd.DataFrame, where: str, column_map: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Canonical bars from any frame with a timestamp column and OHLCV in any case."""
    if column_map:
        raw = raw.rename(columns=dict(column_map))
    ts_col = _find(raw, TS_CANDIDATES)
    if ts_col is None:
        found = ", ".join(map(str, raw.columns)) or "none"
        raise SourceError(
            f"{where}: missing timestamp column (one of {', '.join(TS_CANDIDATES)}; found: {found})",
            rule="schema.missing_column",
        )
    columns = {name: to_number(raw[_require(raw, name, where)]) for name in OHLCV}
    for name in BAR_EXTRA:
        col = _find(raw, (name,))
        if col is not None:
            columns[name] = to_number(raw[col])
    return columns_frame(parse_timestamps(raw[ts_col]), columns)


# -- file sources -----------------------------------------------------------------------

class OhlcvFileSource:
    """OHLCV bars from a CSV or Parquet file (chosen by suffix).

    The timestamp column is any of ``ts, timestamp, date, time, datetime`` (any case; ISO
    strings or epoch s/ms/µs/ns numbers); naive timestamps are UTC. ``column_map`` renames
    file columns first, e.g. ``{"Adj Close": "close"}``.
    """

    kind: ClassVar[Kind] = "bars"

    def __init__(self, path: str | Path, column_map: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.column_map = dict(column_map or {})
        self.name = f"file:{self.path}"

    def read(self) -> pd.DataFrame:
        return bars_from_frame(_read_table(self.path), str(self.path), self.column_map)


class BinanceKlineSource:
    """Binance kline dumps (data.binance.vision), CSV or zipped CSV.

    No header (a header row, as in some newer dumps, is skipped); columns ``open_time, open,
    high, low, close, volume, close_time, quote_volume, n_trades, taker_buy_base,
    taker_buy_quote, ignore``. ``open_time`` is epoch ms (µs in dumps from 2025 on); it
    becomes ``ts``. ``buy_volume`` is the taker buy base volume and ``sell_volume`` is
    ``volume - buy_volume``.
    """

    kind: ClassVar[Kind] = "bars"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = f"binance:{self.path}"

    def read(self) -> pd.DataFrame:
        raw = _read_table(self.path, header=None, dtype=str)
        if raw.shape[1] < 11:
            raise SourceError(
                f"{self.path}: a Binance kline row has 12 columns "
                f"({', '.join(BINANCE_KLINE_COLUMNS)}); found {raw.shape[1]}",
                rule="schema.missing_column",
            )
        raw = raw.iloc[:, : len(BINANCE_KLINE_COLUMNS)]
        raw.columns = BINANCE_KLINE_COLUMNS[: raw.shape[1]]
        if len(raw) and not str(raw["open_time"].iloc[0]).strip().isdigit():
            raw = raw.iloc[1:].reset_index(drop=True)  # header row
        columns = {name: to_number(raw[name]) for name in OHLCV}
        columns["n_trades"] = to_number(raw["n_trades"])
        buy = to_number(raw["taker_buy_base"])
        columns["buy_volume"] = buy
        try:
            columns["sell_volume"] = columns["volume"].astype(float) - buy.astype(float)
        except (ValueError, TypeError):  # a bad number: leave it for the dtype rule
            columns["sell_volume"] = pd.Series(np.nan, index=raw.index)
        return columns_frame(parse_timestamps(pd.to_numeric(raw["open_time"], errors="coerce")), columns)


class _TimestampedFile:
    """A CSV/Parquet file with a timestamp column (one of ``TS_CANDIDATES``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path}"

    def _table(self) -> tuple[pd.DataFrame, str, pd.DatetimeIndex]:
        """The file's rows, its path for messages, and its timestamps."""
        raw = _read_table(self.path)
        where = str(self.path)
        ts_col = _find(raw, TS_CANDIDATES) or _require(raw, "ts", where)
        return raw, where, parse_timestamps(raw[ts_col])


class TickFileSource(_TimestampedFile):
    """Trades from CSV/Parquet: ``ts, price, qty, side`` and optionally ``trade_id``.

    ``side`` may be ``buy``/``sell``, ``b``/``s``, ``1``/``-1`` (buyer-initiated is +1).
    Without a ``trade_id`` column the id is ``<ts in µs>-<n>`` (n counts trades sharing a
    timestamp), which is stable when the same file is ingested again.
    """

    kind: ClassVar[Kind] = "ticks"
    _SIDES: ClassVar[dict[str, float]] = {"buy": 1, "b": 1, "bid": 1, "1": 1, "1.0": 1, "+1": 1,
                                          "sell": -1, "s": -1, "ask": -1, "-1": -1, "-1.0": -1}

    def read(self) -> pd.DataFrame:
        raw, where, index = self._table()
        side_raw = raw[_require(raw, "side", where)]
        mapped = side_raw.astype(str).str.strip().str.lower().map(self._SIDES)
        side = mapped.astype(object).where(mapped.notna(), side_raw)  # keep unknown sides visible
        columns = {
            "price": to_number(raw[_require(raw, "price", where)]),
            "qty": to_number(raw[_require(raw, "qty", where)]),
            "side": to_number(side),
        }
        id_col = _find(raw, ("trade_id", "id"))
        if id_col is not None:
            columns["trade_id"] = raw[id_col].astype(str)
        else:
            micros = pd.Series(index.asi8 // 1000, dtype="int64")
            columns["trade_id"] = micros.astype(str) + "-" + micros.groupby(micros).cumcount().astype(str)
        return columns_frame(index, columns)


class BookFileSource(_TimestampedFile):
    """Top-of-book snapshots from CSV/Parquet: ``ts, bid_price, bid_size, ask_price, ask_size,
    bid_depth, ask_depth`` (depth = resting size over the first levels, as the feed defines it)."""

    kind: ClassVar[Kind] = "book"

    def read(self) -> pd.DataFrame:
        raw, where, index = self._table()
        columns = {name: to_number(raw[_require(raw, name, where)]) for name in BOOK_COLUMNS}
        return columns_frame(index, columns)


class FrameSource:
    """A frame already in memory (tests, notebooks, adapters that fetch by themselves)."""

    def __init__(self, frame: pd.DataFrame, *, name: str, kind: Kind = "bars") -> None:
        self.frame = frame
        self.name = name
        self.kind: Kind = kind

    def read(self) -> pd.DataFrame:
        return self.frame.copy()
