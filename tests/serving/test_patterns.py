"""serving.patterns: the exact search and the IVF search of a pattern library (numpy only)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from serving.errors import BundleError, InputError
from serving.patterns import IvfIndex, PatternLibrary

NAMES = {0: "bearish", 1: "neutral", 2: "bullish"}


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int, n_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows scattered around ``n_clusters`` unit centres, and the centres."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((n_clusters, dim)))
    rows = centres[rng.integers(0, n_clusters, n)] + 0.15 * rng.standard_normal((n, dim))
    return unit(rows), centres


def index_for(embeddings: np.ndarray, centroids: np.ndarray, nprobe: int) -> IvfIndex:
    """An IVF over ``embeddings`` with the given centroids (each row in its most similar centroid's list)."""
    assign = np.argmax(embeddings @ centroids.T, axis=1)
    order = np.argsort(assign, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(assign, minlength=len(centroids)))])
    return IvfIndex(centroids, offsets, order, nprobe)


def exact_rows(embeddings: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(embeddings @ query), kind="stable")[:k]


@pytest.fixture(scope="module")
def library():
    embeddings, centres = clustered(3000, 16, 30, seed=1)
    outcomes = np.random.default_rng(2).integers(0, 3, len(embeddings))
    return embeddings, outcomes, centres


def test_exact_search_ranks_the_whole_library(library):
    embeddings, outcomes, _ = library
    lib = PatternLibrary(embeddings, outcomes, NAMES)
    query = embeddings[17]
    rows, similarity = lib.search(query, 10)
    np.testing.assert_array_equal(rows, exact_rows(embeddings, query, 10))
    np.testing.assert_allclose(similarity, embeddings[rows] @ query, atol=1e-6)
    assert rows[0] == 17 and similarity[0] == pytest.approx(1.0, abs=1e-5)
    assert len(lib.search(query, len(embeddings))[0]) == len(embeddings)  # k = L needs no partition
    match = lib.match(query, 10)
    assert [n.outcome for n in match.neighbours] == [NAMES[o] for o in outcomes[rows]]
    assert match.votes == {NAMES[c]: float(np.mean(outcomes[rows] == c)) for c in NAMES}


def test_ivf_probing_every_list_is_the_exact_search(library):
    embeddings, outcomes, centres = library
    index = index_for(embeddings, centres, nprobe=2)
    lib = PatternLibrary(embeddings, outcomes, NAMES, index=index)
    for q in embeddings[[3, 400, 2999]] + 0.01:
        q = unit(q[None])[0]
        rows, similarity = lib.search(q, 10, nprobe=index.n_lists)
        np.testing.assert_array_equal(rows, exact_rows(embeddings, q, 10))
        np.testing.assert_allclose(similarity, embeddings[rows] @ q, atol=1e-6)
        np.testing.assert_array_equal(lib.search(q, 10, exact=True)[0], rows)


def test_ivf_rows_are_library_rows_and_recall_is_high_on_clustered_windows(library):
    embeddings, outcomes, centres = library
    lib = PatternLibrary(embeddings, outcomes, NAMES, index=index_for(embeddings, centres, nprobe=3))
    queries, _ = clustered(50, 16, 30, seed=1)  # the same centres (same seed), new scatter
    queries = unit(queries + 0.05 * np.random.default_rng(9).standard_normal(queries.shape))
    recall = []
    for q in queries:
        rows, similarity = lib.search(q, 10)
        assert len(set(rows.tolist())) == 10 and (np.diff(similarity) <= 1e-7).all()
        # rows name the library's own rows: the outcome and similarity of each are those of that row
        np.testing.assert_allclose(similarity, embeddings[rows] @ q, atol=1e-6)
        match = lib.match(q, 10)
        assert [n.outcome for n in match.neighbours] == [NAMES[o] for o in outcomes[rows]]
        recall.append(len(set(rows.tolist()) & set(exact_rows(embeddings, q, 10).tolist())) / 10)
    assert np.mean(recall) >= 0.9, np.mean(recall)
    # one probe of one list misses neighbours the exact search finds
    one = [len(set(lib.search(q, 10, nprobe=1)[0].tolist()) & set(exact_rows(embeddings, q, 10).tolist())) / 10
           for q in queries]
    assert np.mean(one) <= np.mean(recall)


def test_ivf_probes_more_lists_when_the_probed_ones_hold_fewer_than_k(library):
    embeddings, outcomes, centres = library
    far = -unit(centres.sum(axis=0, keepdims=True))  # a centroid no window is nearest to: an empty list
    centroids = np.concatenate([centres, far])
    index = index_for(embeddings, centroids, nprobe=1)
    assert (np.diff(index.offsets) == 0).any()
    lib = PatternLibrary(embeddings, outcomes, NAMES, index=index)
    k = int(np.diff(index.offsets).max()) + 5  # more than any one list holds
    for q in (embeddings[5], far[0]):  # far's best list is the empty one
        rows, similarity = lib.search(q, k)
        assert len(rows) == k and len(set(rows.tolist())) == k
        np.testing.assert_allclose(similarity, embeddings[rows] @ q, atol=1e-6)


def test_malformed_indexes_and_bad_probes_are_refused(library):
    embeddings, outcomes, centres = library
    good = index_for(embeddings, centres, nprobe=2)
    with pytest.raises(BundleError, match="offsets"):
        IvfIndex(centres, good.offsets[:-1], good.order, 2)
    with pytest.raises(BundleError, match="offsets"):
        IvfIndex(centres, good.offsets[::-1], good.order, 2)
    twice = good.order.copy()
    twice[0] = twice[1]
    with pytest.raises(BundleError, match="exactly once"):
        IvfIndex(centres, good.offsets, twice, 2)
    with pytest.raises(BundleError, match="nprobe"):
        IvfIndex(centres, good.offsets, good.order, len(centres) + 1)
    with pytest.raises(BundleError, match="library of shape"):
        PatternLibrary(embeddings[:100], outcomes[:100], NAMES, index=good)
    lib = PatternLibrary(embeddings, outcomes, NAMES, index=good)
    with pytest.raises(InputError, match="nprobe"):
        lib.search(embeddings[0], 10, nprobe=0)
    with pytest.raises(InputError, match="k must be"):
        lib.search(embeddings[0], len(embeddings) + 1)


def npy(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def test_library_documents_with_and_without_an_index(library):
    embeddings, outcomes, centres = library
    index = index_for(embeddings, centres, nprobe=4)
    doc = {"format": "npy-base64", "dim": 16, "k": 7, "embeddings": npy(embeddings),
           "outcomes": npy(outcomes.astype(np.int8))}
    plain = PatternLibrary.from_doc(doc, NAMES)
    assert plain.index is None and plain.default_k == 7
    doc["ivf"] = {"format": "npy-base64", "metric": "cosine", "nprobe": 4, "centroids": npy(centres),
                  "offsets": npy(index.offsets.astype(np.int64)), "order": npy(index.order.astype(np.int32))}
    indexed = PatternLibrary.from_doc(doc, NAMES)
    assert indexed.index is not None and indexed.index.nprobe == 4
    q = embeddings[1234]
    np.testing.assert_array_equal(indexed.search(q, 5, exact=True)[0], plain.search(q, 5)[0])
    assert indexed.search(q, 1)[0][0] == 1234
    with pytest.raises(BundleError, match="metric"):
        PatternLibrary.from_doc({**doc, "ivf": {**doc["ivf"], "metric": "l2"}}, NAMES)
    with pytest.raises(BundleError, match="base64"):
        PatternLibrary.from_doc({**doc, "ivf": {**doc["ivf"], "order": "not base64!"}}, NAMES)
