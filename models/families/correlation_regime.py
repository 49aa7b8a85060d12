"""The ``correlation_regime`` family: k-means regimes of a universe's correlation matrix, their change
probability, and the regime expected over the next window.

Inputs are the rows of :func:`features.correlation.correlation_features`: the current window's
summaries (average |ρ|, first-eigenvalue share, dispersion of ρ), the same summaries one window
earlier, and the current average's trailing rank. ``fit`` does three things:

1. **Clusters** the standardized current summaries with scikit-learn's ``KMeans`` (3 clusters).
   The clusters are ordered by their centroid's average |ρ|, highest first, so cluster 0 is
   ``tight``, 1 ``normal`` and 2 ``dispersed``. A row's soft assignment is
   ``softmax(-d²/τ)`` over its squared distances d² to the centroids, with ``τ`` the training
   rows' mean squared distance to their nearest centroid.
2. **Change probability:** the previous window is assigned by the same centroids, and
   ``regime_change_probability = 1 - Σ_k p_k(now) p_k(previous)``: the probability that the two
   windows' regimes, drawn from their soft assignments, differ. A change is *flagged* where it
   rises through ``change_threshold`` (:func:`flag_onsets`).
3. **Forward regime:** a multinomial ``LogisticRegression`` on the soft assignment, the change
   probability, the standardized summaries, the trailing rank r and ``|2r - 1|`` (how extreme
   the rank is, which lets the head express the naive tercile rule) predicts the label, the
   regime of the next window (``features.correlation.forward_correlation_regime``).

Outputs (one ONNX graph, opset 17, hand-built from the fitted arrays: Gather, Sub/Div, the
distance ReduceSumSquare, Softmax, MatMul): ``correlation_regime`` (int64, the expected
regime of the next window), ``probabilities`` ``[N, 3]``, ``average_correlation`` (the current
average |ρ|, clipped to [0, 1]), ``regime_change_probability`` and ``current_regime`` (the
nearest centroid now, as float32), each ``[N, 1]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from features.correlation import REGIME_NAMES, SUMMARIES, SWITCH_EVENT_PREFIX
from models.onnx_export import INPUT_NAME

CHANGE_THRESHOLD = 0.5
ONNX_OPSET = 17


def _role_columns(feature_names: tuple[str, ...] | None, n_features: int) -> dict[str, Any]:
    """Column positions of the current and lagged summaries and the rank, found by their names."""
    if not feature_names:
        raise ValueError("CorrelationRegimeModel needs feature_names (the columns of "
                         "features.correlation.correlation_features)")
    names = list(feature_names)
    if len(names) != n_features:
        raise ValueError(f"{len(names)} feature names for {n_features} columns")

    def find(predicate: Any, what: str) -> int:
        hits = [i for i, n in enumerate(names) if predicate(n)]
        if len(hits) != 1:
            raise ValueError(f"expected one {what} column among {names}, found {len(hits)}")
        return hits[0]

    current = [find(lambda n, s=s: n.startswith(f"xa_{s}_") and "_lag" not in n and "_pct" not in n,
                    f"current {s}") for s in SUMMARIES]
    lagged = [find(lambda n, s=s: n.startswith(f"xa_{s}_") and "_lag" in n, f"lagged {s}") for s in SUMMARIES]
    rank = find(lambda n: n.startswith("xa_avg_abs_corr_") and "_pct" in n, "trailing rank")
    return {"current": current, "lagged": lagged, "rank": rank}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class CorrelationRegimeModel(ClassifierMixin, BaseEstimator):
    """k-means correlation regimes + change probability + forward-regime logistic head (module doc)."""

    def __init__(self, n_init: int = 10, C: float = 1.0, change_threshold: float = CHANGE_THRESHOLD,
                 random_state: int = 0, feature_names: tuple[str, ...] | None = None) -> None:
        self.n_init = n_init
        self.C = C
        self.change_threshold = change_threshold
        self.random_state = random_state
        self.feature_names = feature_names

    # -- fitting --------------------------------------------------------------------------

    def fit(self, X: np.ndarray, y: np.ndarray) -> "CorrelationRegimeModel":
        from sklearn.cluster import KMeans
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits

        X = self._check_X(X)
        y = np.asarray(y).astype(int).reshape(-1)
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} rows and y {len(y)}")
        if len(X) < 30:
            raise ValueError(f"CorrelationRegimeModel needs at least 30 training rows, got {len(X)}")
        if not set(np.unique(y)) <= {0, 1, 2}:
            raise ValueError(f"labels must be regime indices 0, 1, 2 ({', '.join(REGIME_NAMES)})")
        self.columns_ = _role_columns(self.feature_names, X.shape[1])
        current = X[:, self.columns_["current"]].astype(np.float64)
        self.mean_ = current.mean(axis=0)
        self.scale_ = np.where(current.std(axis=0) > 1e-12, current.std(axis=0), 1.0)
        z = (current - self.mean_) / self.scale_
        # One OpenMP thread: on a busy 2-core machine k-means on 3,700 rows took 13 s with the
        # default threads and 0.14 s with one.
        with threadpool_limits(1):
            kmeans = KMeans(n_clusters=3, n_init=self.n_init, random_state=self.random_state).fit(z)
        centroids = kmeans.cluster_centers_
        order = np.argsort(-(centroids[:, 0] * self.scale_[0] + self.mean_[0]))  # highest average |ρ| first
        self.centroids_ = centroids[order]
        d2 = self._squared_distances(z)
        self.temperature_ = float(max(d2.min(axis=1).mean(), 1e-6))
        self.kmeans_inertia_ = float(kmeans.inertia_)
        head = LogisticRegression(C=self.C, max_iter=2000)
        head.fit(self._head_inputs(X), y)
        coef = np.zeros((3, head.coef_.shape[1]))
        intercept = np.full(3, -1e3)  # a class never seen in training gets probability ~0
        classes = head.classes_.astype(int)
        if len(classes) == 2:  # binary LogisticRegression: one coefficient row for classes[1]
            coef[classes[1]], intercept[classes[1]] = head.coef_[0], head.intercept_[0]
            coef[classes[0]], intercept[classes[0]] = 0.0, 0.0
        else:
            coef[classes], intercept[classes] = head.coef_, head.intercept_
        self.head_coef_, self.head_intercept_ = coef, intercept
        self.classes_ = np.arange(3)
        self.n_features_in_ = X.shape[1]
        return self

    # -- outputs --------------------------------------------------------------------------

    def _check_X(self, X: Any) -> np.ndarray:
        X = np.asarray(X.to_numpy() if isinstance(X, pd.DataFrame) else X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D [rows, features], got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("X has NaN or infinite values; drop the warm-up rows first")
        return X

    def _squared_distances(self, z: np.ndarray) -> np.ndarray:
        return ((z[:, None, :] - self.centroids_[None, :, :]) ** 2).sum(axis=2)

    def _soft(self, X: np.ndarray, role: str) -> tuple[np.ndarray, np.ndarray]:
        z = (X[:, self.columns_[role]] - self.mean_) / self.scale_
        d2 = self._squared_distances(z)
        return _softmax(-d2 / self.temperature_), d2

    def _head_inputs(self, X: np.ndarray) -> np.ndarray:
        now, _ = self._soft(X, "current")
        before, _ = self._soft(X, "lagged")
        change = 1.0 - (now * before).sum(axis=1, keepdims=True)
        z = (X[:, self.columns_["current"]] - self.mean_) / self.scale_
        rank = X[:, [self.columns_["rank"]]]
        return np.hstack([now, change, z, rank, np.abs(2.0 * rank - 1.0)])

    def predict_proba(self, X: Any) -> np.ndarray:
        """P(regime of the next window = tight, normal, dispersed)."""
        check_is_fitted(self, "centroids_")
        X = self._check_X(X)
        return _softmax(self._head_inputs(X) @ self.head_coef_.T + self.head_intercept_)

    def predict(self, X: Any) -> np.ndarray:
        return np.argmax(self.predict_proba(X), axis=1)

    def current_regime(self, X: Any) -> np.ndarray:
        """Index of the nearest centroid of the current window (0 tight, 1 normal, 2 dispersed)."""
        check_is_fitted(self, "centroids_")
        return np.argmin(self._soft(self._check_X(X), "current")[1], axis=1)

    def change_probability(self, X: Any) -> np.ndarray:
        """``1 - Σ_k p_k(now) p_k(one window earlier)``."""
        check_is_fitted(self, "centroids_")
        X = self._check_X(X)
        return 1.0 - (self._soft(X, "current")[0] * self._soft(X, "lagged")[0]).sum(axis=1)

    def average_correlation(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "centroids_")
        return np.clip(self._check_X(X)[:, self.columns_["current"][0]], 0.0, 1.0)

    # -- ONNX -----------------------------------------------------------------------------

    def to_onnx(self) -> Any:
        """One graph with the outputs of the module doc; float32 arithmetic, parity within ~1e-6."""
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        check_is_fitted(self, "centroids_")
        f32 = np.float32

        def const(name: str, value: Any, dtype: Any = f32) -> Any:
            return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

        inits = [
            const("current_idx", self.columns_["current"], np.int64),
            const("lagged_idx", self.columns_["lagged"], np.int64),
            const("rank_idx", [self.columns_["rank"]], np.int64),
            const("avg_idx", [self.columns_["current"][0]], np.int64),
            const("mean", self.mean_), const("scale", self.scale_),
            const("centroids", self.centroids_[None, :, :]),  # [1, 3, 3]
            const("neg_inv_temperature", -1.0 / self.temperature_),
            const("one", 1.0), const("two", 2.0), const("zero", 0.0), const("axis1", [1], np.int64),
            const("head_coef_t", self.head_coef_.T), const("head_intercept", self.head_intercept_),
        ]
        nodes = []
        for role in ("current", "lagged"):
            nodes += [
                helper.make_node("Gather", [INPUT_NAME, f"{role}_idx"], [f"{role}_raw"], axis=1),
                helper.make_node("Sub", [f"{role}_raw", "mean"], [f"{role}_centred"]),
                helper.make_node("Div", [f"{role}_centred", "scale"], [f"{role}_z"]),
                helper.make_node("Unsqueeze", [f"{role}_z", "axis1"], [f"{role}_z3"]),  # [N, 1, 3]
                helper.make_node("Sub", [f"{role}_z3", "centroids"], [f"{role}_diff"]),  # [N, 3, 3]
                helper.make_node("ReduceSumSquare", [f"{role}_diff"], [f"{role}_d2"], axes=[2], keepdims=0),
                helper.make_node("Mul", [f"{role}_d2", "neg_inv_temperature"], [f"{role}_logits"]),
                helper.make_node("Softmax", [f"{role}_logits"], [f"{role}_p"], axis=1),
            ]
        nodes += [
            helper.make_node("Mul", ["current_p", "lagged_p"], ["same_regime_terms"]),
            helper.make_node("ReduceSum", ["same_regime_terms", "axis1"], ["same_regime"], keepdims=1),
            helper.make_node("Sub", ["one", "same_regime"], ["regime_change_probability"]),
            helper.make_node("Gather", [INPUT_NAME, "rank_idx"], ["rank"], axis=1),
            helper.make_node("Mul", ["rank", "two"], ["rank_doubled"]),
            helper.make_node("Sub", ["rank_doubled", "one"], ["rank_centred"]),
            helper.make_node("Abs", ["rank_centred"], ["rank_extremity"]),
            helper.make_node("Concat", ["current_p", "regime_change_probability", "current_z", "rank",
                                        "rank_extremity"], ["head_inputs"], axis=1),
            helper.make_node("MatMul", ["head_inputs", "head_coef_t"], ["head_linear"]),
            helper.make_node("Add", ["head_linear", "head_intercept"], ["head_logits"]),
            helper.make_node("Softmax", ["head_logits"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["probabilities"], ["correlation_regime"], axis=1, keepdims=0),
            helper.make_node("ArgMin", ["current_d2"], ["current_regime_index"], axis=1, keepdims=1),
            helper.make_node("Cast", ["current_regime_index"], ["current_regime"], to=TensorProto.FLOAT),
            helper.make_node("Gather", [INPUT_NAME, "avg_idx"], ["average_raw"], axis=1),
            helper.make_node("Clip", ["average_raw", "zero", "one"], ["average_correlation"]),
        ]
        n = self.n_features_in_
        graph = helper.make_graph(
            nodes, "correlation_regime",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", n])],
            [helper.make_tensor_value_info("correlation_regime", TensorProto.INT64, ["N"]),
             helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3]),
             helper.make_tensor_value_info("average_correlation", TensorProto.FLOAT, ["N", 1]),
             helper.make_tensor_value_info("regime_change_probability", TensorProto.FLOAT, ["N", 1]),
             helper.make_tensor_value_info("current_regime", TensorProto.FLOAT, ["N", 1])],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                                  producer_name="alphaops.correlation_regime")
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def correlation_regime_space(trial: Any) -> dict[str, Any]:
    """The head's regularization is the only searched parameter (k-means has no free one here)."""
    return {"C": trial.suggest_float("C", 0.01, 10.0, log=True)}


