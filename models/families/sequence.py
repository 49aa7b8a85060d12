"""``sequence``: a torch LSTM or small Transformer encoder over windows of feature vectors.

Input ``X`` has shape ``[N, window, n_features]`` (the last row of a window is the bar the
prediction is made at; :func:`make_windows` builds them from a 2-D feature matrix). Two
heads share the encoder:

- direction: ``P(up)`` from a logit (binary cross-entropy on ``y``, the 0/1 direction label);
- expected return: the forward return, trained with MSE on the standardized
  ``forward_return`` when it is passed, ``fit(X, y, forward_return=r)``. Without it the return
  head is not trained: its weights are zeroed and it outputs exactly 0
  (``return_fitted_ = False``), so a bundle never carries an untrained number.

Inputs are standardized inside the network (training mean/std as buffers), so the ONNX graph
takes raw features. ``torch.onnx.export(..., dynamo=False)``, opset 17, dynamic batch axis;
outputs ``label`` (int64 ``[N]``), ``probabilities`` (float32 ``[N, 2]``) and
``expected_return`` (float32 ``[N, 1]``): the classifier outputs of docs/bundle.md plus one
``value`` output. Training is CPU-sized (a few epochs, hidden size 32, ``n_threads`` torch
threads) and deterministic for a ``random_state`` (seeded init and shuffling).
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
ARCHITECTURES = ("lstm", "transformer")


def make_windows(X: np.ndarray, window: int) -> np.ndarray:
    """``[N - window + 1, window, F]`` windows of consecutive rows of ``X`` (a read-only view, no copy).

    Window ``j`` ends at row ``j + window - 1``: align labels with ``y[window - 1:]``.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) < window:
        raise ValueError(f"need a 2-D matrix with at least {window} rows, got shape {X.shape}")
    return np.lib.stride_tricks.sliding_window_view(X, window, axis=0).transpose(0, 2, 1)


def _net(n_features: int, window: int, arch: str, hidden: int, layers: int, heads: int, dropout: float) -> Any:
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.zeros(1, 1, n_features))
            self.register_buffer("std", torch.ones(1, 1, n_features))
            self.register_buffer("ret_mean", torch.zeros(1))
            self.register_buffer("ret_scale", torch.ones(1))
            if arch == "lstm":
                self.encoder = nn.LSTM(n_features, hidden, num_layers=layers, batch_first=True,
                                       dropout=dropout if layers > 1 else 0.0)
            else:
                self.project = nn.Linear(n_features, hidden)
                self.position = nn.Parameter(torch.zeros(1, window, hidden))
                layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout=dropout, batch_first=True)
                self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(hidden, 2)  # [direction logit, standardized return]

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            z = (x - self.mean) / self.std
            if arch == "lstm":
                out, _ = self.encoder(z)
                h = out[:, -1, :]
            else:
                h = self.encoder(self.project(z) + self.position).mean(dim=1)
            o = self.head(self.dropout(h))
            return o[:, 0], o[:, 1:2] * self.ret_scale + self.ret_mean

    return Net()


