"""``chart_pattern``: a small 1-D CNN that names the multi-bar chart pattern of an OHLCV window.

Input ``X`` is ``[N, window, 5]`` raw OHLCV bars (open, high, low, close, volume; oldest bar
first), e.g. the windows of :mod:`models.families.chart_pattern_generator`. The network
normalizes each window itself, so the ONNX graph takes raw bars:

- prices: ``log(price / last close)`` minus its window mean over the closes, divided by the
  window's log range (max high − min low), so a pattern looks the same at any price level and
  height;
- volume: ``log1p(volume)`` minus its window mean.

Three convolution blocks (Conv1d → ReLU → MaxPool) and one hidden layer feed two heads:

- pattern type: softmax over :data:`PATTERN_NAMES` (``y``, cross-entropy);
- breakout direction: softmax over down / none / up. Its target is the sign of the move that
  follows the window (``forward_return``, passed as ``fit(X, y, forward_return=r)``), and
  ``none`` for windows of class ``none``. Without ``forward_return`` the target is the
  pattern's own direction (:data:`BREAKOUT`), and ``symmetric_triangle`` windows, whose
  breakout follows their lead-in trend, are left out of that head's loss.

ONNX outputs (``torch.onnx.export(..., dynamo=False)``, opset 17, dynamic batch axis):
``pattern_type`` (int64 ``[N]``), ``probabilities`` (float32 ``[N, 12]``), ``confidence``
(the probability of the predicted pattern, ``[N, 1]``), ``breakout_direction`` (−1, 0 or +1
as float32 ``[N, 1]``) and ``breakout_probabilities`` (``[N, 3]``: down, none, up).

Also here: the family's dataset (generated, seeded: :func:`generated_rows`), its naive rules
(:func:`chart_pattern_rules`), its per-class report (:func:`per_class_report`) and the pattern
rates on a market's bars (:func:`pattern_rates`).
"""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Any

import numpy as np
import onnx
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from models.families.chart_pattern_generator import (
    BREAKOUT,
    DIRECTION_NAMES,
    NONE,
    OHLCV,
    PATTERN_NAMES,
    GeneratorConfig,
    generate_patterns,
)
from models.onnx_export import INPUT_NAME

ONNX_OPSET = 17
WINDOW = 100
OUTPUT_NAMES = ("pattern_type", "probabilities", "confidence", "breakout_direction", "breakout_probabilities")
# The platform's dataset: training and holdout samples come from disjoint generator seeds.
TRAIN_SEED, HOLDOUT_SEED = 20_2601, 20_2602
TRAIN_PER_CLASS = 100
SAMPLE_CLOCK_START = pd.Timestamp("2000-01-01", tz="UTC")


