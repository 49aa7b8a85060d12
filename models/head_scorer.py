"""The sentiment head at run time: a trained MiniLM head scores headlines with onnxruntime.

A head (trained by :mod:`models.sentiment_head`, ``alphaops sentiment train-head``) is one
directory under :func:`heads_root`::

    heads/<version>/model.onnx      encoder + mean pooling + head, one graph
                                    (inputs input_ids, attention_mask int64 [N, T];
                                     outputs score float32 [N, 1] in [-1, +1], probabilities [N, 5])
    heads/<version>/tokenizer.json  the encoder's WordPiece tokenizer, padding and truncation set
    heads/<version>/head.json       scorer name, labels, max_length, the evaluation that adopted it
    heads/current.json              {"version": ...}: the head ``ALPHAOPS_NEWS_SCORER=minilm`` uses

Running a head needs only ``tokenizers`` and ``onnxruntime`` (no torch, no download).
``tokenizers`` comes with the optional ``text`` extra (``pip install 'alphaops[text]'``).

**A missing or broken head refuses, it does not fall back.** With ``news_scorer = "minilm"``,
:func:`scorer_for` raises :class:`SentimentHeadError` (naming the command that trains a head,
or the file that is wrong) instead of scoring with VADER: the news features would otherwise
say one scorer while holding another's scores. ``ALPHAOPS_NEWS_SCORER=vader`` (the default)
needs none of this.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.text_sentiment import LABELS

if TYPE_CHECKING:
    from pipelines.config import Settings

TEXT_EXTRA = "text"
INSTALL_HINT = f"pip install 'alphaops[{TEXT_EXTRA}]'"
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAMES = ("score", "probabilities")
HEAD_FILES = ("model.onnx", "tokenizer.json", "head.json")
SCORE_BATCH = 64


class SentimentHeadError(RuntimeError):
    """No usable sentiment head: the extra is missing, no head was adopted, or its files are wrong."""


def heads_root(settings: "Settings") -> Path:
    """Where the scope's heads live: ``$ALPHAOPS_HOME/sentiment/<scope>/heads``."""
    return settings.home_dir / "sentiment" / settings.scope / "heads"


def current_head_dir(settings: "Settings") -> Path:
    """The adopted head's directory (``heads/current.json``); :class:`SentimentHeadError` if none."""
    pointer = heads_root(settings) / "current.json"
    if not pointer.exists():
        raise SentimentHeadError(
            f"ALPHAOPS_NEWS_SCORER=minilm but no sentiment head was adopted for scope {settings.scope!r}: ingest "
            "labelled headlines (a label column, alphaops ingest FILE --kind news), then run "
            "`alphaops sentiment train-head`; or set ALPHAOPS_NEWS_SCORER=vader")
    try:
        version = str(json.loads(pointer.read_text())["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SentimentHeadError(f"{pointer} is not a head pointer ({exc}); train the head again") from exc
    return heads_root(settings) / version


def import_tokenizers() -> Any:
    """The ``tokenizers`` module, or :class:`SentimentHeadError` naming the extra."""
    try:
        import tokenizers
    except ImportError as exc:
        raise SentimentHeadError(f"the MiniLM sentiment scorer needs the optional '{TEXT_EXTRA}' extra "
                                 f"({exc.name} is not installed): {INSTALL_HINT}; "
                                 "or set ALPHAOPS_NEWS_SCORER=vader") from exc
    return tokenizers


def encode(tokenizer: Any, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``input_ids`` and ``attention_mask`` (int64 [N, T], padded to the longest text) of ``texts``."""
    encodings = tokenizer.encode_batch([str(t) for t in texts])
    ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
    mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
    return ids, mask


class HeadScorer:
    """Scores headlines with an adopted head (see the module doc); ``name`` is its scorer name."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        missing = [f for f in HEAD_FILES if not (self.directory / f).is_file()]
        if missing:
            raise SentimentHeadError(f"sentiment head {self.directory.name!r} lacks {', '.join(missing)} "
                                     f"(in {self.directory}); train the head again (alphaops sentiment train-head)")
        try:
            self.card: dict[str, Any] = json.loads((self.directory / "head.json").read_text())
            self.name = str(self.card["scorer"])
            labels = tuple(self.card["labels"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SentimentHeadError(f"{self.directory / 'head.json'} is not a head card ({exc})") from exc
        if labels != LABELS:
            raise SentimentHeadError(f"head {self.name} has labels {labels}, expected {LABELS}")
        tokenizers = import_tokenizers()
        import onnxruntime as ort

        try:
            self.tokenizer = tokenizers.Tokenizer.from_file(str(self.directory / "tokenizer.json"))
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self.session = ort.InferenceSession(str(self.directory / "model.onnx"), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime and tokenizers raise their own types; name the head
            raise SentimentHeadError(f"sentiment head {self.name} cannot be loaded from {self.directory}: "
                                     f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
        inputs = tuple(i.name for i in self.session.get_inputs())
        outputs = tuple(o.name for o in self.session.get_outputs())
        if inputs != INPUT_NAMES or outputs != OUTPUT_NAMES:
            raise SentimentHeadError(f"sentiment head {self.name}: graph has inputs {inputs} and outputs {outputs}, "
                                     f"expected {INPUT_NAMES} and {OUTPUT_NAMES}")

    def run(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Score (float64 [N], in [-1, +1]) and label probabilities (float64 [N, 5]) of each text."""
        scores, probabilities = [np.zeros(0)], [np.zeros((0, len(LABELS)))]
        for start in range(0, len(texts), SCORE_BATCH):
            ids, mask = encode(self.tokenizer, texts[start:start + SCORE_BATCH])
            score, probs = self.session.run(list(OUTPUT_NAMES), {"input_ids": ids, "attention_mask": mask})
            scores.append(np.asarray(score, dtype=np.float64).reshape(-1))
            probabilities.append(np.asarray(probs, dtype=np.float64))
        return np.clip(np.concatenate(scores), -1.0, 1.0), np.concatenate(probabilities)

    def score(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Score and label of each text; the label is the most probable of the five."""
        scores, probabilities = self.run(texts)
        labels = np.asarray(LABELS, dtype=object)[probabilities.argmax(axis=1)] if len(texts) else \
            np.zeros(0, dtype=object)
        return scores, labels


def scorer_for(settings: "Settings") -> Any:
    """The headline scorer ``settings.news_scorer`` names: VADER, or the adopted MiniLM head."""
    from models.text_sentiment import VaderScorer

    if settings.news_scorer == "vader":
        return VaderScorer()
    import_tokenizers()  # the extra's message first, before looking for a head
    return HeadScorer(current_head_dir(settings))