def _export_wrapper(net: Any) -> Any:
    import torch
    from torch import nn

    class Export(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            logit, ret = self.net(x)
            p = torch.sigmoid(logit)
            proba = torch.stack([1.0 - p, p], dim=1)
            return torch.argmax(proba, dim=1), proba, ret

    return Export().eval()


class SequenceModel(ClassifierMixin, BaseEstimator):
    """LSTM (``arch="lstm"``) or Transformer encoder (``arch="transformer"``) on ``[N, window, F]`` windows."""

    def __init__(self, arch: str = "lstm", hidden_size: int = 32, num_layers: int = 1, n_heads: int = 4,
                 dropout: float = 0.1, epochs: int = 5, batch_size: int = 256, learning_rate: float = 2e-3,
                 weight_decay: float = 1e-4, return_weight: float = 1.0, random_state: int = 0,
                 n_threads: int = 2) -> None:
        self.arch = arch
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.n_heads = n_heads
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.return_weight = return_weight
        self.random_state = random_state
        self.n_threads = n_threads

    def _check_X(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 3:
            raise ValueError(f"sequence models take X of shape [N, window, n_features], got {X.shape}")
        return X

    def fit(self, X: Any, y: Any, forward_return: Any = None) -> "SequenceModel":
        """Fit on windows ``X`` and 0/1 direction labels ``y``; ``forward_return`` (optional, same rows)
        trains the expected-return head."""
        import torch

        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        X = self._check_X(X)
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ValueError(f"direction labels must have two classes, got {self.classes_.tolist()}")
        target = np.searchsorted(self.classes_, y).astype(np.float32)
        ret = None if forward_return is None else np.asarray(forward_return, dtype=np.float64)
        if ret is not None and (ret.shape != (len(X),) or not np.isfinite(ret).all()):
            raise ValueError("forward_return must be a finite 1-D array with one value per row of X")

        threads = torch.get_num_threads()
        torch.set_num_threads(self.n_threads)
        try:
            torch.manual_seed(self.random_state)
            _, window, n_features = X.shape
            net = _net(n_features, window, self.arch, self.hidden_size, self.num_layers, self.n_heads, self.dropout)
            flat = X.reshape(-1, n_features)
            mean = flat.mean(axis=0, dtype=np.float64)
            std = flat.std(axis=0, dtype=np.float64)
            net.mean.copy_(torch.as_tensor(mean, dtype=torch.float32).view(1, 1, -1))
            net.std.copy_(torch.as_tensor(np.where(std > 1e-12, std, 1.0), dtype=torch.float32).view(1, 1, -1))
            ret_std = None
            if ret is not None:
                ret_mean, ret_sd = float(ret.mean()), float(ret.std()) or 1.0
                ret_std = ((ret - ret_mean) / ret_sd).astype(np.float32)
            optimizer = torch.optim.AdamW(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
            bce = torch.nn.BCEWithLogitsLoss()
            rng = np.random.default_rng(self.random_state)
            net.train()
            for _ in range(self.epochs):
                order = rng.permutation(len(X))
                for start in range(0, len(X), self.batch_size):
                    idx = np.sort(order[start:start + self.batch_size])
                    xb = torch.from_numpy(np.ascontiguousarray(X[idx]))
                    logit, ret_pred = net(xb)  # ret_scale = 1, ret_mean = 0 while training
                    loss = bce(logit, torch.from_numpy(target[idx]))
                    if ret_std is not None:
                        ret_error = ret_pred[:, 0] - torch.from_numpy(ret_std[idx])
                        loss = loss + self.return_weight * torch.mean(ret_error ** 2)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
            net.eval()
            with torch.no_grad():
                if ret_std is None:
                    net.head.weight[1].zero_()
                    net.head.bias[1].zero_()
                    net.ret_scale.zero_()
                else:
                    net.ret_mean.fill_(ret_mean)
                    net.ret_scale.fill_(ret_sd)
        finally:
            torch.set_num_threads(threads)
        self.net_ = net
        self.return_fitted_ = ret is not None
        self.window_ = window
        self.n_features_in_ = n_features
        return self

    def _outputs(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        import torch

        check_is_fitted(self, "net_")
        X = self._check_X(X)
        if X.shape[1:] != (self.window_, self.n_features_in_):
            raise ValueError(f"expected windows of shape [{self.window_}, {self.n_features_in_}], got {X.shape[1:]}")
        wrapper = _export_wrapper(self.net_)
        probas, rets = [], []
        with torch.no_grad():
            for start in range(0, len(X), 4096):
                _, proba, ret = wrapper(torch.from_numpy(np.ascontiguousarray(X[start:start + 4096])))
                probas.append(proba.numpy())
                rets.append(ret.numpy())
        if not probas:
            return np.empty((0, 2), dtype=np.float32), np.empty(0, dtype=np.float32)
        return np.concatenate(probas), np.concatenate(rets)[:, 0]

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._outputs(X)[0]

    def predict(self, X: Any) -> np.ndarray:
        proba = self.predict_proba(X)  # raises NotFittedError first when unfitted
        return self.classes_[np.argmax(proba, axis=1)]

    def predict_return(self, X: Any) -> np.ndarray:
        """Expected forward return per row (0 when fitted without ``forward_return``)."""
        return self._outputs(X)[1]

    def to_onnx(self) -> onnx.ModelProto:
        """Outputs ``label`` (int64 ``[N]``), ``probabilities`` (``[N, 2]``), ``expected_return`` (``[N, 1]``)."""
        import warnings

        import torch

        check_is_fitted(self, "net_")
        wrapper = _export_wrapper(self.net_)
        example = torch.zeros(2, self.window_, self.n_features_in_)
        names = ["label", "probabilities", "expected_return"]
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's notes on batch_first LSTM / nested tensors
            torch.onnx.export(
                wrapper, (example,), buffer, dynamo=False, opset_version=ONNX_OPSET,
                input_names=[INPUT_NAME], output_names=names,
                dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in names}},
            )
        model = onnx.load_model_from_string(buffer.getvalue())
        onnx.checker.check_model(model)
        return model
