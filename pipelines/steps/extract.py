"""The extract step: ingest the bundled sample symbols (idempotent) for the train_models DAG.

Each symbol goes through :func:`pipelines.ingest.ingestion.ingest`, the same path as
``alphaops ingest``; synthetic symbols also store their injected events in ``market_events``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipelines.config import Settings
from pipelines.ingest.ingestion import ingest
from pipelines.ingest.samples import SAMPLE_SYMBOLS, SyntheticNewsSource, SyntheticSource, UniverseMemberSource, sample_timeframe

if TYPE_CHECKING:
    from warehouse import Warehouse


def _sync_events(warehouse: "Warehouse", source: SyntheticSource | UniverseMemberSource, *, tenant: str,
                 symbol: str) -> int:
    """Write the synthetic source's recorded events that the warehouse does not hold yet."""
    events = source.events()
    known = warehouse.read_market_events(tenant=tenant, symbol=symbol)
    if not known.empty:
        have = set(zip(pd.DatetimeIndex(known["ts"]).as_unit("ns"), known["type"]))
        stamps = pd.DatetimeIndex(events["ts"]).as_unit("ns")
        keep = [(pd.Timestamp(t), k) not in have for t, k in zip(stamps, events["type"])]
        events = events[np.asarray(keep, dtype=bool)]
    return warehouse.write_market_events(events, tenant=tenant, symbol=symbol, source=source.name) if len(events) else 0


def _ingest_headlines(settings: Settings, source: SyntheticNewsSource, symbol: str, as_of: pd.Timestamp,
                      warehouse: "Warehouse | None") -> int:
    """The synthetic market's headlines through the news ingest (idempotent: a second run writes none)."""
    from pipelines.ingest.news import NewsFrameSource, ingest_news

    headlines = source.headlines().drop(columns=["tone"])
    return ingest_news(NewsFrameSource(headlines, name=source.name, symbol=symbol), settings=settings,
                       as_of=as_of, warehouse=warehouse).rows_written


def extract_samples(settings: Settings, symbols: list[str], as_of: pd.Timestamp,
                    warehouse: "Warehouse | None" = None) -> list[dict[str, Any]]:
    """Ingest bundled sample symbols (SPX, VIX, WTI, CRUDE, SYN1, SYN2); the DAG's extract task.

    Idempotent: running it again writes nothing unless the data changed. Synthetic symbols
    also store their injected anomalies in ``market_events``, and SYNNEWS its headlines in ``news``. Returns small JSON-safe dicts.
    """
    unknown = [s for s in symbols if s not in SAMPLE_SYMBOLS]
    if unknown:
        raise ValueError(f"unknown sample symbol(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(SAMPLE_SYMBOLS)}")
    out = []
    for symbol in symbols:
        source = SAMPLE_SYMBOLS[symbol]()
        timeframe = sample_timeframe(symbol)
        # Without a warehouse, each ingest opens it only for its own compare-and-write.
        result = ingest(source, symbol=symbol, timeframe=timeframe, settings=settings, as_of=as_of,
                        warehouse=warehouse)
        events = 0
        if isinstance(source, (SyntheticSource, UniverseMemberSource)):
            # A universe member's events (the universe's regime switches) belong to the universe.
            events_symbol = source.events_symbol if isinstance(source, UniverseMemberSource) else symbol
            if warehouse is None:
                from warehouse import open_warehouse

                with open_warehouse(settings) as opened:
                    events = _sync_events(opened, source, tenant=settings.scope, symbol=events_symbol)
            else:
                events = _sync_events(warehouse, source, tenant=settings.scope, symbol=events_symbol)
        news = _ingest_headlines(settings, source, symbol, as_of, warehouse) \
            if isinstance(source, SyntheticNewsSource) else 0
        out.append({"symbol": symbol, "timeframe": timeframe, "rows": result.rows_in, "headlines_written": news,
                    "rows_new": result.rows_new, "rows_changed": result.rows_changed,
                    "rows_written": result.rows_written, "events_written": int(events),
                    "ingest_id": result.ingest_id})
    return out

