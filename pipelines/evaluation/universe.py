"""Datasets of universe specs (``ModelSpec.universe``): one row per timestamp that every member has.

The features are :func:`features.correlation.correlation_features` of the members' joined
closes, the label is the spec's ``make_label`` on the same closes, and ``next_return`` is the
equal-weighted universe's next-row return. Rows, holdout and purge follow
:func:`pipelines.evaluation.datasets.load_dataset`.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from features.correlation import correlation_features, universe_closes, universe_next_return
from models.cv import holdout_split
from models.specs import ModelSpec
from pipelines.universes import universe
from warehouse import Warehouse


def universe_frame(warehouse: Warehouse, spec: ModelSpec, *, tenant: str, name: str, timeframe: str,
                   as_of: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """(joined closes, features, label) of universe ``name`` up to ``as_of``."""
    members = universe(name)
    if timeframe != members.timeframe:
        raise ValueError(f"universe {name} is defined on {members.timeframe}, not {timeframe}")
    closes = {}
    for member in members.members:
        bars = warehouse.read_bars(tenant=tenant, symbol=member, timeframe=timeframe, end=as_of)
        if bars.empty:
            raise ValueError(f"universe {name}: member {member} has no {timeframe} bars; ingest it first")
        closes[member] = bars["close"]
    joined = universe_closes(closes)
    window, rank_window = int(spec.schema_extras["correlation_window"]), int(spec.schema_extras["rank_window"])
    feats = correlation_features(joined, window=window, rank_window=rank_window)
    label = spec.label_for(joined)
    return joined, feats, label


def load_universe_dataset(warehouse: Warehouse, spec: ModelSpec, *, tenant: str, symbol: str, timeframe: str,
                          as_of: pd.Timestamp, holdout_fraction: float, feature_names: list[str] | None = None
                          ) -> "Dataset":
    from pipelines.evaluation.datasets import Dataset

    closes, feats, label = universe_frame(warehouse, spec, tenant=tenant, name=symbol, timeframe=timeframe,
                                          as_of=as_of)
    names = feature_names or list(feats.columns)
    missing = [n for n in names if n not in feats.columns]
    if missing:
        raise ValueError(f"universe {symbol}: features {missing} are not correlation features of {spec.name}")
    next_return = universe_next_return(closes)
    keep = feats[names].notna().all(axis=1) & label.notna() & next_return.notna()
    rows = np.flatnonzero(keep.to_numpy())
    if len(rows) < 100:
        from models.cv import InsufficientDataError

        raise InsufficientDataError(f"universe {symbol} {timeframe}: {len(rows)} rows with features and label "
                                    f"{spec.label!r}; {spec.name} needs at least 100")
    X = feats[names].to_numpy(dtype=np.float32)[rows]
    y = label.to_numpy()[rows].astype(np.int64)
    index = pd.DatetimeIndex(feats.index[rows])
    train_idx, holdout_idx = holdout_split(len(y), holdout_fraction, purge=spec.horizon)
    if spec.max_train_rows:
        train_idx = train_idx[-spec.max_train_rows:]
    digest = hashlib.sha256()
    for part in (index.asi8, X, y):
        digest.update(np.ascontiguousarray(part).data)
    digest.update("\x1f".join(names).encode())
    return Dataset(X=X, y=y, index=index, feature_names=names, next_return=next_return.to_numpy()[rows],
                   fingerprint=digest.hexdigest()[:16], train_idx=train_idx, holdout_idx=holdout_idx)
