"""Headline scoring: a sentiment score in [-1, +1], a five-step label and event flags per headline.

The default scorer is VADER (``vaderSentiment``, Hutto and Gilbert 2014): a rule-based
lexicon whose word list ships inside the wheel, so nothing downloads at run time. Its
``compound`` score is already in [-1, +1]. VADER was built for social-media text; a few
market words it lacks or weighs for everyday speech are set by :data:`FINANCE_LEXICON`
(valences on VADER's -4..+4 scale), documented in docs/data.md.

Labels cut the score at :data:`LABEL_EDGES`: ``very bearish`` ≤ -0.6 < ``bearish`` ≤ -0.2 <
``neutral`` < 0.2 ≤ ``bullish`` < 0.6 ≤ ``very bullish``.

:func:`score_headlines` takes any scorer with a ``name`` and a ``score(texts) -> (scores,
labels)`` method: :class:`VaderScorer` by default, or a trained MiniLM head
(:class:`models.head_scorer.HeadScorer`, ``ALPHAOPS_NEWS_SCORER=minilm``). Every scored row
carries the scorer's name in ``scorer``, so the features built from it say who scored them.

Event flags come from keyword sets (:data:`EVENT_KEYWORDS`), matched on whole words of the
lowercased headline, so ``delisting`` never counts as ``listing``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

SCORER_NAME = "vader-3.3.2+finance-1"

LABELS = ("very bearish", "bearish", "neutral", "bullish", "very bullish")
LABEL_EDGES = (-0.6, -0.2, 0.2, 0.6)  # upper edges of the first four labels (the first two inclusive)

EVENT_TYPES = ("hack", "regulation", "listing", "delisting", "partnership", "lawsuit")
EVENT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "hack": ("hack", "hacked", "hacker", "hackers", "exploit", "exploited", "breach", "drained", "stolen"),
    "regulation": ("regulator", "regulators", "regulation", "regulations", "regulatory", "sec", "cftc",
                   "ban", "bans", "banned", "crackdown", "license", "licence", "compliance"),
    "listing": ("listing", "listings", "lists", "listed"),
    "delisting": ("delist", "delists", "delisting", "delisted"),
    "partnership": ("partnership", "partners", "partner", "partnering", "alliance", "collaboration",
                    "teams up"),
    "lawsuit": ("lawsuit", "lawsuits", "sued", "sues", "litigation", "class action", "court"),
}

# Market words VADER lacks or scores for everyday speech (valence on VADER's -4..+4 scale).
FINANCE_LEXICON: dict[str, float] = {
    "surge": 2.5, "surges": 2.5, "soar": 2.8, "soars": 2.8, "rally": 2.0, "rallies": 2.0,
    "jump": 1.5, "jumps": 1.5, "gains": 1.5, "rebound": 1.5, "rebounds": 1.5, "upgrade": 2.0,
    "upgrades": 2.0, "outperform": 2.0, "bullish": 2.5, "record": 1.0, "partnership": 1.5,
    "listing": 1.0, "approval": 2.0, "approves": 2.0, "adoption": 1.5,
    "bearish": -2.5, "plunge": -2.8, "plunges": -2.8, "crash": -3.0, "crashes": -3.0, "tumble": -2.2,
    "tumbles": -2.2, "slump": -2.0, "slumps": -2.0, "sinks": -2.0, "downgrade": -2.0, "downgrades": -2.0,
    "hack": -3.0, "hacked": -3.0, "exploit": -2.5, "exploited": -2.5, "breach": -2.5, "drained": -2.5,
    "lawsuit": -2.0, "sued": -2.0, "sues": -2.0, "delist": -2.5, "delisting": -2.5, "delisted": -2.5,
    "bankruptcy": -3.2, "insolvent": -3.0, "probe": -1.5, "crackdown": -2.2, "selloff": -2.2,
    "outflows": -1.5, "inflows": 1.5, "halt": -1.5, "halts": -1.5, "layoffs": -1.5,
}


@lru_cache(maxsize=1)
def _analyzer():  # noqa: ANN202 - vaderSentiment has no type hints
    """VADER with :data:`FINANCE_LEXICON` merged in (built once per process)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    analyzer.lexicon.update(FINANCE_LEXICON)
    return analyzer


@lru_cache(maxsize=1)
def _event_patterns() -> dict[str, re.Pattern[str]]:
    return {event: re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b")
            for event, words in EVENT_KEYWORDS.items()}


def label_of(score: float | np.ndarray) -> np.ndarray:
    """The five-step label of each score (see the module doc)."""
    scores = np.atleast_1d(np.asarray(score, dtype=np.float64))
    if not np.isfinite(scores).all():
        raise ValueError("sentiment scores must be finite")
    position = np.searchsorted(np.asarray(LABEL_EDGES), scores, side="left")
    # -0.6 and -0.2 are inclusive upper edges (searchsorted left); 0.2 and 0.6 start their label.
    position = np.where(np.isin(scores, LABEL_EDGES[2:]), position + 1, position)
    return np.asarray(LABELS, dtype=object)[position]


def event_flags(headlines: Iterable[str]) -> pd.DataFrame:
    """One 0/1 column ``event_<type>`` per event type, one row per headline."""
    patterns = _event_patterns()
    texts = [str(h).lower() for h in headlines]
    return pd.DataFrame({f"event_{event}": np.fromiter((bool(p.search(t)) for t in texts), dtype=np.int8,
                                                       count=len(texts))
                         for event, p in patterns.items()})


def sentiment_scores(headlines: Sequence[str]) -> np.ndarray:
    """VADER compound score of each headline, in [-1, +1]."""
    analyzer = _analyzer()
    return np.fromiter((analyzer.polarity_scores(str(h))["compound"] for h in headlines), dtype=np.float64,
                       count=len(headlines))


class VaderScorer:
    """The default scorer: VADER's compound score with :data:`FINANCE_LEXICON`, labelled by :func:`label_of`."""

    name = SCORER_NAME

    def score(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        scores = sentiment_scores(texts)
        return scores, (label_of(scores) if len(scores) else np.zeros(0, dtype=object))


def score_headlines(headlines: pd.DataFrame, scorer: Any = None) -> pd.DataFrame:
    """``headlines`` (with a ``headline`` text column) plus ``score``, ``label``, ``scorer`` (the
    scorer's name) and the event flags; ``scorer`` defaults to :class:`VaderScorer`."""
    if "headline" not in headlines.columns:
        raise ValueError(f"score_headlines needs a 'headline' column (found: {', '.join(map(str, headlines.columns))})")
    scorer = VaderScorer() if scorer is None else scorer
    texts = headlines["headline"].astype(str).tolist()
    out = headlines.drop(columns=[c for c in ("label",) if c in headlines.columns])  # a user's label is not a score
    scores, labels = scorer.score(texts)
    out["score"] = np.asarray(scores, dtype=np.float64)
    out["label"] = pd.Series(labels, index=out.index, dtype=object)
    out["scorer"] = scorer.name
    flags = event_flags(texts)
    flags.index = out.index
    return pd.concat([out, flags], axis=1)
