"""The returns family: multi-horizon return, max-gain and max-loss regressors (1h, 4h, 1d).

Targets come from ``features.labels.multi_horizon_returns`` (``y`` is ``[n, 9]``). Two
estimators: :class:`ReturnsLGBM`, one LightGBM booster per target, and :class:`ReturnsMLP`, a
torch MLP "price predictor" with one head per target. Both export one ONNX graph with one
float32 ``[N, 1]`` output per target, named by the target. The MLP standardizes its inputs and
targets with the training window's mean and std, and the graph undoes the target scaling, so
its outputs are in the labels' units.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import onnx
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from models.families.multi_output import MultiTargetBoosters, checked_fit_inputs
from models.onnx_export import INPUT_NAME

ONNX_OPSET = 17


class ReturnsLGBM(MultiTargetBoosters):
    """One LightGBM booster per return / excursion target."""


def returns_mlp_space(trial: Any) -> dict[str, Any]:
    return {
        "hidden": trial.suggest_categorical("hidden", [32, 64]),
        "learning_rate": trial.suggest_float("learning_rate", 3e-4, 3e-3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-5, 1e-2, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
    }


def _network(n_features: int, n_targets: int, hidden: int, dropout: float) -> Any:
    import torch
    from torch import nn

    class PricePredictor(nn.Module):
        """Standardize, two hidden layers, a linear head per target, un-standardize."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("x_mean", torch.zeros(n_features))
            self.register_buffer("x_std", torch.ones(n_features))
            self.register_buffer("y_mean", torch.zeros(n_targets))
            self.register_buffer("y_std", torch.ones(n_targets))
            self.body = nn.Sequential(nn.Linear(n_features, hidden), nn.GELU(), nn.Dropout(dropout),
                                      nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout),
                                      nn.Linear(hidden, n_targets))

        def standardized(self, x: torch.Tensor) -> torch.Tensor:
            return self.body((x - self.x_mean) / self.x_std)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.standardized(x) * self.y_std + self.y_mean

    return PricePredictor()


def _split_outputs(net: Any) -> Any:
    """The network wrapped so that the exported graph has one ``[N, 1]`` output per target."""
    import torch

    class Split(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.net(x)
            return tuple(out[:, k:k + 1] for k in range(out.shape[1]))

    return Split()


class ReturnsMLP(RegressorMixin, BaseEstimator):
    """Torch MLP on the feature vector; MSE on standardized targets, AdamW, early stop on the last 15% of rows."""

    def __init__(self, hidden: int = 64, learning_rate: float = 1e-3, weight_decay: float = 1e-4,
                 dropout: float = 0.1, epochs: int = 30, batch_size: int = 256, patience: int = 4,
                 random_state: int = 0, n_threads: int = 1, output_names: tuple[str, ...] = ()) -> None:
        self.hidden = hidden
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.patience = patience
        self.random_state = random_state
        self.n_threads = n_threads
        self.output_names = output_names

    def fit(self, X: np.ndarray, y: np.ndarray) -> "ReturnsMLP":
        import torch

        X, y = checked_fit_inputs(X, y, self.output_names)
        if len(X) < 50:
            raise ValueError(f"ReturnsMLP needs at least 50 rows, got {len(X)}")
        threads = torch.get_num_threads()
        torch.set_num_threads(self.n_threads)
        try:
            torch.manual_seed(self.random_state)
            rng = np.random.default_rng(self.random_state)
            n_fit = int(len(X) * 0.85)  # the last 15% (later in time) stops the training
            x_mean, x_std = X[:n_fit].mean(axis=0), X[:n_fit].std(axis=0)
            y_mean, y_std = y[:n_fit].mean(axis=0), y[:n_fit].std(axis=0)
            net = _network(X.shape[1], y.shape[1], self.hidden, self.dropout)
            with torch.no_grad():
                net.x_mean.copy_(torch.as_tensor(x_mean))
                net.x_std.copy_(torch.as_tensor(np.where(x_std > 1e-12, x_std, 1.0), dtype=torch.float32))
                net.y_mean.copy_(torch.as_tensor(y_mean, dtype=torch.float32))
                net.y_std.copy_(torch.as_tensor(np.where(y_std > 1e-12, y_std, 1.0), dtype=torch.float32))
            target = ((y - y_mean) / np.where(y_std > 1e-12, y_std, 1.0)).astype(np.float32)
            x_all, t_all = torch.from_numpy(X), torch.from_numpy(target)
            optimizer = torch.optim.AdamW(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
            best, best_state, stale = np.inf, None, 0
            for _ in range(self.epochs):
                net.train()
                epoch_order = rng.permutation(n_fit)
                for start in range(0, n_fit, self.batch_size):
                    order = torch.from_numpy(epoch_order[start:start + self.batch_size])
                    optimizer.zero_grad()
                    loss = torch.mean((net.standardized(x_all[order]) - t_all[order]) ** 2)
                    loss.backward()
                    optimizer.step()
                net.eval()
                with torch.no_grad():
                    stop_loss = float(torch.mean((net.standardized(x_all[n_fit:]) - t_all[n_fit:]) ** 2))
                if stop_loss < best - 1e-6:
                    best, stale = stop_loss, 0
                    best_state = {k: v.clone() for k, v in net.state_dict().items()}
                else:
                    stale += 1
                    if stale >= self.patience:
                        break
            if best_state is not None:
                net.load_state_dict(best_state)
            net.eval()
        finally:
            torch.set_num_threads(threads)
        self.net_ = net
        self.n_features_in_ = X.shape[1]
        self.n_targets_ = y.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``[n, n_targets]`` forecasts in the labels' units."""
        import torch

        check_is_fitted(self, "net_")
        X = np.ascontiguousarray(X, dtype=np.float32)
        self.net_.eval()  # no dropout at prediction time
        with torch.no_grad():
            return np.concatenate([self.net_(torch.from_numpy(X[s:s + 8192])).numpy()
                                   for s in range(0, len(X), 8192)]).astype(np.float64)

    def target_names(self) -> tuple[str, ...]:
        check_is_fitted(self, "net_")
        return tuple(self.output_names) or tuple(f"target_{k}" for k in range(self.n_targets_))

    def to_onnx(self) -> onnx.ModelProto:
        """torch.onnx (legacy exporter, opset 17), dynamic batch axis, one output per target."""
        import torch

        check_is_fitted(self, "net_")
        names = list(self.target_names())
        buffer = io.BytesIO()
        # The exporter restores the wrapper's training flag (and its children's) after export: a
        # wrapper in eval mode keeps the fitted network out of dropout afterwards.
        wrapper = _split_outputs(self.net_).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, (torch.zeros(2, self.n_features_in_),), buffer, dynamo=False,
                opset_version=ONNX_OPSET, input_names=[INPUT_NAME], output_names=names,
                dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in names}},
            )
        model = onnx.load_model_from_string(buffer.getvalue())
        onnx.checker.check_model(model)
        return model
