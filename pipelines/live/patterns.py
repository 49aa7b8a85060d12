"""The warehouse's pattern library: fill it from history and from closed trades, and search it.

A pattern bundle (``pattern_similarity``) embeds windows of feature vectors (its ONNX
``embedding`` output). :func:`index_pattern_history` embeds every past window of a symbol whose
outcome is known and appends it to ``ml_pattern_windows``; :func:`add_trade_windows` appends the
window at each closed trade's entry with the trade's own outcome. Both are idempotent (a window
already stored is skipped). :func:`find_similar_patterns` embeds the current window and asks the
warehouse for its nearest stored windows; :func:`aggregate_pattern_outcomes` turns them into the
outcome votes that ``serving.Predictor.similar`` gives from the bundle's compact library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import serving
from pipelines.ingest.sources import timeframe_delta
from warehouse import Warehouse

HISTORY_SOURCE = "history"
TRADE_SOURCE = "trade"
EMBED_BATCH = 2048


class PatternEmbedder:
    """The encoder of one pattern bundle: windows ``[N, window, n_features]`` → unit-length embeddings."""

    def __init__(self, bundle: str | Path):
        self.predictor = serving.Predictor.load(bundle)
        schema = self.predictor.schema
        self.library_doc = schema.raw.get("pattern_library")
        if not isinstance(self.library_doc, dict):
            raise serving.BundleError(f"{bundle}: not a pattern bundle (schema.json has no 'pattern_library')")
        self.output = str(self.library_doc.get("embedding_output", "embedding"))
        self.features = list(self.predictor.features)
        self.window = self.predictor.window
        self.class_names = dict(zip(schema.classes, schema.class_names))
        label = schema.raw.get("label", {})
        self.label, self.horizon = str(label.get("name", "")), int(label.get("horizon_bars", 0))
        self.library = f"{schema.model_name}@v{schema.model_version}"

    def embed(self, windows: np.ndarray) -> np.ndarray:
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 3 or windows.shape[1:] != (self.window, len(self.features)):
            raise ValueError(f"expected windows of shape [N, {self.window}, {len(self.features)}], got {windows.shape}")
        if not np.isfinite(windows).all():
            raise ValueError("windows hold NaN or infinite values")
        session = self.predictor.session
        name = session.get_inputs()[0].name
        parts = [session.run([self.output], {name: np.ascontiguousarray(windows[s:s + EMBED_BATCH])})[0]
                 for s in range(0, len(windows), EMBED_BATCH)]
        return np.concatenate(parts) if parts else np.empty((0, int(self.library_doc["dim"])), np.float32)


def feature_windows(frame: pd.DataFrame, names: list[str], window: int) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Windows of ``window`` consecutive complete feature rows (columns ``names``), by their last bar."""
    from models.families.sequence import make_windows

    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"the features lack {missing[:5]} that the pattern model needs")
    values = frame[names].to_numpy(dtype=np.float32)
    complete = np.isfinite(values).all(axis=1)
    # a window counts only if all its rows are complete and consecutive bars of the frame
    run = np.convolve(complete.astype(np.int64), np.ones(window, dtype=np.int64), mode="valid") == window
    if len(values) < window:
        return pd.DatetimeIndex([], tz="UTC"), np.empty((0, window, len(names)), np.float32)
    ends = np.flatnonzero(run)
    return pd.DatetimeIndex(frame.index[ends + window - 1]), make_windows(values, window)[ends]


def forward_log_return(bars: pd.DataFrame, horizon: int) -> pd.Series:
    close = np.log(bars["close"].astype(float))
    return close.shift(-horizon) - close


def index_pattern_history(warehouse: Warehouse, embedder: PatternEmbedder, *, tenant: str, symbol: str,
                          timeframe: str, feature_set_version: str, end: pd.Timestamp | None = None) -> int:
    """Embed every stored window of ``symbol`` whose outcome (the bundle's label) is known, and append the
    new ones; returns how many were new. Only windows after the latest one already stored are embedded
    (the history grows at its end), so a run that finds nothing new embeds nothing."""
    after = warehouse.last_pattern_ts(tenant=tenant, library=embedder.library, symbol=symbol, timeframe=timeframe,
                                      source=HISTORY_SOURCE)
    feats = warehouse.read_features(tenant=tenant, symbol=symbol, timeframe=timeframe,
                                    feature_set_version=feature_set_version, end=end)
    labels = warehouse.read_labels(tenant=tenant, symbol=symbol, timeframe=timeframe, labels=[embedder.label])
    bars = warehouse.read_bars(tenant=tenant, symbol=symbol, timeframe=timeframe, end=end)
    ts, windows = feature_windows(feats, embedder.features, embedder.window)
    outcome = labels[embedder.label].reindex(ts).to_numpy()
    fwd = forward_log_return(bars, embedder.horizon).reindex(ts).to_numpy()
    known = np.isfinite(outcome) & np.isfinite(fwd)
    if after is not None:
        known &= np.asarray(ts > after)
    if not known.any():
        return 0
    return warehouse.write_pattern_windows(
        tenant=tenant, library=embedder.library, symbol=symbol, timeframe=timeframe, ts=ts[known],
        embeddings=embedder.embed(windows[known]), outcomes=outcome[known].astype(np.int64),
        forward_returns=fwd[known], horizon=embedder.horizon, source=HISTORY_SOURCE)


