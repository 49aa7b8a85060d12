"""``alphaops bench patterns``: embedding plus top-k search among a million stored windows.

One query is one window of feature vectors: its embedding by a pattern model's ONNX graph
(onnxruntime, one thread), then the ``k`` nearest stored windows,

- with numpy over the library in memory (``serving.patterns.PatternLibrary``: one
  matrix-vector product and a partial sort), as a bundle's library is searched;
- with the warehouse (chDB): ``ORDER BY cosineDistance(embedding, q) LIMIT k`` over
  ``ml_pattern_windows`` (exact), and over a copy with the ``vector_similarity`` HNSW index
  (approximate; its recall@k against the exact search is reported).

The stored embeddings are random unit vectors of the model's dimension: the cost of an exact
search does not depend on what the vectors hold, and random vectors are the hard case for HNSW.
The model is a ``PatternSimilarityModel`` trained for two epochs on random windows of
``window × n_features`` (the shape of the synthetic market's windows), since only its graph's
cost matters here.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

GOAL_MS = 20.0


def _percentiles(samples_ms: list[float]) -> tuple[float, float]:
    values = np.asarray(samples_ms)
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, (time.perf_counter() - start) * 1e3


def pattern_bench(*, n_windows: int = 1_000_000, dim: int = 64, window: int = 8, n_features: int = 158,
                  k: int = 10, n_queries: int = 200, n_warehouse_queries: int = 30, hnsw: bool = True,
                  seed: int = 0, home: Path | None = None) -> dict[str, Any]:
    """p50 / p99 (ms) of embedding, numpy search and warehouse search, and their sums against the 20 ms goal."""
    import onnxruntime as ort

    from models.families.pattern_similarity import PatternSimilarityModel
    from pipelines.config import Settings
    from serving.patterns import PatternLibrary
    from warehouse import open_warehouse

    if n_windows < k or n_queries < 1 or n_warehouse_queries < 1:
        raise ValueError(f"need n_windows >= k and at least one query; got n_windows={n_windows}, k={k}")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((max(600, 4 * k), window, n_features)).astype(np.float32)
    model = PatternSimilarityModel(embedding_dim=dim, k=k, epochs=2, random_state=seed).fit(
        X, rng.integers(0, 3, len(X)))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.to_onnx().SerializeToString(), options, providers=["CPUExecutionProvider"])

    library = np.empty((n_windows, dim), dtype=np.float32)
    for start in range(0, n_windows, 100_000):  # unit rows, 100k at a time
        part = rng.standard_normal((min(100_000, n_windows - start), dim)).astype(np.float32)
        library[start:start + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    outcomes = rng.integers(0, 3, n_windows)
    numpy_library = PatternLibrary(library, outcomes, {0: "bearish", 1: "neutral", 2: "bullish"})
    queries = rng.standard_normal((n_queries, 1, window, n_features)).astype(np.float32)

    embed_ms, search_ms, embeddings = [], [], []
    for q in queries:
        (label, votes, emb), ms = _timed(lambda q=q: session.run(None, {"input": q}))
        embed_ms.append(ms)
        embeddings.append(emb[0])
        _, ms = _timed(lambda e=emb[0]: numpy_library.match(e, k))
        search_ms.append(ms)
    figures: dict[str, Any] = {"stored_windows": n_windows, "embedding_dim": dim,
                               "window_x_features": f"{window} x {n_features}", "k": k, "queries": n_queries}
    figures["embed_p50_ms"], figures["embed_p99_ms"] = _percentiles(embed_ms)
    figures["numpy_search_p50_ms"], figures["numpy_search_p99_ms"] = _percentiles(search_ms)
    total = [a + b for a, b in zip(embed_ms, search_ms)]
    figures["numpy_total_p50_ms"], figures["numpy_total_p99_ms"] = _percentiles(total)

    with tempfile.TemporaryDirectory(prefix="alphaops-bench-patterns-") as tmp:
        settings = Settings(home=home or Path(tmp))
        ts = pd.date_range("2020-01-01", periods=n_windows, freq="1min", tz="UTC")
        with open_warehouse(settings) as warehouse:
            _, ms = _timed(lambda: [warehouse.write_pattern_windows(
                tenant="bench", library="bench@v1", symbol="BENCH", timeframe="1m", ts=ts[s:s + 250_000],
                embeddings=library[s:s + 250_000], outcomes=outcomes[s:s + 250_000],
                forward_returns=np.zeros(len(ts[s:s + 250_000])), horizon=1, source="history")
                for s in range(0, n_windows, 250_000)])
            figures["warehouse_insert_s"] = ms / 1e3
            exact_ms, exact_sets = [], []
            for e in embeddings[:n_warehouse_queries]:
                found, ms = _timed(lambda e=e: warehouse.search_patterns(
                    tenant="bench", library="bench@v1", embedding=e, limit=k))
                exact_ms.append(ms)
                exact_sets.append(set(found["ts"]))
            figures["warehouse_search_p50_ms"], figures["warehouse_search_p99_ms"] = _percentiles(exact_ms)
            wh_total = [a + b for a, b in zip(embed_ms, exact_ms)]
            figures["warehouse_total_p50_ms"], figures["warehouse_total_p99_ms"] = _percentiles(wh_total)
            if hnsw:
                table, ms = _timed(lambda: warehouse.create_hnsw_copy(tenant="bench", library="bench@v1", dim=dim,
                                                                      name="bench_pattern_hnsw"))
                figures["hnsw_build_s"] = ms / 1e3
                hnsw_ms, recall = [], []
                for e, exact in zip(embeddings[:n_warehouse_queries], exact_sets):
                    found, ms = _timed(lambda e=e: warehouse.search_patterns(
                        tenant="bench", library="bench@v1", embedding=e, limit=k, table=table))
                    hnsw_ms.append(ms)
                    recall.append(len(set(found["ts"]) & exact) / k)
                figures["hnsw_search_p50_ms"], figures["hnsw_search_p99_ms"] = _percentiles(hnsw_ms)
                figures["hnsw_recall_at_k"] = float(np.mean(recall))
                warehouse.drop_table(table)
    figures["numpy_total_p50_vs_goal"] = figures["numpy_total_p50_ms"] / GOAL_MS
    figures["numpy_plus_warehouse_p50_ms"] = figures["numpy_total_p50_ms"] + figures["warehouse_search_p50_ms"]
    figures["numpy_plus_warehouse_p50_vs_goal"] = figures["numpy_plus_warehouse_p50_ms"] / GOAL_MS
    if hnsw:
        figures["numpy_plus_hnsw_p50_ms"] = figures["numpy_total_p50_ms"] + figures["hnsw_search_p50_ms"]
        figures["numpy_plus_hnsw_p50_vs_goal"] = figures["numpy_plus_hnsw_p50_ms"] / GOAL_MS
    return figures