# -- detection of recorded switches ------------------------------------------------------


def flag_onsets(change_probability: np.ndarray, threshold: float = CHANGE_THRESHOLD,
                refractory: int = 0) -> np.ndarray:
    """Positions where the change probability rises through ``threshold`` (a flagged change).

    A rise within ``refractory`` rows after the previous flag is the same change, not a new one.
    """
    p = np.asarray(change_probability, dtype=float).reshape(-1)
    above = p >= threshold
    rises = np.flatnonzero(above & ~np.concatenate([[False], above[:-1]]))
    kept: list[int] = []
    for r in rises:
        if not kept or r - kept[-1] > refractory:
            kept.append(int(r))
    return np.asarray(kept, dtype=int)


def detection_scores(index: pd.DatetimeIndex, change_probability: np.ndarray, switch_times: pd.DatetimeIndex,
                     *, detection_bars: int, refractory: int, threshold: float = CHANGE_THRESHOLD
                     ) -> dict[str, float]:
    """How the flagged changes match recorded regime switches on the rows of ``index``.

    Flags are :func:`flag_onsets` with ``refractory`` rows (the correlation window: one switch
    keeps the two windows apart for about that long). A switch at row s is detected if a flag
    lies in rows s..s + ``detection_bars``. A flag that
    lies in no switch's detection window is a false alarm. Returns ``detection_rate`` (detected
    switches / switches), ``false_alarms``, ``false_alarm_rate`` (false alarms per 1,000 rows),
    ``false_alarm_share`` (false alarms / flags), ``n_switches``, ``n_flags`` and the median
    detection delay in rows. Only switches whose whole detection window lies in ``index`` count.
    """
    index = pd.DatetimeIndex(index)
    flags = flag_onsets(change_probability, threshold, refractory=refractory)
    positions = index.searchsorted(pd.DatetimeIndex(switch_times))
    switches = positions[(positions > 0) & (positions + detection_bars < len(index))]
    delays, matched = [], np.zeros(len(flags), dtype=bool)
    for s in switches:
        hits = np.flatnonzero((flags >= s) & (flags <= s + detection_bars))
        matched[hits] = True
        if len(hits):
            delays.append(int(flags[hits[0]] - s))
    # Flags inside the window of a switch that the count left out (at the edges) are not false alarms.
    for s in positions:
        matched |= (flags >= s) & (flags <= s + detection_bars)
    false_alarms = int((~matched).sum())
    return {
        "n_switches": float(len(switches)), "n_flags": float(len(flags)),
        "detection_rate": float(len(delays) / len(switches)) if len(switches) else float("nan"),
        "false_alarms": float(false_alarms),
        "false_alarm_rate": 1000.0 * false_alarms / max(len(index), 1),
        "false_alarm_share": false_alarms / len(flags) if len(flags) else 0.0,
        "median_delay_bars": float(np.median(delays)) if delays else float("nan"),
    }


