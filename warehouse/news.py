"""Headlines: one row per (tenant, symbol, ts, headline_id), with the text, its source and an
optional sentiment label a user gave it ('' when none; the labelled set a sentiment head trains on).

``headline_id`` is given by the source or derived from the text (``pipelines.ingest.news``), so
ingesting a file again writes nothing and an edited headline under the same id replaces the old.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from warehouse.schema import DATABASE
from warehouse.tables import Tables

NEWS_COLUMNS = ["symbol", "ts", "headline_id", "headline", "source", "label"]


class NewsTables(Tables):
    """Reads and idempotent writes of ``news``."""

    def write_news(self, headlines: pd.DataFrame, *, tenant: str, feed: str, ingest_id: str) -> int:
        """Upsert headlines (columns ``symbol, ts, headline_id, headline, source``, optional ``label``)."""
        frame = pd.DataFrame({
            "tenant": tenant, "symbol": headlines["symbol"].astype(str).to_numpy(),
            "ts": pd.DatetimeIndex(headlines["ts"]).tz_convert("UTC"),
            "headline_id": headlines["headline_id"].astype(str).to_numpy(),
            "headline": headlines["headline"].astype(str).to_numpy(),
            "source": headlines["source"].astype(str).to_numpy(),
            "label": (headlines["label"].fillna("").astype(str).to_numpy() if "label" in headlines
                      else np.full(len(headlines), "", dtype=object)),
            "feed": feed, "ingest_id": ingest_id, "version": np.uint64(time.time_ns()),
        })
        return self.insert("news", frame)

    def read_news(self, *, tenant: str, symbol: str | None = None, start: pd.Timestamp | None = None,
                  end: pd.Timestamp | None = None) -> pd.DataFrame:
        """Headlines ordered by ts: ``symbol, ts, headline_id, headline, source, label`` (one symbol or all)."""
        where, params = self._tenant_where(tenant, symbol=symbol)
        where += self._range_where(params, start, end, precision=6)
        frame = self.query(f"""SELECT {', '.join(NEWS_COLUMNS)} FROM {DATABASE}.news FINAL
                               WHERE {where} ORDER BY ts, headline_id""", params)
        frame["ts"] = pd.DatetimeIndex(frame["ts"]).tz_convert("UTC") if len(frame) else \
            pd.DatetimeIndex([], tz="UTC")
        return frame

    def read_labelled_news(self, *, tenant: str, end: pd.Timestamp | None = None) -> pd.DataFrame:
        """Every headline of the tenant that carries a label (all symbols), ordered by ts."""
        frame = self.read_news(tenant=tenant, end=end)
        return frame[frame["label"] != ""].reset_index(drop=True)

    def news_inventory(self, tenant: str) -> pd.DataFrame:
        """Per symbol: headlines held and their time range."""
        return self.query(
            f"""SELECT symbol, count() AS rows, min(ts) AS ts_min, max(ts) AS ts_max
                FROM {DATABASE}.news FINAL WHERE tenant = {{tenant:String}}
                GROUP BY symbol ORDER BY symbol""", {"tenant": tenant})
