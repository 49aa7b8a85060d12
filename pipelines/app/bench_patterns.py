"""``alphaops bench patterns``: embedding plus top-k search among a million stored windows.

One query is one window of feature vectors: its embedding by a pattern model's ONNX graph
(onnxruntime, one thread), then the ``k`` nearest stored windows. Every query is searched, in
the same loop and process, by

- the **exact** numpy search (``serving.patterns.PatternLibrary`` without an index: one
  matrix-vector product over the whole library and a partial sort), the baseline;
- the **IVF** numpy search (the same library with a ``models.pattern_index`` index, as a bundle
  with a large library carries it): its latency, its speed-up over the exact search, and its
  recall@k against the exact search (the share of the exact top-k it returns);
- the **warehouse** (chDB), optionally: ``ORDER BY cosineDistance(embedding, q) LIMIT k`` over
  ``ml_pattern_windows`` (exact), and over a copy with the ``vector_similarity`` HNSW index.

Two libraries of ``n_windows`` embeddings:

- ``market``: the windows of a synthetic market (``SyntheticMarket``, SYN1's imbalance edge,
  every computed feature, 1-minute bars) embedded by a ``PatternSimilarityModel`` trained on
  3,000 of them with the spec's label (``dir3_h1_0.0002``); queries are windows of a market of
  another seed, so no query is in the library. This is what a library of real windows looks like.
- ``random``: unit vectors drawn uniformly on the sphere, with the same queries. They have no
  structure for an index to use (every point is about as far from the query as its nearest
  neighbour), so this is the worst case of any approximate index, not a realistic one.

The load average at the start and the end is part of the figures: on shared machines it is most
of what a latency figure measures.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

GOAL_MS = 20.0
CLASS_NAMES = {0: "bearish", 1: "neutral", 2: "bullish"}
LABEL_HORIZON, LABEL_THRESHOLD = 1, 0.0002  # pattern_similarity_h1's label, dir3_h1_0.0002
TRAIN_WINDOWS = 3000
LIBRARIES = ("market", "random")


def _percentiles(samples_ms: list[float]) -> tuple[float, float]:
    values = np.asarray(samples_ms)
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, (time.perf_counter() - start) * 1e3


def _market_windows(n_windows: int, window: int, seed: int) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """(end bar, window ``[N, window, F]``, dir3 label) of the first ``n_windows`` complete windows."""
    from features.core import compute
    from features.labels import direction_three_class
    from pipelines.ingest.synthetic import SyntheticMarket
    from pipelines.live.patterns import feature_windows

    bars, _ = SyntheticMarket(seed=seed, n_bars=n_windows + 600 + window, imbalance_coef=0.2).generate()
    feats = compute(bars)
    ts, windows = feature_windows(feats, list(feats.columns), window)
    label = direction_three_class(bars, LABEL_HORIZON, LABEL_THRESHOLD).reindex(ts).to_numpy()
    return ts[:n_windows], windows[:n_windows], label[:n_windows]


def _embed(session: Any, windows: np.ndarray) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(["embedding"], {name: np.ascontiguousarray(windows[s:s + 2048])})[0]
                           for s in range(0, len(windows), 2048)])


def _unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    rows = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        part = rng.standard_normal((min(100_000, n - start), dim)).astype(np.float32)
        rows[start:start + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return rows


def pattern_bench(*, n_windows: int = 1_000_000, dim: int = 64, window: int = 8, k: int = 10, n_queries: int = 200,
                  libraries: tuple[str, ...] = LIBRARIES, n_lists: int | None = None, nprobe: int | None = None,
                  target_recall: float = 0.95, epochs: int = 6, warehouse: bool = True,
                  n_warehouse_queries: int = 30, hnsw: bool = False, seed: int = 0,
                  home: Path | None = None) -> dict[str, Any]:
    """p50 / p99 (ms) of embedding, exact and IVF numpy search (with recall@k), optionally the warehouse,
    and embedding plus search against the 20 ms goal."""
    import onnxruntime as ort

    from models.families.pattern_similarity import PatternSimilarityModel
    from models.pattern_index import build_ivf
    from serving.patterns import IvfIndex, PatternLibrary

    unknown = sorted(set(libraries) - set(LIBRARIES))
    if unknown or not libraries:
        raise ValueError(f"libraries must be among {LIBRARIES}, got {list(libraries)}")
    if n_windows <= max(k, TRAIN_WINDOWS // 10) or n_queries < 1 or (warehouse and n_warehouse_queries < 1):
        raise ValueError(f"need more than {max(k, TRAIN_WINDOWS // 10)} windows and at least one query; got "
                         f"n_windows={n_windows}, n_queries={n_queries}")
    figures: dict[str, Any] = {"load_average_1min_start": os.getloadavg()[0], "stored_windows": n_windows,
                               "embedding_dim": dim, "k": k, "queries": n_queries}
    rng = np.random.default_rng(seed)

    (ts, windows, label), ms = _timed(lambda: _market_windows(n_windows, window, seed + 1))
    figures["market_features_s"] = ms / 1e3
    figures["window_x_features"] = f"{window} x {windows.shape[2]}"
    known = np.flatnonzero(np.isfinite(label))
    train = known[np.linspace(0, len(known) - 1, min(TRAIN_WINDOWS, len(known))).round().astype(int)]
    model = PatternSimilarityModel(embedding_dim=dim, k=k, epochs=epochs, random_state=seed).fit(
        np.ascontiguousarray(windows[train]), label[train].astype(np.int64))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.to_onnx().SerializeToString(), options, providers=["CPUExecutionProvider"])
    market, ms = _timed(lambda: _embed(session, windows))
    figures["market_embed_library_s"] = ms / 1e3
    market_outcomes = np.nan_to_num(label, nan=1.0).astype(np.int64)  # the last window's outcome is unknown
    del windows

    _, query_windows, _ = _market_windows(10 * n_queries, window, seed + 2)
    query_windows = np.ascontiguousarray(query_windows[::10][:n_queries])
    embed_ms, queries = [], []
    input_name = session.get_inputs()[0].name
    for q in query_windows:
        (emb,), ms = _timed(lambda q=q: session.run(["embedding"], {input_name: q[None]}))
        embed_ms.append(ms)
        queries.append(emb[0])
    figures["queries"] = len(queries)
    figures["embed_p50_ms"], figures["embed_p99_ms"] = _percentiles(embed_ms)

    for name in libraries:
        embeddings = market if name == "market" else _unit_rows(rng, n_windows, dim)
        outcomes = market_outcomes if name == "market" else rng.integers(0, 3, n_windows)
        exact = PatternLibrary(embeddings, outcomes, CLASS_NAMES)
        built, ms = _timed(lambda e=embeddings: build_ivf(e, n_lists=n_lists, k=k, target_recall=target_recall,
                                                          seed=seed))
        figures[f"{name}_ivf_build_s"] = ms / 1e3
        index = IvfIndex(built.centroids, built.offsets, built.order, nprobe or built.nprobe)
        approximate = PatternLibrary(embeddings, outcomes, CLASS_NAMES, index=index)
        figures[f"{name}_ivf_lists"], figures[f"{name}_ivf_nprobe"] = index.n_lists, index.nprobe
        figures[f"{name}_ivf_calibration_recall"] = built.recall_by_nprobe.get(index.nprobe, float("nan"))
        exact_ms, ivf_ms, recall = [], [], []
        for q in queries:
            found, ms = _timed(lambda q=q: exact.match(q, k))
            exact_ms.append(ms)
            approx, ms = _timed(lambda q=q: approximate.match(q, k))
            ivf_ms.append(ms)
            recall.append(len({n.row for n in found.neighbours} & {n.row for n in approx.neighbours}) / k)
        figures[f"{name}_exact_search_p50_ms"], figures[f"{name}_exact_search_p99_ms"] = _percentiles(exact_ms)
        figures[f"{name}_ivf_search_p50_ms"], figures[f"{name}_ivf_search_p99_ms"] = _percentiles(ivf_ms)
        figures[f"{name}_ivf_speedup_p50"] = figures[f"{name}_exact_search_p50_ms"] / figures[f"{name}_ivf_search_p50_ms"]
        figures[f"{name}_ivf_recall_at_k"], figures[f"{name}_ivf_recall_at_k_min"] = float(np.mean(recall)), min(recall)
        for kind, samples in (("exact", exact_ms), ("ivf", ivf_ms)):
            p50, p99 = _percentiles([a + b for a, b in zip(embed_ms, samples)])
            figures[f"{name}_embed_plus_{kind}_p50_ms"], figures[f"{name}_embed_plus_{kind}_p99_ms"] = p50, p99
            figures[f"{name}_embed_plus_{kind}_p50_vs_goal"] = p50 / GOAL_MS
            figures[f"{name}_embed_plus_{kind}_p99_vs_goal"] = p99 / GOAL_MS
        del exact, approximate

    if warehouse:
        figures.update(_warehouse_figures(market, market_outcomes, ts, queries[:n_warehouse_queries], k=k,
                                          embed_ms=embed_ms, hnsw=hnsw, home=home))
    figures["load_average_1min_end"] = os.getloadavg()[0]
    return figures


def _warehouse_figures(library: np.ndarray, outcomes: np.ndarray, ts: pd.DatetimeIndex, queries: list[np.ndarray],
                       *, k: int, embed_ms: list[float], hnsw: bool, home: Path | None) -> dict[str, Any]:
    """The market library in ``ml_pattern_windows``: insert, exact ``cosineDistance`` search, HNSW copy."""
    from pipelines.config import Settings
    from serving.patterns import PatternLibrary
    from warehouse import open_warehouse

    figures: dict[str, Any] = {"warehouse_queries": len(queries)}
    truth = PatternLibrary(library, outcomes, CLASS_NAMES)
    expected = [set(ts[truth.search(q, k)[0]]) for q in queries]
    with tempfile.TemporaryDirectory(prefix="alphaops-bench-patterns-") as tmp:
        settings = Settings(home=home or Path(tmp))
        with open_warehouse(settings) as wh:
            _, ms = _timed(lambda: [wh.write_pattern_windows(
                tenant="bench", library="bench@v1", symbol="BENCH", timeframe="1m", ts=ts[s:s + 250_000],
                embeddings=library[s:s + 250_000], outcomes=outcomes[s:s + 250_000],
                forward_returns=np.zeros(len(ts[s:s + 250_000])), horizon=1, source="history")
                for s in range(0, len(library), 250_000)])
            figures["warehouse_insert_s"] = ms / 1e3
            search_ms, agreement = [], []
            for q, want in zip(queries, expected):
                found, ms = _timed(lambda q=q: wh.search_patterns(tenant="bench", library="bench@v1", embedding=q,
                                                                  limit=k))
                search_ms.append(ms)
                agreement.append(len(set(pd.DatetimeIndex(found["ts"]).tz_convert("UTC")) & want) / k)
            figures["warehouse_exact_search_p50_ms"], figures["warehouse_exact_search_p99_ms"] = _percentiles(search_ms)
            figures["warehouse_exact_recall_vs_numpy_exact"] = float(np.mean(agreement))
            p50, _ = _percentiles([a + b for a, b in zip(embed_ms, search_ms)])
            figures["warehouse_embed_plus_exact_p50_ms"], figures["warehouse_embed_plus_exact_p50_vs_goal"] = (
                p50, p50 / GOAL_MS)
            if hnsw:
                table, ms = _timed(lambda: wh.create_hnsw_copy(tenant="bench", library="bench@v1",
                                                               dim=library.shape[1], name="bench_pattern_hnsw"))
                figures["hnsw_build_s"] = ms / 1e3
                hnsw_ms, recall = [], []
                for q, want in zip(queries, expected):
                    found, ms = _timed(lambda q=q: wh.search_patterns(tenant="bench", library="bench@v1",
                                                                      embedding=q, limit=k, table=table))
                    hnsw_ms.append(ms)
                    recall.append(len(set(pd.DatetimeIndex(found["ts"]).tz_convert("UTC")) & want) / k)
                figures["hnsw_search_p50_ms"], figures["hnsw_search_p99_ms"] = _percentiles(hnsw_ms)
                figures["hnsw_recall_at_k"] = float(np.mean(recall))
                wh.drop_table(table)
    return figures
