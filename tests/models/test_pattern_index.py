"""models.pattern_index: the IVF of a large pattern library, its calibrated nprobe, and the library document."""

from __future__ import annotations

import numpy as np
import pytest

from models.pattern_index import (
    IVF_MIN_WINDOWS,
    _exact_neighbours,
    build_ivf,
    default_n_lists,
    library_doc,
)
from serving.patterns import PatternLibrary

NAMES = {0: "bearish", 1: "neutral", 2: "bullish"}


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int, n_clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((n_clusters, dim)))
    return unit(centres[rng.integers(0, n_clusters, n)] + 0.15 * rng.standard_normal((n, dim)))


def test_default_lists_are_a_power_of_two_near_the_square_root():
    assert default_n_lists(1_000_000) == 1024 and default_n_lists(20_000) == 128 and default_n_lists(1) == 1


def test_exact_neighbours_leave_the_query_out():
    emb = clustered(500, 8, 5, seed=3)
    rows = np.array([0, 77, 499])
    got = _exact_neighbours(emb, emb[rows], 6, rows)
    for i, r in enumerate(rows):
        sim = emb @ emb[r]
        sim[r] = -np.inf
        np.testing.assert_array_equal(got[i], np.argsort(-sim, kind="stable")[:6])


def test_ivf_lists_cover_the_library_and_nprobe_reaches_the_target_on_clustered_windows():
    emb = clustered(4000, 16, 40, seed=1)
    index = build_ivf(emb, n_lists=32, k=10, target_recall=0.95, max_probe_share=0.5, seed=0)
    assert index.n_lists == 32 and index.centroids.shape == (32, 16)
    np.testing.assert_allclose(np.linalg.norm(index.centroids, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(np.sort(index.order), np.arange(4000))  # every row in exactly one list
    assert index.offsets[0] == 0 and index.offsets[-1] == 4000 and (np.diff(index.offsets) >= 0).all()
    # each row sits in the list of its most similar centroid
    lists = np.repeat(np.arange(32), np.diff(index.offsets))
    np.testing.assert_array_equal(lists, np.argmax(emb[index.order] @ index.centroids.T, axis=1))
    probes = sorted(index.recall_by_nprobe)
    recalls = [index.recall_by_nprobe[p] for p in probes]
    assert recalls == sorted(recalls) and probes[-1] == index.nprobe
    assert index.calibration_recall >= 0.95 and all(r < 0.95 for r in recalls[:-1])
    # the calibrated nprobe holds on queries the calibration did not see
    lib = PatternLibrary(emb, np.zeros(4000, dtype=int), NAMES, index=_serving_index(index))
    queries = unit(emb[:100] + 0.05 * np.random.default_rng(5).standard_normal((100, 16)))
    recall = [len(set(lib.search(q, 10)[0].tolist()) & set(lib.search(q, 10, exact=True)[0].tolist())) / 10
              for q in queries]
    assert np.mean(recall) >= 0.9, np.mean(recall)


def _serving_index(index):
    from serving.patterns import IvfIndex

    return IvfIndex(index.centroids, index.offsets, index.order, index.nprobe)


def test_nprobe_stops_at_its_cap_and_says_what_it_reached_on_structureless_vectors():
    emb = unit(np.random.default_rng(2).standard_normal((3000, 32)))
    index = build_ivf(emb, n_lists=64, k=10, target_recall=0.99, max_probe_share=0.125)
    assert index.nprobe == 8  # 64 * 0.125: the cap, not the target
    assert index.calibration_recall < 0.99 and index.calibration_recall == index.recall_by_nprobe[8]


def test_library_doc_adds_an_index_only_to_large_libraries_and_serving_reads_both():
    emb = clustered(2000, 8, 20, seed=4)
    outcomes = np.random.default_rng(1).integers(0, 3, 2000)
    small = library_doc(emb, outcomes, [0, 1, 2], k=5)
    assert "ivf" not in small and 2000 < IVF_MIN_WINDOWS
    assert PatternLibrary.from_doc(small, NAMES).index is None
    forced = library_doc(emb, outcomes, [0, 1, 2], k=5, ivf=True, n_lists=16)
    assert forced["ivf"]["n_lists"] == 16 and forced["ivf"]["calibration"]["k"] == 5
    lib = PatternLibrary.from_doc(forced, NAMES)
    assert lib.index.nprobe == forced["ivf"]["nprobe"]
    q = emb[321]
    np.testing.assert_array_equal(lib.search(q, 5, nprobe=16)[0], PatternLibrary.from_doc(small, NAMES).search(q, 5)[0])
    np.testing.assert_array_equal(lib.outcomes, outcomes)
    with pytest.raises(ValueError, match="one outcome each"):
        library_doc(emb, outcomes[:-1], [0, 1, 2], k=5)
    with pytest.raises(ValueError, match="n_lists"):
        build_ivf(emb, n_lists=0)
    bad = emb.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        build_ivf(bad)
