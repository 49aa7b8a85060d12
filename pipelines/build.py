"""The features and label steps: bars → ml_features, bars → ml_labels (idempotent upserts)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from features.store import open_warehouse
from models.specs import spec_by_name
from pipelines.config import Settings


def build_features(settings: Settings, *, symbol: str, timeframe: str, as_of: pd.Timestamp) -> dict[str, Any]:
    """Compute the feature set on the symbol's bars up to ``as_of`` and upsert it."""
    import features

    with open_warehouse(settings) as warehouse:
        bars = warehouse.read_bars(tenant=settings.tenant, symbol=symbol, timeframe=timeframe, end=as_of)
        if bars.empty:
            raise ValueError(f"no bars for symbol {symbol!r} timeframe {timeframe!r}; ingest data first")
        matrix = features.compute(bars)
        rows = warehouse.write_features(matrix, tenant=settings.tenant, symbol=symbol, timeframe=timeframe,
                                        feature_set_version=features.FEATURE_SET_VERSION)
    return {"symbol": symbol, "timeframe": timeframe, "feature_set_version": features.FEATURE_SET_VERSION,
            "rows": rows, "n_features": int(matrix.shape[1])}


def build_labels(settings: Settings, *, symbol: str, timeframe: str, spec_names: list[str],
                 as_of: pd.Timestamp) -> dict[str, Any]:
    """Compute the labels the given specs need and upsert them (the last ``horizon`` rows stay empty)."""
    specs = [spec_by_name(name) for name in spec_names]
    with open_warehouse(settings) as warehouse:
        bars = warehouse.read_bars(tenant=settings.tenant, symbol=symbol, timeframe=timeframe, end=as_of)
        labels = pd.DataFrame({spec.label: spec.label_for(bars) for spec in specs}, index=bars.index)
        labels = labels.loc[:, ~labels.columns.duplicated()]
        rows = warehouse.write_labels(labels, tenant=settings.tenant, symbol=symbol, timeframe=timeframe)
    return {"symbol": symbol, "timeframe": timeframe, "labels": list(labels.columns), "rows": rows}
