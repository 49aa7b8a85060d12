"""Similar past patterns: the ``k`` nearest library windows of a pattern bundle and their votes.

A ``pattern_similarity`` bundle's graph has an ``embedding`` output (unit-length rows), and its
``schema.json`` carries the library that the model's vote was built from (``pattern_library``:
the library windows' embeddings ``[L, dim]`` and outcome classes ``[L]``, each a base64 ``.npy``,
covered by the schema's seal). ``Predictor.similar`` answers::

    >>> p.similar(window, k=10).votes        # doctest: +SKIP
    {'bearish': 0.3, 'neutral': 0.1, 'bullish': 0.6}

:meth:`PatternLibrary.search` ranks the library by cosine similarity with numpy:

- **exact** (every library without an index, or ``exact=True``): one matrix-vector product over
  the whole library and a partial sort (``argpartition``);
- **IVF** (a library with ``pattern_library.ivf``, built by ``models.pattern_index`` for large
  libraries): the query ranks the index's coarse centroids, then scores exactly the windows of
  its ``nprobe`` best lists, each a contiguous slice of the library stored in list order. It is
  approximate: a neighbour whose list is not probed is missed. The index records the recall@k it
  reached against the exact search when it was built.

The full history of windows lives in the warehouse (``ml_pattern_windows``); this library is
the compact copy a trading runtime carries.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.errors import BundleError, InputError
from serving.schema import Schema

LIBRARY_KEY = "pattern_library"
LIBRARY_FORMAT = "npy-base64"


@dataclass(frozen=True)
class Neighbour:
    """One library window: its row in the library, cosine similarity and distance, and outcome."""

    row: int
    similarity: float
    distance: float
    outcome: str


@dataclass(frozen=True)
class PatternMatch:
    """The answer of ``similar``: the neighbours (most similar first) and the share of each outcome."""

    votes: dict[str, float]
    neighbours: tuple[Neighbour, ...]
    name: str
    version: str


def _npy(text: Any, what: str) -> np.ndarray:
    if not isinstance(text, str):
        raise BundleError(f"{LIBRARY_KEY}.{what}: expected a base64 .npy string")
    try:
        return np.load(io.BytesIO(base64.b64decode(text, validate=True)), allow_pickle=False)
    except (binascii.Error, ValueError, OSError) as exc:
        raise BundleError(f"{LIBRARY_KEY}.{what}: not a base64 .npy array ({exc})") from exc


def _is_count(value: Any, high: int) -> bool:
    """Whether ``value`` is an integer (not a bool) from 1 to ``high``."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 1 <= value <= high


