"""Similar past patterns: the ``k`` nearest library windows of a pattern bundle and their votes.

A ``pattern_similarity`` bundle's graph has an ``embedding`` output (unit-length rows), and its
``schema.json`` carries the library that the model's vote was built from (``pattern_library``:
the library windows' embeddings ``[L, dim]`` and outcome classes ``[L]``, each a base64 ``.npy``,
covered by the schema's seal). :meth:`PatternLibrary.search` ranks the library by cosine
similarity with numpy (one matrix-vector product and a partial sort); ``Predictor.similar``
answers::

    >>> p.similar(window, k=10).votes        # doctest: +SKIP
    {'bearish': 0.3, 'neutral': 0.1, 'bullish': 0.6}

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


class PatternLibrary:
    """Unit-length embeddings ``[L, dim]`` with one outcome class each, searched by cosine similarity."""

    __slots__ = ("embeddings", "outcomes", "names", "embedding_output", "default_k")

    def __init__(self, embeddings: np.ndarray, outcomes: np.ndarray, names: dict[int, str],
                 embedding_output: str = "embedding", default_k: int = 10):
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
        self.embeddings, self.outcomes, self.names = embeddings, outcomes, dict(names)
        self.embedding_output = embedding_output
        self.default_k = int(default_k)

    @classmethod
    def from_schema(cls, schema: Schema) -> PatternLibrary:
        """The library of a bundle's schema; :class:`BundleError` if it has none or it is malformed."""
        doc = schema.raw.get(LIBRARY_KEY)
        if not isinstance(doc, dict):
            raise BundleError(f"{schema.model_name}@{schema.model_version} has no '{LIBRARY_KEY}' in schema.json: "
                              "only pattern_similarity bundles answer similar()")
        if doc.get("format") != LIBRARY_FORMAT:
            raise BundleError(f"{LIBRARY_KEY}.format must be {LIBRARY_FORMAT!r}, got {doc.get('format')!r}")
        embeddings, outcomes = _npy(doc.get("embeddings"), "embeddings"), _npy(doc.get("outcomes"), "outcomes")
        if int(doc.get("dim", -1)) != embeddings.shape[-1]:
            raise BundleError(f"{LIBRARY_KEY}.dim {doc.get('dim')} does not match embeddings of shape {embeddings.shape}")
        names = {int(c): str(n) for c, n in zip(schema.classes, schema.class_names)}
        return cls(embeddings, outcomes, names, str(doc.get("embedding_output", "embedding")),
                   int(doc.get("k", 10)))

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def search(self, embedding: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, similarities) of the ``k`` library windows most similar to ``embedding``, best first."""
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= len(self):
            raise InputError(f"k must be an integer from 1 to the library size {len(self)}, got {k!r}")
        query = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if query.shape != (self.dim,):
            raise InputError(f"expected an embedding of {self.dim} values, got shape {np.shape(embedding)}")
        similarity = self.embeddings @ query
        rows = np.argpartition(-similarity, k - 1)[:k] if k < len(self) else np.arange(len(self))
        rows = rows[np.argsort(-similarity[rows], kind="stable")]
        return rows, similarity[rows]

    def votes(self, rows: np.ndarray) -> dict[str, float]:
        """Share of each outcome class among ``rows`` (every class named, zero shares included)."""
        counts = {name: 0 for name in self.names.values()}
        for value in self.outcomes[rows].tolist():
            counts[self.names[value]] += 1
        return {name: count / len(rows) for name, count in counts.items()}

    def match(self, embedding: np.ndarray, k: int, name: str = "", version: str = "") -> PatternMatch:
        rows, similarity = self.search(embedding, k)
        neighbours = tuple(Neighbour(int(r), float(s), float(1.0 - s), self.names[int(self.outcomes[r])])
                           for r, s in zip(rows.tolist(), similarity.tolist()))
        return PatternMatch(self.votes(rows), neighbours, name, version)
