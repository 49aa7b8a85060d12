"""Training datasets assembled from the warehouse: features, one label, and a fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

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

    if spec.rows is not None:
        return supplied_dataset(spec, holdout_fraction)
    if spec.universe:  # one model over a universe's members: the universe's own rows
        from pipelines.evaluation.universe import load_universe_dataset

        return load_universe_dataset(warehouse, spec, tenant=tenant, symbol=symbol, timeframe=timeframe,
                                     as_of=as_of, holdout_fraction=holdout_fraction, feature_names=feature_names)
    feats = warehouse.read_features(tenant=tenant, symbol=symbol, timeframe=timeframe,
                                    feature_set_version=feature_set_version, end=as_of)
    if feats.empty:
        raise ValueError(f"no features for {symbol} {timeframe} ({feature_set_version}); run the features step")
    lacking = [name for name in spec.required_features if name not in feats.columns]
    if lacking:
        raise InsufficientDataError(f"{spec.name} needs features {', '.join(lacking[:3])}, which the feature set "
                                    f"{feature_set_version!r} of {symbol} {timeframe} lacks")
    label_names = list(spec.targets) or [spec.label]  # multi-output specs: one column per target
    labels = warehouse.read_labels(tenant=tenant, symbol=symbol, timeframe=timeframe, labels=label_names)
    missing_labels = [name for name in label_names if name not in labels.columns]
    if missing_labels:
        raise ValueError(f"{symbol} {timeframe}: labels {missing_labels[:3]} are not in the warehouse; run the label step")
    closes = warehouse.read_bars(tenant=tenant, symbol=symbol, timeframe=timeframe, end=as_of)["close"]
    next_return = closes.pct_change().shift(-1).reindex(feats.index).to_numpy(dtype=np.float64)
    label = labels[label_names].reindex(feats.index).to_numpy(dtype=np.float64)
    label = label if spec.targets else label[:, 0]
    del closes, labels

    names = feature_names or usable_features(feats, WARMUP)
    columns = feats.columns.get_indexer(names)
    if (columns < 0).any():
        missing = [n for n, c in zip(names, columns) if c < 0]
        raise ValueError(f"{symbol} {timeframe}: features {missing[:5]} are not in feature set {feature_set_version!r}")
    values = feats.to_numpy()
    keep = ~(np.isnan(label).reshape(len(label), -1).any(axis=1) | np.isnan(next_return))
    keep[:WARMUP] = False
    for block in range(0, len(columns), 32):  # bounded temporaries: 32 columns at a time
        keep &= ~np.isnan(values[:, columns[block:block + 32]]).any(axis=1)
    rows = np.flatnonzero(keep)
    if not len(rows):
        raise InsufficientDataError(f"{symbol} {timeframe}: no rows with both features and label {spec.label!r}")
    if max_bytes is not None and not spec.window:
        # Sized on the feature set's full width, so that a version trained on selected features
        # reads back the same rows as the run that selected them.
        rows = rows[-max(1, max_bytes // (4 * feats.shape[1])):]
    X = _select(values, rows, columns)
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
    return Dataset(X=X, y=y, index=index, feature_names=names, next_return=next_ret,
                   fingerprint=data_fingerprint(index, X, y, names), train_idx=train_idx, holdout_idx=holdout_idx)


def _select(values: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``values[rows][:, columns]`` as float32: a view, not a copy, when the rows are consecutive and
    every column is taken in order (the common case: rows after the warm-up, all usable features)."""
    consecutive = len(rows) and rows[-1] - rows[0] + 1 == len(rows)
    every_column = len(columns) == values.shape[1] and (columns == np.arange(values.shape[1])).all()
    if consecutive and values.dtype == np.float32:
        block = values[rows[0]:rows[-1] + 1]
        return block if every_column else np.ascontiguousarray(block[:, columns])
    return values[np.ix_(rows, columns)].astype(np.float32, copy=False)


def data_fingerprint(index: pd.DatetimeIndex, X: np.ndarray, y: np.ndarray, names: list[str]) -> str:
    """Hash of the rows, the matrix, the label and the feature names (through their buffers: no copy)."""
    digest = hashlib.sha256()
    for part in (index.asi8, X, y):
        digest.update(np.ascontiguousarray(part).data)
    digest.update("\x1f".join(names).encode())
    return digest.hexdigest()[:16]


def restrict_features(data: Dataset, names: list[str]) -> Dataset:
    """``data`` with only the features ``names`` (in that order): what :func:`load_dataset` returns
    when given ``feature_names=names``, fingerprint included."""
    position = {name: i for i, name in enumerate(data.feature_names)}
    unknown = [n for n in names if n not in position]
    if unknown:
        raise ValueError(f"features {unknown[:5]} are not in the dataset")
    X = np.ascontiguousarray(data.X[..., [position[n] for n in names]])
    return replace(data, X=X, feature_names=list(names), fingerprint=data_fingerprint(data.index, X, data.y, list(names)))


def supplied_dataset(spec: ModelSpec, holdout_fraction: float) -> Dataset:
    """The dataset of a spec that supplies its own rows (``spec.rows``, e.g. generated samples)."""
    rows = spec.rows(holdout_fraction)
    n = len(rows.y)
    if not (len(rows.X) == len(rows.next_return) == len(rows.index) == n) or not rows.index.is_unique \
            or not rows.index.is_monotonic_increasing:
        raise ValueError(f"{spec.name}: supplied rows must align (X, y, next_return, index) on a unique, "
                         "ascending index")
    if len(rows.holdout_idx) < 10 or len(rows.train_idx) < 50 or rows.train_idx.max() >= rows.holdout_idx.min():
        raise ValueError(f"{spec.name}: supplied rows need at least 50 training rows before at least 10 holdout rows")
    y = rows.y.astype(np.int64) if spec.task in ("classifier", "anomaly") else rows.y.astype(np.float64)
    train_idx = rows.train_idx[-spec.max_train_rows:] if spec.max_train_rows else rows.train_idx
    return Dataset(X=rows.X, y=y, index=rows.index, feature_names=list(rows.feature_names),
                   next_return=rows.next_return, fingerprint=data_fingerprint(rows.index, rows.X, y, rows.feature_names),
                   train_idx=train_idx, holdout_idx=rows.holdout_idx)