def _net(window: int, channels: int, hidden: int, dropout: float) -> Any:
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c = channels
            self.features = nn.Sequential(
                nn.Conv1d(5, c, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
                nn.Conv1d(c, 2 * c, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
                nn.Conv1d(2 * c, 2 * c, 5, padding=2), nn.ReLU(), nn.MaxPool1d(5),
            )
            steps = window // 2 // 2 // 5
            self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(2 * c * steps, hidden), nn.ReLU(),
                                        nn.Dropout(dropout))
            self.pattern = nn.Linear(hidden, len(PATTERN_NAMES))
            self.direction = nn.Linear(hidden, len(DIRECTION_NAMES))

        @staticmethod
        def normalize(x: torch.Tensor) -> torch.Tensor:
            """Raw OHLCV ``[N, T, 5]`` → normalized channels ``[N, 5, T]``."""
            # Prices relative to the last close before the log: float32 keeps their digits.
            prices = torch.log(torch.clamp(x[:, :, :4] / torch.clamp(x[:, -1:, 3:4], min=1e-12), min=1e-12))
            centre = prices[:, :, 3:4].mean(dim=1, keepdim=True)
            spread = prices[:, :, 1].amax(dim=1) - prices[:, :, 2].amin(dim=1)
            prices = (prices - centre) / torch.clamp(spread, min=1e-9).view(-1, 1, 1)
            volume = torch.log1p(torch.clamp(x[:, :, 4:5], min=0.0))
            volume = volume - volume.mean(dim=1, keepdim=True)
            return torch.cat([prices, volume], dim=2).transpose(1, 2)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.hidden(self.features(self.normalize(x)))
            return self.pattern(h), self.direction(h)

    return Net()


def _export_wrapper(net: Any) -> Any:
    import torch
    from torch import nn

    class Export(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            pattern_logits, direction_logits = self.net(x)
            proba = torch.softmax(pattern_logits, dim=1)
            confidence, label = torch.max(proba, dim=1, keepdim=True)
            direction_proba = torch.softmax(direction_logits, dim=1)
            direction = (torch.argmax(direction_proba, dim=1, keepdim=True) - 1).to(torch.float32)
            return label.view(-1), proba, confidence, direction, direction_proba

    return Export().eval()


class ChartPatternCNN(ClassifierMixin, BaseEstimator):
    """1-D CNN over raw OHLCV windows ``[N, window, 5]``: pattern type and breakout direction."""

    def __init__(self, channels: int = 16, hidden: int = 64, dropout: float = 0.1, epochs: int = 8,
                 batch_size: int = 128, learning_rate: float = 5e-3, weight_decay: float = 1e-4,
                 direction_weight: float = 0.5, random_state: int = 0, n_threads: int = 1) -> None:
        self.channels = channels
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.direction_weight = direction_weight
        self.random_state = random_state
        self.n_threads = n_threads

    @staticmethod
    def _check_X(X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 3 or X.shape[2] != len(OHLCV):
            raise ValueError(f"chart_pattern takes OHLCV windows of shape [N, window, 5], got {X.shape}")
        if X.shape[1] % 20:
            raise ValueError(f"the window must be a multiple of 20 bars (the pooling steps), got {X.shape[1]}")
        if not np.isfinite(X).all() or (X[:, :, :4] <= 0).any() or (X[:, :, 4] < 0).any():
            raise ValueError("OHLCV windows must be finite, with positive prices and non-negative volume")
        return X

    def _direction_target(self, y: np.ndarray, forward_return: Any) -> tuple[np.ndarray, np.ndarray]:
        """Direction class (0 down, 1 none, 2 up) per row and a mask of rows that train that head."""
        if forward_return is not None:
            r = np.asarray(forward_return, dtype=np.float64)
            if r.shape != y.shape or not np.isfinite(r).all():
                raise ValueError("forward_return must be a finite 1-D array with one value per window")
            target = np.where(y == NONE, 1, np.where(r > 0, 2, 0))
            return target.astype(np.int64), np.ones(len(y), dtype=bool)
        known = np.array([BREAKOUT[PATTERN_NAMES[k]] for k in y], dtype=object)
        mask = np.array([d is not None for d in known])
        target = np.array([(d if d is not None else 0) + 1 for d in known], dtype=np.int64)
        return target, mask

    def fit(self, X: Any, y: Any, forward_return: Any = None) -> "ChartPatternCNN":
        """Fit on windows ``X`` and pattern indices ``y`` (0..11, :data:`PATTERN_NAMES`);
        ``forward_return`` (optional, one per window) gives the breakout direction's target."""
        import torch

        X = self._check_X(X)
        y = np.asarray(y).astype(np.int64)
        if y.shape != (len(X),) or y.min() < 0 or y.max() >= len(PATTERN_NAMES):
            raise ValueError(f"y must hold one pattern index in [0, {len(PATTERN_NAMES)}) per window")
        direction, direction_mask = self._direction_target(y, forward_return)
        threads = torch.get_num_threads()
        torch.set_num_threads(self.n_threads)
        try:
            torch.manual_seed(self.random_state)
            net = _net(X.shape[1], self.channels, self.hidden, self.dropout)
            optimizer = torch.optim.AdamW(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
            loss_fn = torch.nn.CrossEntropyLoss(reduction="none")
            rng = np.random.default_rng(self.random_state)
            tensors = torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(direction), \
                torch.from_numpy(direction_mask.astype(np.float32))
            net.train()
            for _ in range(self.epochs):
                order = torch.from_numpy(rng.permutation(len(X)))
                for start in range(0, len(X), self.batch_size):
                    idx = order[start:start + self.batch_size]
                    xb, yb, db, mb = (t[idx] for t in tensors)
                    pattern_logits, direction_logits = net(xb)
                    loss = loss_fn(pattern_logits, yb).mean() + self.direction_weight * \
                        (loss_fn(direction_logits, db) * mb).sum() / torch.clamp(mb.sum(), min=1.0)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
            net.eval()
        finally:
            torch.set_num_threads(threads)
        self.net_ = net
        self.classes_ = np.arange(len(PATTERN_NAMES))
        self.window_ = int(X.shape[1])
        self.n_features_in_ = len(OHLCV)
        return self

    def outputs(self, X: Any) -> dict[str, np.ndarray]:
        """Every output by its ONNX name (see the module docstring), computed by torch."""
        import torch

        check_is_fitted(self, "net_")
        X = self._check_X(X)
        if X.shape[1] != self.window_:
            raise ValueError(f"expected windows of {self.window_} bars, got {X.shape[1]}")
        wrapper = _export_wrapper(self.net_)
        parts: list[tuple[np.ndarray, ...]] = []
        with torch.no_grad():
            for start in range(0, len(X), 2048):
                parts.append(tuple(o.numpy() for o in wrapper(torch.from_numpy(X[start:start + 2048]))))
        if not parts:
            empty = (np.empty(0, np.int64), np.empty((0, len(PATTERN_NAMES)), np.float32),
                     np.empty((0, 1), np.float32), np.empty((0, 1), np.float32),
                     np.empty((0, len(DIRECTION_NAMES)), np.float32))
            return dict(zip(OUTPUT_NAMES, empty))
        return {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(OUTPUT_NAMES)}

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.outputs(X)["probabilities"]

    def predict(self, X: Any) -> np.ndarray:
        return self.outputs(X)["pattern_type"]

    def predict_direction(self, X: Any) -> np.ndarray:
        """Breakout direction per window: −1 down, 0 none, +1 up."""
        return self.outputs(X)["breakout_direction"][:, 0].astype(np.int64)

    def to_onnx(self) -> onnx.ModelProto:
        """The graph of :data:`OUTPUT_NAMES` with a dynamic batch axis."""
        import warnings

        import torch

        check_is_fitted(self, "net_")
        wrapper = _export_wrapper(self.net_)
        example = torch.full((2, self.window_, len(OHLCV)), 100.0)
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, (example,), buffer, dynamo=False, opset_version=ONNX_OPSET,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in OUTPUT_NAMES}},
            )
        model = onnx.load_model_from_string(buffer.getvalue())
        onnx.checker.check_model(model)
        return model


# -- the platform's dataset --------------------------------------------------------------


@lru_cache(maxsize=4)
def _generated(n_per_class: int, seed: int, window: int, horizon: int) -> Any:
    return generate_patterns(n_per_class, seed, GeneratorConfig(window=window, horizon=horizon))


def generated_rows(holdout_fraction: float, *, horizon: int = 10, window: int = WINDOW,
                   train_per_class: int = TRAIN_PER_CLASS) -> Any:
    """The spec's rows (:class:`models.specs.SuppliedRows`): generated windows, not market bars.

    ``train_per_class`` samples per pattern from :data:`TRAIN_SEED` train; the holdout has
    ``holdout_fraction / (1 − holdout_fraction)`` times as many, from :data:`HOLDOUT_SEED`
    (other draws of every shape, size and augmentation). ``next_return`` is each window's
    breakout return. Rows are stamped on a sample clock (one minute apart from
    :data:`SAMPLE_CLOCK_START`): ordered and unique, not market times.
    """
    from models.specs import SuppliedRows

    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must lie in (0, 1), got {holdout_fraction}")
    holdout_per_class = max(1, int(round(train_per_class * holdout_fraction / (1.0 - holdout_fraction))))
    train = _generated(train_per_class, TRAIN_SEED, window, horizon)
    holdout = _generated(holdout_per_class, HOLDOUT_SEED, window, horizon)
    n_train, n = len(train), len(train) + len(holdout)
    return SuppliedRows(
        X=np.concatenate([train.windows, holdout.windows]),
        y=np.concatenate([train.pattern, holdout.pattern]),
        feature_names=list(OHLCV),
        next_return=np.concatenate([train.forward_return, holdout.forward_return]),
        index=pd.date_range(SAMPLE_CLOCK_START, periods=n, freq="min"),
        train_idx=np.arange(n_train), holdout_idx=np.arange(n_train, n),
    )


def no_market_label(bars: pd.DataFrame) -> pd.Series:
    """NaN on every bar: chart patterns have ground truth only where they are generated."""
    return pd.Series(np.nan, index=bars.index)


# -- baselines and reports ---------------------------------------------------------------

PATH_POINTS = 20


def normalized_close_path(windows: np.ndarray, points: int = PATH_POINTS) -> np.ndarray:
    """Each window's log close, centred and divided by its log range, averaged into ``points`` steps."""
    windows = np.asarray(windows, dtype=np.float64)
    log_close = np.log(np.maximum(windows[:, :, 3], 1e-12))
    spread = np.log(np.maximum(windows[:, :, 1], 1e-12)).max(axis=1) - \
        np.log(np.maximum(windows[:, :, 2], 1e-12)).min(axis=1)
    path = (log_close - log_close.mean(axis=1, keepdims=True)) / np.maximum(spread, 1e-9)[:, None]
    return np.stack([chunk.mean(axis=1) for chunk in np.array_split(path, points, axis=1)], axis=1)


def chart_pattern_rules(windows: np.ndarray, y: np.ndarray, train_idx: np.ndarray,
                        holdout_idx: np.ndarray) -> dict[str, np.ndarray]:
    """The naive rules: class probabilities on the holdout rows, fitted on the training rows only.

    - ``base_rate``: the training class frequencies on every row;
    - ``nearest_template``: scikit-learn's ``NearestCentroid`` on the normalized close path
      (:func:`normalized_close_path`, 20 points): each class's mean path is its template;
    - ``path_logit``: a multinomial logistic regression on the same 20 points.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import NearestCentroid

    n_classes = len(PATTERN_NAMES)
    y_train = np.asarray(y)[train_idx].astype(int)
    paths = normalized_close_path(windows[np.concatenate([train_idx, holdout_idx])])
    train_paths, hold_paths = paths[:len(train_idx)], paths[len(train_idx):]
    frequencies = np.bincount(y_train, minlength=n_classes) / max(len(y_train), 1)
    out = {"base_rate": np.tile(frequencies, (len(holdout_idx), 1))}

    def all_classes(model: Any) -> np.ndarray:
        full = np.zeros((len(holdout_idx), n_classes))
        full[:, model.classes_.astype(int)] = model.predict_proba(hold_paths)
        return full

    if len(np.unique(y_train)) >= 2:
        out["nearest_template"] = all_classes(NearestCentroid().fit(train_paths, y_train))
        out["path_logit"] = all_classes(LogisticRegression(C=1.0, max_iter=500).fit(train_paths, y_train))
    return out


def per_class_report(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Precision and recall of each pattern (argmax of ``proba``) on the holdout: reported, not gated."""
    from sklearn.metrics import precision_recall_fscore_support

    labels = np.arange(len(PATTERN_NAMES))
    precision, recall, _, support = precision_recall_fscore_support(
        np.asarray(y).astype(int), np.argmax(proba, axis=1), labels=labels, zero_division=0)
    out: dict[str, float] = {}
    for k, name in enumerate(PATTERN_NAMES):
        out[f"precision_{name}"] = float(precision[k])
        out[f"recall_{name}"] = float(recall[k])
        out[f"support_{name}"] = float(support[k])
    return out


def market_windows(bars: pd.DataFrame, window: int = WINDOW, step: int = 1) -> np.ndarray:
    """Sliding OHLCV windows ``[N, window, 5]`` of a bar frame (every ``step``-th window end)."""
    from models.families.sequence import make_windows

    missing = [c for c in OHLCV if c not in bars]
    if missing:
        raise ValueError(f"bars need OHLCV columns; missing {missing}")
    values = bars[list(OHLCV)].to_numpy(dtype=np.float32)
    return np.ascontiguousarray(make_windows(values, window)[::step])


def pattern_rates(pattern_type: np.ndarray, confidence: np.ndarray, min_confidence: float = 0.0
                  ) -> dict[str, float]:
    """Share of windows called each pattern; a call under ``min_confidence`` counts as ``none``."""
    called = np.where(np.asarray(confidence).reshape(-1) >= min_confidence,
                      np.asarray(pattern_type).reshape(-1), NONE)
    counts = np.bincount(called.astype(int), minlength=len(PATTERN_NAMES))
    total = max(int(counts.sum()), 1)
    return {name: float(counts[k] / total) for k, name in enumerate(PATTERN_NAMES)}