def trade_outcome(side: np.ndarray, entry_price: np.ndarray, exit_price: np.ndarray, threshold: float,
                  class_values: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(outcome class, log return of the price from entry to exit) of closed trades: the highest class
    (bullish) if the price rose by more than ``threshold``, the lowest (bearish) if it fell by more,
    else the middle one; the side does not change what the price did."""
    move = np.log(np.asarray(exit_price, dtype=float) / np.asarray(entry_price, dtype=float))
    if not np.isfinite(move).all():
        raise ValueError("trade prices must be positive and finite")
    low, high = min(class_values), max(class_values)
    middle = sorted(class_values)[len(class_values) // 2]
    return np.select([move > threshold, move < -threshold], [high, low], middle).astype(np.int64), move


def add_trade_windows(warehouse: Warehouse, embedder: PatternEmbedder, trades: pd.DataFrame, *, tenant: str,
                      symbol: str, timeframe: str, feature_set_version: str, threshold: float = 0.001) -> int:
    """Append the window ending at each closed trade's entry bar, with the trade's outcome; idempotent.

    ``trades`` has ``entry_ts``, ``exit_ts``, ``side``, ``entry_price`` and ``exit_price`` (the
    ``trade_results`` columns). The entry bar is the bar with ``ts <= entry_ts < ts + timeframe``
    (the convention of the prediction log's outcomes). A trade whose entry bar has no complete
    window is skipped; the row is keyed by the entry time, so one window is kept per entry time."""
    needed = {"entry_ts", "exit_ts", "side", "entry_price", "exit_price"}
    if not needed <= set(trades.columns):
        raise ValueError(f"trades need the columns {sorted(needed)}; missing {sorted(needed - set(trades.columns))}")
    if trades.empty:
        return 0
    entry = pd.DatetimeIndex(trades["entry_ts"]).tz_convert("UTC")
    if (pd.DatetimeIndex(trades["exit_ts"]).tz_convert("UTC") < entry).any():
        raise ValueError("a trade exits before it enters")
    feats = warehouse.read_features(tenant=tenant, symbol=symbol, timeframe=timeframe,
                                    feature_set_version=feature_set_version, end=entry.max())
    ts, windows = feature_windows(feats, embedder.features, embedder.window)
    position = ts.searchsorted(entry, side="right") - 1  # the last window ending at or before the entry
    found = position >= 0
    found[found] = entry[found] < ts[position[found]] + timeframe_delta(timeframe)  # ...on the entry's own bar
    if not found.any():
        return 0
    outcome, move = trade_outcome(trades["side"].to_numpy(), trades["entry_price"].to_numpy(),
                                  trades["exit_price"].to_numpy(), threshold, list(embedder.class_names))
    return warehouse.write_pattern_windows(
        tenant=tenant, library=embedder.library, symbol=symbol, timeframe=timeframe, ts=entry[found],
        embeddings=embedder.embed(windows[position[found]]), outcomes=outcome[found], forward_returns=move[found],
        horizon=embedder.horizon, source=TRADE_SOURCE)


def current_window(current_features: Any, embedder: PatternEmbedder) -> np.ndarray:
    """``current_features`` as one ``[window, n_features]`` window: a frame of at least ``window`` rows
    with the model's feature columns (its last rows are used), or an array of that shape."""
    if isinstance(current_features, pd.DataFrame):
        missing = [n for n in embedder.features if n not in current_features.columns]
        if missing:
            raise ValueError(f"current_features lacks the columns {missing[:5]}")
        if len(current_features) < embedder.window:
            raise ValueError(f"current_features has {len(current_features)} rows; the pattern window is "
                             f"{embedder.window}")
        values = current_features[embedder.features].to_numpy(dtype=np.float32)[-embedder.window:]
    else:
        values = np.asarray(current_features, dtype=np.float32)
    if values.shape != (embedder.window, len(embedder.features)):
        raise ValueError(f"expected a window of shape [{embedder.window}, {len(embedder.features)}], "
                         f"got {values.shape}")
    return values


def find_similar_patterns(current_features: Any, tenant: str, symbol: str | None, limit: int = 10, *,
                          warehouse: Warehouse, embedder: PatternEmbedder, metric: str = "cosine") -> pd.DataFrame:
    """The ``limit`` stored windows nearest to the current window (of ``symbol``; every symbol when None),
    nearest first, with ``outcome_name``."""
    embedding = embedder.embed(current_window(current_features, embedder)[None])[0]
    found = warehouse.search_patterns(tenant=tenant, library=embedder.library, embedding=embedding, limit=limit,
                                      symbol=symbol, metric=metric)
    found["outcome_name"] = [embedder.class_names.get(int(o), str(o)) for o in found["outcome"]]
    return found


def aggregate_pattern_outcomes(neighbours: pd.DataFrame, class_names: dict[int, str]) -> dict[str, Any]:
    """Votes (share of each outcome, every class named), mean forward return and count of the neighbours."""
    if neighbours.empty:
        raise ValueError("no neighbours to aggregate: the library is empty for this query")
    counts = neighbours["outcome"].astype(int).value_counts()
    n = len(neighbours)
    return {"votes": {name: float(counts.get(int(value), 0)) / n for value, name in class_names.items()},
            "mean_forward_return": float(neighbours["forward_return"].mean()), "n": n}
