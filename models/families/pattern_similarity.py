"""``pattern_similarity``: an autoencoder embeds windows of feature vectors; the outcomes of the
nearest past windows vote.

Input ``X`` has shape ``[N, window, n_features]`` like the sequence family's
(:func:`models.families.sequence.make_windows`). :meth:`PatternSimilarityModel.fit`:

1. standardizes each feature with its training mean and standard deviation and clips the
   result to ``±clip`` (buffers of the network, so the ONNX graph takes raw features);
2. trains a torch MLP autoencoder (flattened window → ``hidden_size`` → ``embedding_dim`` →
   ``hidden_size`` → window) on the reconstruction error (MSE) plus ``outcome_weight`` times the
   cross-entropy of a linear outcome head on the bottleneck (a supervised autoencoder: without
   it the bottleneck keeps what varies most, volatility, not what tells outcomes apart); the
   embedding is the bottleneck scaled to unit length, so the cosine similarity of two windows
   is the dot product of their embeddings;
3. keeps a library of at most ``library_size`` training windows (evenly spaced over the training
   rows), as their embeddings and their outcome classes ``y``.

``predict_proba`` of a window is the share of each class among the outcomes of its ``k`` most
similar library windows (cosine); the outcome head is dropped after training.

ONNX (``torch.onnx.export(..., dynamo=False)``, opset 17, dynamic batch axis): the encoder, then
``MatMul`` against the library, ``TopK``, ``Gather`` of the outcomes' one-hot rows and their mean.
Outputs ``label`` (int64 ``[N]``), ``probabilities`` (float32 ``[N, n_classes]``) and
``embedding`` (float32 ``[N, embedding_dim]``). :meth:`PatternSimilarityModel.bundle_schema`
puts the same library into ``schema.json`` (``pattern_library``: embeddings and outcomes as
base64 ``.npy``), where ``serving.patterns`` searches it with numpy to answer ``similar(window, k)``.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import onnx
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from models.onnx_export import INPUT_NAME

ONNX_OPSET = 17
EMBEDDING_OUTPUT = "embedding"


def _autoencoder(n_inputs: int, hidden: int, dim: int, n_classes: int) -> Any:
    import torch
    from torch import nn

    class AutoEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(n_inputs, hidden), nn.GELU(), nn.Linear(hidden, dim))
            self.decoder = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, n_inputs))
            self.outcome = nn.Linear(dim, n_classes)

        def forward(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            code = self.encoder(flat)
            return self.decoder(code), self.outcome(code)

    return AutoEncoder()


def _scorer(encoder: Any, mean: np.ndarray, std: np.ndarray, clip: float, library: np.ndarray,
            onehot: np.ndarray, k: int) -> Any:
    """The torch module that serving runs (exported as is): raw windows → label, votes, embedding."""
    import torch
    from torch import nn

    class PatternScorer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
            self.register_buffer("library", torch.as_tensor(library, dtype=torch.float32).T.contiguous())
            self.register_buffer("onehot", torch.as_tensor(onehot, dtype=torch.float32))
            self.clip = float(clip)
            self.k = int(k)

        def embed(self, x: torch.Tensor) -> torch.Tensor:
            z = torch.clamp((x - self.mean) / self.std, -self.clip, self.clip)
            e = self.encoder(z.flatten(1))
            return e / torch.clamp(torch.linalg.vector_norm(e, dim=1, keepdim=True), min=1e-12)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            e = self.embed(x)
            _, nearest = torch.topk(e @ self.library, self.k, dim=1)
            votes = self.onehot[nearest].mean(dim=1)
            return torch.argmax(votes, dim=1), votes, e

    return PatternScorer().eval()


class PatternSimilarityModel(ClassifierMixin, BaseEstimator):
    """Autoencoder embeddings of ``[N, window, F]`` windows and a k-nearest-neighbour vote of outcomes."""

    def __init__(self, embedding_dim: int = 64, hidden_size: int = 64, k: int = 50, library_size: int = 4096,
                 outcome_weight: float = 1.0, epochs: int = 10, batch_size: int = 128, learning_rate: float = 2e-3,
                 weight_decay: float = 1e-4, clip: float = 5.0, random_state: int = 0, n_threads: int = 1) -> None:
        self.embedding_dim = embedding_dim
        self.outcome_weight = outcome_weight
        self.hidden_size = hidden_size
        self.k = k
        self.library_size = library_size
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.clip = clip
        self.random_state = random_state
        self.n_threads = n_threads

    @staticmethod
    def _check_X(X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 3:
            raise ValueError(f"pattern models take X of shape [N, window, n_features], got {X.shape}")
        return X

    def fit(self, X: Any, y: Any, forward_return: Any = None) -> PatternSimilarityModel:
        """Train the autoencoder on ``X`` and keep the library of embedded windows with their classes ``y``.

        ``forward_return`` is accepted (the train step passes it to window models) and not used."""
        import torch

        X = self._check_X(X)
        y = np.asarray(y)
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} windows but y has {len(y)} labels")
        if not np.isfinite(X).all():
            raise ValueError("X holds NaN or infinite values; pattern windows must be finite")
        if self.k < 1 or self.library_size < self.k:
            raise ValueError(f"need 1 <= k <= library_size, got k={self.k}, library_size={self.library_size}")
        if len(X) < self.k:
            raise ValueError(f"need at least k={self.k} training windows, got {len(X)}")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"outcomes need at least two classes, got {self.classes_.tolist()}")
        _, window, n_features = X.shape
        flat = X.reshape(-1, n_features)
        mean = flat.mean(axis=0, dtype=np.float64)
        std = flat.std(axis=0, dtype=np.float64)
        std = np.where(std > 1e-12, std, 1.0)

        threads = torch.get_num_threads()
        torch.set_num_threads(self.n_threads)
        try:
            torch.manual_seed(self.random_state)
            net = _autoencoder(window * n_features, self.hidden_size, self.embedding_dim, len(self.classes_))
            target = torch.from_numpy(np.searchsorted(self.classes_, y).astype(np.int64))
            inputs = torch.from_numpy(np.clip((X - mean.astype(np.float32)) / std.astype(np.float32),
                                              -self.clip, self.clip).reshape(len(X), -1).astype(np.float32))
            optimizer = torch.optim.AdamW(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
            rng = np.random.default_rng(self.random_state)
            net.train()
            losses = []
            for _ in range(self.epochs):
                order = torch.from_numpy(rng.permutation(len(X)))
                total = 0.0
                for start in range(0, len(X), self.batch_size):
                    rows = order[start:start + self.batch_size]
                    batch = inputs[rows]
                    reconstruction, logits = net(batch)
                    loss = torch.mean((reconstruction - batch) ** 2)
                    if self.outcome_weight:
                        loss = loss + self.outcome_weight * torch.nn.functional.cross_entropy(logits, target[rows])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * len(batch)
                losses.append(total / len(X))
            net.eval()
            rows = np.unique(np.linspace(0, len(X) - 1, min(self.library_size, len(X))).round().astype(int))
            self.library_rows_ = rows
            outcomes = np.searchsorted(self.classes_, y[rows])
            onehot = np.eye(len(self.classes_), dtype=np.float32)[outcomes]
            identity = np.zeros((len(rows), self.embedding_dim), dtype=np.float32)
            scorer = _scorer(net.encoder, mean.reshape(1, 1, -1), std.reshape(1, 1, -1), self.clip, identity,
                             onehot, self.k)
            with torch.no_grad():
                library = np.concatenate([scorer.embed(torch.from_numpy(np.ascontiguousarray(X[rows[s:s + 4096]])))
                                          .numpy() for s in range(0, len(rows), 4096)])
            self.scorer_ = _scorer(net.encoder, mean.reshape(1, 1, -1), std.reshape(1, 1, -1), self.clip, library,
                                   onehot, self.k)
        finally:
            torch.set_num_threads(threads)
        self.library_embeddings_ = library.astype(np.float32)
        self.library_outcomes_ = outcomes.astype(np.int64)
        self.train_loss_ = np.asarray(losses)
        self.window_ = window
        self.n_features_in_ = n_features
        return self

    def _run(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        import torch

        check_is_fitted(self, "scorer_")
        X = self._check_X(X)
        if X.shape[1:] != (self.window_, self.n_features_in_):
            raise ValueError(f"expected windows of shape [{self.window_}, {self.n_features_in_}], got {X.shape[1:]}")
        votes, embeddings = [], []
        with torch.no_grad():
            for start in range(0, len(X), 4096):
                _, vote, embedding = self.scorer_(torch.from_numpy(np.ascontiguousarray(X[start:start + 4096])))
                votes.append(vote.numpy())
                embeddings.append(embedding.numpy())
        if not votes:
            return (np.empty((0, len(self.classes_)), dtype=np.float32),
                    np.empty((0, self.embedding_dim), dtype=np.float32))
        return np.concatenate(votes), np.concatenate(embeddings)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Share of each class among the outcomes of the ``k`` most similar library windows."""
        return self._run(X)[0]

    def predict(self, X: Any) -> np.ndarray:
        proba = self.predict_proba(X)  # raises NotFittedError first when unfitted
        return self.classes_[np.argmax(proba, axis=1)]

    def embed(self, X: Any) -> np.ndarray:
        """Unit-length embeddings ``[N, embedding_dim]`` of the windows."""
        return self._run(X)[1]

    def bundle_schema(self) -> dict[str, Any]:
        """``schema.json``'s ``pattern_library``: what ``serving.patterns`` searches with numpy (with an
        IVF index from ``models.pattern_index`` when the library is large)."""
        from models.pattern_index import library_doc

        check_is_fitted(self, "scorer_")
        return {"pattern_library": library_doc(self.library_embeddings_, self.classes_[self.library_outcomes_],
                                               self.classes_, k=self.k, embedding_output=EMBEDDING_OUTPUT,
                                               seed=self.random_state)}

    def to_onnx(self) -> onnx.ModelProto:
        """Outputs ``label`` (int64 ``[N]``), ``probabilities`` (``[N, C]``), ``embedding`` (``[N, dim]``)."""
        import warnings

        import torch

        check_is_fitted(self, "scorer_")
        example = torch.zeros(2, self.window_, self.n_features_in_)
        names = ["label", "probabilities", EMBEDDING_OUTPUT]
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                self.scorer_, (example,), buffer, dynamo=False, opset_version=ONNX_OPSET,
                input_names=[INPUT_NAME], output_names=names,
                dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in names}},
            )
        model = onnx.load_model_from_string(buffer.getvalue())
        onnx.checker.check_model(model)
        return model


def pattern_space(trial: Any) -> dict[str, Any]:
    """Optuna search space: embedding size, number of voting neighbours, training length."""
    return {
        "embedding_dim": trial.suggest_categorical("embedding_dim", [64, 128]),
        "k": trial.suggest_categorical("k", [25, 50, 100]),
        "epochs": trial.suggest_int("epochs", 6, 12),
    }
