"""``alphaops ingest`` and ``alphaops data``: files into the warehouse, and what it holds."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
import typer

from pipelines.app.cli.common import (
    app,
    check_symbol,
    CliError,
    console,
    load_settings,
    out,
    print_json,
    utc_now,
)


@app.command()
def ingest(
    file: Path = typer.Argument(..., help="CSV or Parquet file."),
    symbol: str = typer.Option(None, "--symbol",
                               help="Symbol to store the rows under (news: only for a file without a symbol column)."),
    timeframe: str = typer.Option(None, "--timeframe",
                                  help="Bar timeframe, e.g. 1m, 5m, 1h, 1d (inferred from the timestamps if omitted)."),
    kind: str = typer.Option("bars", help="bars, ticks, book or news (headlines: ts, symbol, headline[, source])."),
    fmt: str = typer.Option(None, "--format", help="'binance' for Binance kline dumps."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Validate a file with the data-quality suite and upsert it (all-or-nothing, idempotent)."""
    from pipelines.ingest.ingestion import IngestRejected, ingest_file
    from pipelines.ingest.sources import parse_timeframe

    if kind not in ("bars", "ticks", "book", "news"):
        raise CliError(f"--kind {kind!r} is not one of bars, ticks, book, news")
    if symbol is None and kind != "news":
        raise CliError(f"--symbol is required for --kind {kind}")
    if symbol is not None:
        check_symbol(symbol)
    if timeframe is not None:
        parse_timeframe(timeframe)  # a ValueError naming the timeframe
    if not file.exists():
        raise CliError(f"file not found: {file}")
    if file.is_dir():
        raise CliError(f"{file} is a directory; give a CSV or Parquet file")
    settings = load_settings()
    if kind == "news":
        _ingest_news(file, symbol, settings, as_json)
        return
    try:
        with console.status(f"validating and ingesting {file.name}…"):
            result = ingest_file(file, symbol=symbol, timeframe=timeframe, settings=settings,
                                 as_of=utc_now(), kind=kind, fmt=fmt)
    except IngestRejected as exc:
        console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    payload = result.to_dict()
    if as_json:
        print_json(payload)
    else:
        out.print(f"ingested {symbol} {timeframe}: {payload['rows_in']} rows in, {payload['rows_new']} new, "
                  f"{payload['rows_changed']} changed, {payload['rows_written']} written "
                  f"(ingest {payload['ingest_id']})")
        for warning in payload.get("warnings", []):
            console.print(f"[yellow]warning:[/] {warning}")


def _ingest_news(file: Path, symbol: str | None, settings: object, as_json: bool) -> None:
    """``--kind news``: headlines into the warehouse's news table (pipelines.ingest.news)."""
    from pipelines.ingest.ingestion import IngestRejected
    from pipelines.ingest.news import ingest_news_file

    try:
        with console.status(f"validating and ingesting headlines from {file.name}…"):
            result = ingest_news_file(file, settings=settings, as_of=utc_now(), symbol=symbol)
    except IngestRejected as exc:
        console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    payload = result.to_dict()
    if as_json:
        print_json(payload)
        return
    out.print(f"ingested headlines for {', '.join(payload['symbols'])}: {payload['rows_in']} rows in, "
              f"{payload['rows_new']} new, {payload['rows_changed']} changed, {payload['rows_written']} written "
              f"(ingest {payload['ingest_id']})")


@app.command()
def data(as_json: bool = typer.Option(False, "--json")) -> None:
    """Symbols and timeframes in the warehouse: rows, time range and the last ingest."""
    from pipelines.ingest.ingestion import data_summary

    rows = data_summary(load_settings())
    if as_json:
        print_json(rows)
        return
    table = Table(title="Warehouse bars")
    for col in ("symbol", "timeframe", "rows", "from", "to", "last ingest"):
        table.add_column(col)
    for r in rows:
        last = r.get("last_ingest") or {}
        table.add_row(r["symbol"], r["timeframe"], str(r["rows"]), str(r["ts_min"]), str(r["ts_max"]),
                      f"{last.get('status', '—')} {last.get('logged_at', '')}")
    out.print(table)
