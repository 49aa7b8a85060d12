"""The approximate index of a large pattern library: an IVF that ``serving.patterns`` searches with numpy.

An exact search reads the whole library on every query: a million 64-dimensional float32
embeddings are 256 MB, and one pass over them takes tens of milliseconds of memory bandwidth on
this project's machines. An inverted file (IVF) reads a few percent of it:

1. **Coarse centroids:** scikit-learn's ``KMeans`` (Lloyd, one thread: on the shared 2-core
   machines OpenMP threads fight the other jobs) on a sample of at most ``SAMPLE_PER_LIST``
   windows per list; the centroids are scaled to unit length, so a window's list is the centroid
   of highest cosine similarity.
2. **Inverted lists:** every window is assigned to its list, and the library is stored sorted
   by list (``order``: the library row of each sorted position, ``offsets``: where each list
   starts), so one list is one contiguous slice that a matrix-vector product reads.
3. **Probes:** a query ranks the centroids and scores the windows of its ``nprobe`` best lists
   exactly. ``nprobe`` is calibrated here: the smallest power of two whose recall@k, against the
   exact search, reaches ``target_recall`` on ``calibration_queries`` library windows used as
   queries (each is left out of its own neighbours), capped at ``max_probe_share`` of the lists.
   A window is found at ``nprobe`` exactly when its list ranks among the query's first
   ``nprobe``, so every ``nprobe`` is scored from one exact search per query.

:func:`library_doc` writes a library (and its index, for at least ``IVF_MIN_WINDOWS`` windows)
as ``schema.json``'s ``pattern_library``; serving reads it with ``PatternLibrary.from_schema``.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

LIBRARY_FORMAT = "npy-base64"
IVF_MIN_WINDOWS = 50_000  # below this an exact search reads at most 12.8 MB (dim 64) and needs no index
SAMPLE_PER_LIST = 32
ASSIGN_CHUNK = 65_536


@dataclass(frozen=True)
class IvfIndex:
    """Unit-length coarse centroids, the library's rows in list order and where each list starts."""

    centroids: np.ndarray  # float32 [n_lists, dim]
    offsets: np.ndarray    # int64 [n_lists + 1]: list j is order[offsets[j]:offsets[j + 1]]
    order: np.ndarray      # int64 [L]: the library row at each sorted position
    nprobe: int
    k: int
    target_recall: float
    calibration_recall: float  # recall@k at nprobe on the calibration queries
    calibration_queries: int
    recall_by_nprobe: dict[int, float]

    @property
    def n_lists(self) -> int:
        return int(len(self.centroids))


def default_n_lists(n_windows: int) -> int:
    """A power of two near ``sqrt(n_windows)`` (1,024 lists for a million windows), at least 1."""
    return max(1, 2 ** round(math.log2(max(1.0, math.sqrt(n_windows)))))


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.where(norms > 1e-12, norms, 1.0)).astype(np.float32)


