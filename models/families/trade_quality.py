"""``trade_quality``: win probability and expected R-multiple of a trade, from the platform's trade log.

Trade log: :func:`generate_trade_log` runs two simple strategies over bars and records every
trade with its entry-time context (features at the entry bar, side, signal source):

- ``ema_cross``: EMA(20) crosses EMA(50) (sign change of ``ema_cross_20_50``): long on an
  upward cross, short on a downward one.
- ``rsi_reversion``: RSI(14) crosses below 30 (long) or above 70 (short).

Entries fill at the signal bar's close. Exits: a stop ``atr_stop`` ATR(14) away, a target
``atr_target`` ATR away, checked on each later bar's low/high (stop first when a bar touches
both: conservative), else the close ``max_hold`` bars later. Each source holds one position
at a time. ``r_multiple = pnl / initial risk``. The log is deterministic: no randomness.

Model: :class:`TradeQualityModel` fits two LightGBM models on the same rows from one target,
the R-multiple ``y``: a classifier of ``y > 0`` (win) and a regressor of ``y``. ``predict``
returns the expected R, ``predict_proba`` ``[P(loss), P(win)]``. One ONNX graph (two
onnxmltools graphs merged on the shared input) has outputs ``value`` (the expected R-multiple,
float32 ``[N, 1]``; named as the bundle runtime expects a regressor's output) and
``win_prob`` (float32 ``[N, 1]``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from models.families.boosting import booster_kwargs
from models.onnx_export import combine_models, lightgbm_to_onnx

SIGNAL_SOURCES: tuple[str, ...] = ("ema_cross", "rsi_reversion")
TRADE_COLUMNS: tuple[str, ...] = ("entry_ts", "exit_ts", "side", "entry_price", "exit_price", "pnl", "r_multiple",
                                  "signal_source", "exit_reason", "bars_held", "stop_price", "target_price")


def _signals(feats: pd.DataFrame, source: str) -> np.ndarray:
    """+1 long entry, -1 short entry, 0 none, per bar."""
    if source == "ema_cross":
        x = feats["ema_cross_20_50"].to_numpy()
        prev = np.concatenate([[np.nan], x[:-1]])
        return np.where((prev <= 0) & (x > 0), 1, np.where((prev >= 0) & (x < 0), -1, 0))
    if source == "rsi_reversion":
        x = feats["rsi_14"].to_numpy()
        prev = np.concatenate([[np.nan], x[:-1]])
        return np.where((prev >= 30) & (x < 30), 1, np.where((prev <= 70) & (x > 70), -1, 0))
    raise ValueError(f"unknown signal source {source!r}; known: {', '.join(SIGNAL_SOURCES)}")


def generate_trade_log(bars: pd.DataFrame, features: pd.DataFrame | None = None, *, atr_stop: float = 1.5,
                       atr_target: float = 3.0, max_hold: int = 60,
                       sources: tuple[str, ...] = SIGNAL_SOURCES) -> pd.DataFrame:
    """Trades of the sample strategies on ``bars``, one row each, ordered by entry time.

    ``features`` is ``features.compute(bars)`` (computed if None). Columns: ``entry_ts, exit_ts,
    side (+1 long / -1 short), entry_price, exit_price, pnl`` (price units per unit size),
    ``r_multiple, signal_source, exit_reason`` (stop / target / time), ``bars_held,
    stop_price, target_price``, then every feature at the entry bar (the context). Trades
    whose exit would lie beyond the last bar are not recorded.
    """
    if features is None:
        import features as feature_lib

        features = feature_lib.compute(bars)
    features = features.reindex(bars.index)
    close = bars["close"].to_numpy(dtype=float)
    high = bars["high"].to_numpy(dtype=float)
    low = bars["low"].to_numpy(dtype=float)
    atr = features["atr_pct_14"].to_numpy(dtype=float) * close
    values = features.to_numpy(dtype=float)
    used = np.isfinite(values).any(axis=0)  # a column that is never finite (no such data) does not block entries
    finite = np.isfinite(values[:, used]).all(axis=1) & np.isfinite(atr) & (atr > 0)
    n = len(bars)
    rows: list[dict[str, Any]] = []
    for source in sources:
        signal = _signals(features, source)
        free_from = 0
        for t in np.flatnonzero((signal != 0) & finite):
            if t < free_from or t + 1 >= n:
                continue
            side = int(signal[t])
            entry = close[t]
            stop = entry - side * atr_stop * atr[t]
            target = entry + side * atr_target * atr[t]
            end = min(t + max_hold, n - 1)
            if t + max_hold > n - 1:
                break  # the trade could not finish inside the data
            window = slice(t + 1, end + 1)
            hit_stop = (low[window] <= stop) if side > 0 else (high[window] >= stop)
            hit_target = (high[window] >= target) if side > 0 else (low[window] <= target)
            first_stop = int(np.argmax(hit_stop)) if hit_stop.any() else max_hold
            first_target = int(np.argmax(hit_target)) if hit_target.any() else max_hold
            if first_stop <= first_target and first_stop < max_hold:
                k, price, reason = first_stop, stop, "stop"
            elif first_target < max_hold:
                k, price, reason = first_target, target, "target"
            else:
                k, price, reason = end - t - 1, close[end], "time"
            exit_bar = t + 1 + k
            pnl = side * (price - entry)
            rows.append({
                "entry_ts": bars.index[t], "exit_ts": bars.index[exit_bar], "side": side, "entry_price": entry,
                "exit_price": price, "pnl": pnl, "r_multiple": pnl / (atr_stop * atr[t]), "signal_source": source,
                "exit_reason": reason, "bars_held": exit_bar - t, "stop_price": stop, "target_price": target,
                "_bar": t,
            })
            free_from = exit_bar + 1
    if not rows:
        empty = pd.DataFrame(columns=list(TRADE_COLUMNS) + list(features.columns))
        return empty
    log = pd.DataFrame(rows).sort_values(["entry_ts", "signal_source"], kind="stable").reset_index(drop=True)
    context = features.iloc[log.pop("_bar").to_numpy()].reset_index(drop=True)
    return pd.concat([log[list(TRADE_COLUMNS)], context], axis=1)


def trade_matrix(log: pd.DataFrame, feature_names: list[str]) -> np.ndarray:
    """Model input of a trade log: the entry features, then ``side`` and one column per signal source."""
    parts = [log[feature_names].to_numpy(dtype=np.float32), log[["side"]].to_numpy(dtype=np.float32)]
    parts += [(log["signal_source"] == s).to_numpy(dtype=np.float32)[:, None] for s in SIGNAL_SOURCES]
    return np.hstack(parts)


def trade_label(bars: pd.DataFrame) -> pd.Series:
    """Per-bar label for the platform's dataset: the R-multiple of the trade entered at that bar.

    NaN on bars without an entry; when both sources enter on the same bar, the first source
    in :data:`SIGNAL_SOURCES` wins.
    """
    log = generate_trade_log(bars)
    first = log.drop_duplicates("entry_ts", keep="first")
    return pd.Series(first["r_multiple"].to_numpy(dtype=float), index=pd.DatetimeIndex(first["entry_ts"])
                     ).reindex(bars.index)


class TradeQualityModel(RegressorMixin, BaseEstimator):
    """Two LightGBM models on one target ``y`` (R-multiple): win classifier (``y > 0``) and R regressor."""

    def __init__(self, n_estimators: int = 100, learning_rate: float = 0.05, num_leaves: int = 7,
                 min_child_samples: int = 20, subsample: float = 0.8, colsample_bytree: float = 0.7,
                 reg_lambda: float = 1.0, random_state: int = 0, n_jobs: int = 1) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: np.ndarray, y: np.ndarray) -> "TradeQualityModel":
        from lightgbm import LGBMClassifier, LGBMRegressor

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float64)
        win = (y > 0).astype(int)
        if win.min() == win.max():
            raise ValueError("the trade log has only wins or only losses; need both to fit win probability")
        self.classifier_ = LGBMClassifier(**booster_kwargs(self)).fit(X, win)
        self.regressor_ = LGBMRegressor(**booster_kwargs(self)).fit(X, y)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Expected R-multiple."""
        check_is_fitted(self, "regressor_")
        return self.regressor_.predict(np.asarray(X, dtype=np.float32))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``[P(loss), P(win)]`` per row."""
        check_is_fitted(self, "classifier_")
        return self.classifier_.predict_proba(np.asarray(X, dtype=np.float32))

    def win_probability(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X)[:, 1]

    @property
    def feature_importances_(self) -> np.ndarray:
        check_is_fitted(self, "regressor_")
        return self.regressor_.booster_.feature_importance(importance_type="gain")

    def to_onnx(self) -> onnx.ModelProto:
        """Outputs ``value`` (expected R-multiple, float32 ``[N, 1]``) and ``win_prob`` (float32 ``[N, 1]``)."""
        from onnx import TensorProto, helper, numpy_helper

        check_is_fitted(self, "regressor_")
        reg = lightgbm_to_onnx(self.regressor_, self.n_features_in_)
        clf = lightgbm_to_onnx(self.classifier_, self.n_features_in_)
        nodes = [
            helper.make_node("Identity", [f"r/{reg.graph.output[0].name}"], ["value"]),
            helper.make_node("Slice", ["win/probabilities", "one", "two", "one"], ["win_prob"]),
        ]
        one = numpy_helper.from_array(np.array([1], dtype=np.int64), "one")
        two = numpy_helper.from_array(np.array([2], dtype=np.int64), "two")
        return combine_models(
            [("r", reg), ("win", clf)], nodes=nodes, initializers=[one, two],
            outputs=[helper.make_tensor_value_info("value", TensorProto.FLOAT, [None, 1]),
                     helper.make_tensor_value_info("win_prob", TensorProto.FLOAT, [None, 1])],
            name="trade_quality",
        )
