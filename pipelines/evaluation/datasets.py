"""Training datasets assembled from the warehouse: features, one label, and a fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.cv import InsufficientDataError, holdout_split
from models.specs import ModelSpec
from warehouse import Warehouse


@dataclass(frozen=True)
class Dataset:
    """Rows in time order; ``next_return`` is the close-to-close return of the following bar."""

    X: np.ndarray
    y: np.ndarray
    index: pd.DatetimeIndex
    feature_names: list[str]
    next_return: np.ndarray
    fingerprint: str
    train_idx: np.ndarray
    holdout_idx: np.ndarray

    @property
    def train_end(self) -> pd.Timestamp:
        return self.index[self.train_idx[-1]]

    @property
    def holdout_start(self) -> pd.Timestamp:
        return self.index[self.holdout_idx[0]]


def usable_features(frame: pd.DataFrame, warmup: int) -> list[str]:
    """Features that are finite on every row after the warm-up (degenerate ones are dropped)."""
    finite = np.isfinite(frame.to_numpy()[warmup:]).all(axis=0)
    return [name for name, ok in zip(frame.columns, finite) if ok]


def load_dataset(warehouse: Warehouse, spec: ModelSpec, *, tenant: str, symbol: str, timeframe: str,
                 feature_set_version: str, as_of: pd.Timestamp, holdout_fraction: float,
                 feature_names: list[str] | None = None, max_bytes: int | None = None) -> Dataset:
    """The spec's dataset for ``symbol`` up to ``as_of``, split into train and a purged holdout.

    Rows are those after the warm-up with every feature, the label and the next return known.
    The float32 features are read once and the matrix is copied once, in float32. With
    ``max_bytes``, only the latest rows whose matrix fits in it are kept.
    """
    from features import WARMUP

    feats = warehouse.read_features(tenant=tenant, symbol=symbol, timeframe=timeframe,
                                    feature_set_version=feature_set_version, end=as_of)
    if feats.empty:
        raise ValueError(f"no features for {symbol} {timeframe} ({feature_set_version}); run the features step")
    lacking = [name for name in spec.required_features if name not in feats.columns]
    if lacking:
        raise InsufficientDataError(f"{spec.name} needs features {', '.join(lacking[:3])}, which the feature set "
                                    f"{feature_set_version!r} of {symbol} {timeframe} lacks")
    labels = warehouse.read_labels(tenant=tenant, symbol=symbol, timeframe=timeframe, labels=[spec.label])
    closes = warehouse.read_bars(tenant=tenant, symbol=symbol, timeframe=timeframe, end=as_of)["close"]
    next_return = closes.pct_change().shift(-1).reindex(feats.index).to_numpy(dtype=np.float64)
    label = labels[spec.label].reindex(feats.index).to_numpy(dtype=np.float64)
    del closes, labels

    names = feature_names or usable_features(feats, WARMUP)
    columns = feats.columns.get_indexer(names)
    if (columns < 0).any():
        missing = [n for n, c in zip(names, columns) if c < 0]
        raise ValueError(f"{symbol} {timeframe}: features {missing[:5]} are not in feature set {feature_set_version!r}")
    values = feats.to_numpy()
    keep = ~(np.isnan(label) | np.isnan(next_return))
    keep[:WARMUP] = False
    for block in range(0, len(columns), 32):  # bounded temporaries: 32 columns at a time
        keep &= ~np.isnan(values[:, columns[block:block + 32]]).any(axis=1)
    rows = np.flatnonzero(keep)
    if not len(rows):
        raise ValueError(f"{symbol} {timeframe}: no rows with both features and label {spec.label!r}")
    if max_bytes is not None and not spec.window:
        rows = rows[-max(1, max_bytes // (4 * len(columns))):]
    X = values[np.ix_(rows, columns)].astype(np.float32, copy=False)
    index = pd.DatetimeIndex(feats.index[rows])
    del feats, values
    y = label[rows]
    if spec.task in ("classifier", "anomaly"):  # anomaly: y marks bars inside known events
        y = y.astype(np.int64)
    next_ret = next_return[rows]
    if spec.window:  # sequence models: each row is the window of feature vectors ending at that bar
        from models.families.sequence import make_windows

        X, y, index, next_ret = make_windows(X, spec.window), y[spec.window - 1:], \
            index[spec.window - 1:], next_ret[spec.window - 1:]
    train_idx, holdout_idx = holdout_split(len(y), holdout_fraction, purge=spec.horizon)
    if spec.max_train_rows:
        train_idx = train_idx[-spec.max_train_rows:]
    digest = hashlib.sha256()
    for part in (index.asi8, X, y):  # hashed through their buffers: no copy of the matrix
        digest.update(np.ascontiguousarray(part).data)
    digest.update("\x1f".join(names).encode())
    return Dataset(X=X, y=y, index=index, feature_names=names, next_return=next_ret,
                   fingerprint=digest.hexdigest()[:16], train_idx=train_idx, holdout_idx=holdout_idx)