def _assign(embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return np.concatenate([np.argmax(embeddings[s:s + ASSIGN_CHUNK] @ centroids.T, axis=1)
                           for s in range(0, len(embeddings), ASSIGN_CHUNK)])


def _exact_neighbours(embeddings: np.ndarray, queries: np.ndarray, k: int, skip: np.ndarray) -> np.ndarray:
    """Rows ``[Q, k]`` of the ``k`` library windows most similar to each query, leaving out row ``skip[i]``."""
    best_sim = np.full((len(queries), k + 1), -np.inf, dtype=np.float32)
    best_row = np.zeros((len(queries), k + 1), dtype=np.int64)
    for start in range(0, len(embeddings), ASSIGN_CHUNK):
        sim = queries @ embeddings[start:start + ASSIGN_CHUNK].T
        inside = (skip >= start) & (skip < start + sim.shape[1])
        sim[np.flatnonzero(inside), skip[inside] - start] = -np.inf
        width = min(k + 1, sim.shape[1])
        top = np.argpartition(-sim, width - 1, axis=1)[:, :width]
        both_sim = np.concatenate([best_sim, np.take_along_axis(sim, top, axis=1)], axis=1)
        both_row = np.concatenate([best_row, top + start], axis=1)
        keep = np.argpartition(-both_sim, k, axis=1)[:, :k + 1]
        best_sim, best_row = np.take_along_axis(both_sim, keep, axis=1), np.take_along_axis(both_row, keep, axis=1)
    keep = np.argsort(-best_sim, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(best_row, keep, axis=1)


def build_ivf(embeddings: Any, *, n_lists: int | None = None, k: int = 10, target_recall: float = 0.95,
              max_probe_share: float = 0.125, calibration_queries: int = 256, seed: int = 0) -> IvfIndex:
    """Coarse centroids, inverted lists and a calibrated ``nprobe`` for unit-length ``embeddings [L, dim]``."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(embeddings) <= k:
        raise ValueError(f"need an [L, dim] library of more than k={k} windows, got shape {embeddings.shape}")
    if not np.isfinite(embeddings).all():
        raise ValueError("library embeddings hold NaN or infinite values")
    if not 0.0 < target_recall <= 1.0 or not 0.0 < max_probe_share <= 1.0:
        raise ValueError(f"target_recall and max_probe_share must be in (0, 1], got {target_recall}, {max_probe_share}")
    n = len(embeddings)
    n_lists = default_n_lists(n) if n_lists is None else int(n_lists)
    if not 1 <= n_lists <= n:
        raise ValueError(f"n_lists must be from 1 to the library size {n}, got {n_lists}")
    rng = np.random.default_rng(seed)
    sample = embeddings[np.sort(rng.choice(n, min(n, SAMPLE_PER_LIST * n_lists), replace=False))]
    with threadpool_limits(1):
        centroids = KMeans(n_lists, n_init=1, max_iter=20, random_state=seed).fit(sample).cluster_centers_
        centroids = _unit(centroids)
        assign = _assign(embeddings, centroids)
        order = np.argsort(assign, kind="stable").astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(np.bincount(assign, minlength=n_lists))]).astype(np.int64)

        queries_rows = np.sort(rng.choice(n, min(n, calibration_queries), replace=False))
        queries = embeddings[queries_rows]
        truth = _exact_neighbours(embeddings, queries, k, queries_rows)
        # the rank of each true neighbour's list among the query's lists (0 = the query's best list)
        list_rank = np.argsort(np.argsort(-(queries @ centroids.T), axis=1, kind="stable"), axis=1)
        found_at = np.take_along_axis(list_rank, assign[truth], axis=1)
    cap = max(1, int(n_lists * max_probe_share))
    recall_by_nprobe: dict[int, float] = {}
    nprobe = 1
    while True:
        recall_by_nprobe[nprobe] = float(np.mean(found_at < nprobe))
        if recall_by_nprobe[nprobe] >= target_recall or nprobe >= cap:
            break
        nprobe = min(2 * nprobe, cap)
    return IvfIndex(centroids=centroids, offsets=offsets, order=order, nprobe=nprobe, k=int(k),
                    target_recall=float(target_recall), calibration_recall=recall_by_nprobe[nprobe],
                    calibration_queries=len(queries_rows), recall_by_nprobe=recall_by_nprobe)


def npy_base64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def ivf_doc(index: IvfIndex) -> dict[str, Any]:
    """The ``ivf`` entry of ``pattern_library``: what ``serving.patterns.IvfIndex.from_doc`` reads."""
    return {"format": LIBRARY_FORMAT, "metric": "cosine", "n_lists": index.n_lists, "nprobe": int(index.nprobe),
            "centroids": npy_base64(index.centroids.astype(np.float32)),
            "offsets": npy_base64(index.offsets.astype(np.int64)),
            "order": npy_base64(index.order.astype(np.int32 if len(index.order) < 2**31 else np.int64)),
            "calibration": {"k": index.k, "target_recall": index.target_recall,
                            "recall_at_k": index.calibration_recall, "queries": index.calibration_queries,
                            "recall_by_nprobe": {str(p): r for p, r in index.recall_by_nprobe.items()}}}


def library_doc(embeddings: Any, outcomes: Any, classes: Any, *, k: int, embedding_output: str = "embedding",
                ivf: bool | None = None, seed: int = 0, **ivf_options: Any) -> dict[str, Any]:
    """``schema.json``'s ``pattern_library``: unit-length ``embeddings [L, dim]``, their outcome classes
    (values of ``classes``), and an IVF index when ``ivf`` (by default: at least ``IVF_MIN_WINDOWS`` windows)."""
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    outcomes = np.asarray(outcomes)
    if embeddings.ndim != 2 or outcomes.shape != (len(embeddings),):
        raise ValueError(f"need embeddings [L, dim] and one outcome each, got {embeddings.shape} and {outcomes.shape}")
    doc: dict[str, Any] = {
        "format": LIBRARY_FORMAT, "embedding_output": embedding_output, "metric": "cosine", "k": int(k),
        "dim": int(embeddings.shape[1]), "size": int(len(embeddings)), "classes": [int(c) for c in classes],
        "embeddings": npy_base64(embeddings), "outcomes": npy_base64(outcomes.astype(np.int8)),
    }
    if ivf if ivf is not None else len(embeddings) >= IVF_MIN_WINDOWS:
        doc["ivf"] = ivf_doc(build_ivf(embeddings, k=min(int(k), len(embeddings) - 1), seed=seed, **ivf_options))
    return doc