def _top(similarity: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest values, largest first (ties: lower position first)."""
    n = len(similarity)
    top = np.argpartition(similarity, n - k)[n - k:] if k < n else np.arange(n)
    return top[np.lexsort((top, -similarity[top]))]


class IvfIndex:
    """Inverted lists over a library stored in list order: unit-length ``centroids [n_lists, dim]``,
    ``offsets [n_lists + 1]`` (list ``j`` is sorted positions ``offsets[j]:offsets[j + 1]``) and
    ``order [L]`` (the library row at each sorted position)."""

    __slots__ = ("centroids", "offsets", "order", "nprobe", "calibration")

    def __init__(self, centroids: np.ndarray, offsets: np.ndarray, order: np.ndarray, nprobe: int,
                 calibration: dict[str, Any] | None = None):
        centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        offsets, order = np.asarray(offsets), np.asarray(order)
        if centroids.ndim != 2 or len(centroids) == 0:
            raise BundleError(f"{LIBRARY_KEY}.ivf: centroids must be a non-empty [n_lists, dim] matrix, "
                              f"got shape {centroids.shape}")
        if not np.issubdtype(offsets.dtype, np.integer) or not np.issubdtype(order.dtype, np.integer):
            raise BundleError(f"{LIBRARY_KEY}.ivf: offsets and order must be integers")
        offsets, order = offsets.astype(np.int64), order.astype(np.int64)
        n = len(order)
        if (offsets.shape != (len(centroids) + 1,) or offsets[0] != 0 or offsets[-1] != n
                or (np.diff(offsets) < 0).any()):
            raise BundleError(f"{LIBRARY_KEY}.ivf: offsets must rise from 0 to the library size {n}, one more "
                              f"than the {len(centroids)} lists")
        if n and (order.min() < 0 or order.max() >= n or (np.bincount(order, minlength=n) != 1).any()):
            raise BundleError(f"{LIBRARY_KEY}.ivf: order must hold every library row exactly once")
        if not _is_count(nprobe, len(centroids)):
            raise BundleError(f"{LIBRARY_KEY}.ivf: nprobe must be from 1 to the {len(centroids)} lists, got {nprobe!r}")
        self.centroids, self.offsets, self.order, self.nprobe = centroids, offsets, order, int(nprobe)
        self.calibration = dict(calibration or {})

    @classmethod
    def from_doc(cls, doc: Any) -> IvfIndex:
        if not isinstance(doc, dict) or doc.get("format") != LIBRARY_FORMAT:
            raise BundleError(f"{LIBRARY_KEY}.ivf must be an object with format {LIBRARY_FORMAT!r}")
        if doc.get("metric", "cosine") != "cosine":
            raise BundleError(f"{LIBRARY_KEY}.ivf.metric must be 'cosine', got {doc.get('metric')!r}")
        return cls(_npy(doc.get("centroids"), "ivf.centroids"), _npy(doc.get("offsets"), "ivf.offsets"),
                   _npy(doc.get("order"), "ivf.order"), doc.get("nprobe"), doc.get("calibration"))

    @property
    def n_lists(self) -> int:
        return int(len(self.centroids))

    def search(self, sorted_embeddings: np.ndarray, query: np.ndarray, k: int,
               nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(sorted positions, similarities) of the ``k`` best windows among the ``nprobe`` lists whose
        centroids are most similar to ``query``; more lists are probed while they hold fewer than ``k``."""
        probes = self.nprobe if nprobe is None else nprobe
        if not _is_count(probes, self.n_lists):
            raise InputError(f"nprobe must be an integer from 1 to the {self.n_lists} lists, got {nprobe!r}")
        ranked = self.centroids @ query
        while True:
            lists = np.sort(_top(ranked, probes))  # read the library in memory order
            starts, ends = self.offsets[lists], self.offsets[lists + 1]
            sizes = ends - starts
            total = int(sizes.sum())
            if total >= k or probes >= self.n_lists:
                break
            probes = min(2 * probes, self.n_lists)
        similarity = np.empty(total, dtype=np.float32)
        at = 0
        for start, end in zip(starts.tolist(), ends.tolist()):
            if end > start:
                np.dot(sorted_embeddings[start:end], query, out=similarity[at:at + end - start])
                at += end - start
        best = _top(similarity, k)
        # a candidate's sorted position: its list's start plus its place inside the list
        first = np.cumsum(sizes) - sizes
        which = np.searchsorted(first, best, side="right") - 1  # an empty list never holds a candidate
        return starts[which] + (best - first[which]), similarity[best]


class PatternLibrary:
    """Unit-length embeddings ``[L, dim]`` with one outcome class each, searched by cosine similarity,
    exactly or through an :class:`IvfIndex`. Rows are the library's own rows; with an index,
    ``embeddings`` holds them in list order (``index.order``) and ``outcomes`` in row order."""

    __slots__ = ("embeddings", "outcomes", "names", "embedding_output", "default_k", "index", "_rows")

    def __init__(self, embeddings: np.ndarray, outcomes: np.ndarray, names: dict[int, str],
                 embedding_output: str = "embedding", default_k: int = 10, index: IvfIndex | None = None):
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        outcomes = np.asarray(outcomes).astype(np.int64)
        if embeddings.ndim != 2 or len(embeddings) == 0:
            raise BundleError(f"{LIBRARY_KEY}: embeddings must be a non-empty [L, dim] matrix, got "
                              f"shape {embeddings.shape}")
        if outcomes.shape != (len(embeddings),):
            raise BundleError(f"{LIBRARY_KEY}: {len(embeddings)} embeddings but outcomes of shape {outcomes.shape}")
        unknown = sorted(set(np.unique(outcomes).tolist()) - set(names))
        if unknown:
            raise BundleError(f"{LIBRARY_KEY}: outcome classes {unknown} are not among the classes {sorted(names)}")
        self._rows: np.ndarray | None = None
        if index is not None:
            if len(index.order) != len(embeddings) or index.centroids.shape[1] != embeddings.shape[1]:
                raise BundleError(f"{LIBRARY_KEY}.ivf: an index of {len(index.order)} rows and "
                                  f"{index.centroids.shape[1]} dims for a library of shape {embeddings.shape}")
            # the embeddings are stored in list order once, at load: each list is one contiguous slice
            embeddings, self._rows = embeddings[index.order], index.order
        self.embeddings, self.outcomes, self.names = embeddings, outcomes, dict(names)
        self.embedding_output = embedding_output
        self.default_k = int(default_k)
        self.index = index

    @classmethod
    def from_schema(cls, schema: Schema) -> PatternLibrary:
        """The library of a bundle's schema; :class:`BundleError` if it has none or it is malformed."""
        doc = schema.raw.get(LIBRARY_KEY)
        if not isinstance(doc, dict):
            raise BundleError(f"{schema.model_name}@{schema.model_version} has no '{LIBRARY_KEY}' in schema.json: "
                              "only pattern_similarity bundles answer similar()")
        names = {int(c): str(n) for c, n in zip(schema.classes, schema.class_names)}
        return cls.from_doc(doc, names)

    @classmethod
    def from_doc(cls, doc: dict[str, Any], names: dict[int, str]) -> PatternLibrary:
        """A ``pattern_library`` object (as in ``schema.json``) with the names of its outcome classes."""
        if doc.get("format") != LIBRARY_FORMAT:
            raise BundleError(f"{LIBRARY_KEY}.format must be {LIBRARY_FORMAT!r}, got {doc.get('format')!r}")
        embeddings, outcomes = _npy(doc.get("embeddings"), "embeddings"), _npy(doc.get("outcomes"), "outcomes")
        if int(doc.get("dim", -1)) != embeddings.shape[-1]:
            raise BundleError(f"{LIBRARY_KEY}.dim {doc.get('dim')} does not match embeddings of shape {embeddings.shape}")
        index = IvfIndex.from_doc(doc["ivf"]) if doc.get("ivf") is not None else None
        return cls(embeddings, outcomes, names, str(doc.get("embedding_output", "embedding")),
                   int(doc.get("k", 10)), index)

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def search(self, embedding: np.ndarray, k: int, *, exact: bool = False,
               nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, similarities) of the ``k`` library windows most similar to ``embedding``, best first:
        through the index when the library has one (``nprobe`` lists; the index's own by default),
        else, or with ``exact=True``, over the whole library."""
        if not _is_count(k, len(self)):
            raise InputError(f"k must be an integer from 1 to the library size {len(self)}, got {k!r}")
        query = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if query.shape != (self.dim,):
            raise InputError(f"expected an embedding of {self.dim} values, got shape {np.shape(embedding)}")
        if self.index is None or exact:
            similarity = self.embeddings @ query
            positions = _top(similarity, k)
            similarity = similarity[positions]
        else:
            positions, similarity = self.index.search(self.embeddings, query, k, nprobe)
        if self._rows is not None:
            return self._rows[positions], similarity
        return positions, similarity

    def votes(self, rows: np.ndarray) -> dict[str, float]:
        """Share of each outcome class among library ``rows`` (every class named, zero shares included)."""
        counts = {name: 0 for name in self.names.values()}
        for value in self.outcomes[np.asarray(rows)].tolist():
            counts[self.names[value]] += 1
        return {name: count / len(rows) for name, count in counts.items()}

    def match(self, embedding: np.ndarray, k: int, name: str = "", version: str = "", *, exact: bool = False,
              nprobe: int | None = None) -> PatternMatch:
        rows, similarity = self.search(embedding, k, exact=exact, nprobe=nprobe)
        neighbours = tuple(Neighbour(int(r), float(s), float(1.0 - s), self.names[int(o)])
                           for r, s, o in zip(rows.tolist(), similarity.tolist(), self.outcomes[rows].tolist()))
        return PatternMatch(self.votes(rows), neighbours, name, version)