def detection_window(correlation_window: int) -> int:
    """Rows after a switch within which a flag counts as its detection: 1.5 correlation windows
    (the current window is wholly in the new regime one window after the switch)."""
    return int(round(1.5 * correlation_window))


def switch_checks(spec: Any, index: pd.DatetimeIndex, outputs: dict[str, np.ndarray],
                  events: pd.DataFrame) -> dict[str, float]:
    """The spec's holdout check: :func:`detection_scores` of the bundle's ``regime_change_probability``
    against the recorded switches among ``events`` (none recorded: no metrics, the gate is skipped)."""
    if events is None or events.empty:
        return {}
    switches = events[events["type"].astype(str).str.startswith(SWITCH_EVENT_PREFIX)]
    if switches.empty:
        return {}
    window = int(spec.schema_extras["correlation_window"])
    threshold = float(spec.schema_extras["thresholds"]["regime_change"])
    scores = detection_scores(index, np.asarray(outputs["regime_change_probability"]).reshape(-1),
                              pd.DatetimeIndex(switches["ts"]), detection_bars=detection_window(window),
                              refractory=window, threshold=threshold)
    if not scores["n_switches"]:
        return {}
    return {f"switch_{k}": v for k, v in scores.items()} | {"switch_detection_window_bars": float(detection_window(window))}
