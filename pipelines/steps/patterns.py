"""Fill the warehouse's pattern library (``ml_pattern_windows``) of every served pattern model.

For each ``pattern_similarity`` model with a ``champion`` or ``challenger`` version, and each such
version (its library is ``<model>@v<version>``: embeddings of different encoders are never mixed):

1. **history:** the windows of the model's symbol and timeframe whose label is known by ``as_of``
   (:func:`pipelines.live.patterns.index_pattern_history`, only those after the latest stored one);
2. **trades:** the window at the entry of every trade of that symbol closed by ``as_of``
   (``exit_ts <= as_of``) in ``trade_results``, with the trade's realized outcome: bullish if the
   price rose from entry to exit by more than the label's band, bearish if it fell by more, else
   neutral (:func:`pipelines.live.patterns.add_trade_windows`).

Both appends skip the windows already stored, so running the step again for the same ``as_of``
adds nothing. The warehouse is opened once per version, after its bundle is downloaded.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from pipelines.config import Settings
from pipelines.values import as_timestamp

log = logging.getLogger(__name__)
FAMILY = "pattern_similarity"
SERVED = ("champion", "challenger")


def served_pattern_versions(registry: Any) -> list[tuple[str, str, dict[str, str]]]:
    """(model, version, its registered-model tags) of every served version of a pattern model."""
    from pipelines.live.outcomes import model_tags

    served = []
    for name in registry.model_names():
        tags = model_tags(registry, name)
        if not tags or tags.get("family") != FAMILY:
            continue
        versions = {registry.alias_version(name, alias) for alias in SERVED} - {None}
        served += [(name, str(version), tags) for version in sorted(versions, key=int)]
    return served


def fill_pattern_library(settings: Settings, *, as_of: pd.Timestamp) -> list[dict[str, Any]]:
    """Append the history windows and the closed trades' windows known by ``as_of`` to the library of
    every served pattern model version; one dict per version with the counts added (idempotent)."""
    from models.catalog import PATTERN_THRESHOLD
    from pipelines.evaluation.scoring import version_bundle
    from pipelines.live.patterns import PatternEmbedder, add_trade_windows, index_pattern_history
    from registry import Registry
    from warehouse import open_warehouse

    as_of = as_timestamp(as_of)
    registry = Registry.from_settings(settings)
    results = []
    for name, version, tags in served_pattern_versions(registry):
        symbol, timeframe = tags.get("symbol"), tags.get("timeframe")
        if not symbol or not timeframe:
            log.warning("fill_pattern_library: %s has no symbol or timeframe tag; skipped", name)
            continue
        embedder = PatternEmbedder(version_bundle(settings, registry, name, version))
        fsv = str(embedder.predictor.schema.raw.get("feature_set_version", ""))
        key = {"tenant": settings.scope, "symbol": symbol, "timeframe": timeframe, "feature_set_version": fsv}
        with open_warehouse(settings) as warehouse:
            history = index_pattern_history(warehouse, embedder, end=as_of, **key)
            trades = warehouse.read_trades(tenant=settings.scope, symbol=symbol)
            closed = trades[trades["exit_ts"] <= as_of] if len(trades) else trades
            added = add_trade_windows(warehouse, embedder, closed, threshold=PATTERN_THRESHOLD, **key) \
                if len(closed) else 0
            stored = warehouse.count_pattern_windows(tenant=settings.scope, library=embedder.library, symbol=symbol)
        results.append({"model": name, "version": version, "library": embedder.library, "symbol": symbol,
                        "history_added": int(history), "closed_trades": int(len(closed)),
                        "trade_windows_added": int(added), "stored": int(stored)})
        log.info("%s v%s: library %s +%d history windows, +%d trade windows (%d closed trades); %d stored",
                 name, version, embedder.library, history, added, len(closed), stored)
    return results
