"""``volatility``: a HAR regression on range volatility, boosted by LightGBM, fitted on QLIKE.

The label is :func:`features.labels.forward_realized_vol` (RMS of the next ``h`` 1-bar
log returns); the spec's primary metric is QLIKE on its square, the realized variance ``RV``.
The model forecasts the log variance in two additive parts:

1. **HAR member** (Corsi 2009, with leverage terms as in Corsi and Renò 2012): a linear
   model of ``log RV`` on the log squared Garman–Klass volatility over 1, 5 and 22 bars
   (``garman_klass_vol_1/5/22``) and on the negative parts of the last 1- and 5-bar returns
   (``ret_1``, ``ret_5``), fitted by a Gamma GLM with log link. The Gamma deviance is QLIKE
   up to constants, so the fit minimises the loss the spec is judged on, and its intercept
   makes ``mean(RV / forecast) = 1`` on the training rows: no retransformation bias, which a
   least-squares fit of ``log RV`` has (``exp E[log RV] < E[RV]``) and must correct after.
   Where the bars carry no range (a single price series: open = high = low = close), the
   member uses the close-to-close ``rv_1/5/22`` instead; where the feature names are not
   known, it is a constant (the training mean).
2. **LightGBM** (objective ``gamma``, i.e. QLIKE again) boosts from the HAR forecast
   (``init_score``) on every feature. ``n_estimators = 0`` leaves the HAR member alone; the
   spec's search space lets the purged CV choose.

``value = max(exp((har + trees) / 2), floor_)``: the forecast volatility in label units. The
whole model is one ONNX graph (Gather, Log, MatMul for the member, the tree ensemble, Exp),
equal to :meth:`predict` within float32 rounding. What was measured, and what did not help,
is in ``docs/families.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from models.families.boosting import booster_kwargs
from models.onnx_export import combine_models, lightgbm_to_onnx

HAR_WINDOWS = (1, 5, 22)
RANGE_INPUTS = tuple(f"garman_klass_vol_{n}" for n in HAR_WINDOWS)
CLOSE_INPUTS = tuple(f"rv_{n}" for n in HAR_WINDOWS)
LEVERAGE_INPUTS = ("ret_1", "ret_5")
# A HAR input is floored at this quantile of its training values before the log (a zero-range bar).
INPUT_FLOOR_QUANTILE = 0.01
# The range inputs are used when at least this share of training rows has a non-zero 1-bar range.
MIN_RANGE_SHARE = 0.5


class VolatilityRegressor(RegressorMixin, BaseEstimator):
    """HAR (Gamma GLM on log range volatility and leverage) + LightGBM ``gamma`` boosting.

    Fitted state: ``har_columns_`` / ``leverage_columns_`` (input positions), ``har_floor_``,
    ``har_coef_`` and ``har_intercept_`` (on the raw inputs: ``eta = coef · z + intercept`` with
    ``z = [2 log max(x, floor), min(ret, 0)]``), ``model_`` (the LGBMRegressor, or None with
    ``n_estimators = 0``) and ``floor_``. ONNX output ``value`` (float32 ``[N, 1]``) is the
    forecast in label units.
    """

    def __init__(self, n_estimators: int = 50, learning_rate: float = 0.02, num_leaves: int = 7,
                 min_child_samples: int = 200, subsample: float = 0.8, colsample_bytree: float = 0.7,
                 reg_lambda: float = 1.0, har_alpha: float = 0.0, random_state: int = 0, n_jobs: int = 1,
                 feature_names: tuple[str, ...] = ()) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.har_alpha = har_alpha
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.feature_names = feature_names

    # -- the HAR member ------------------------------------------------------------------

    def _har_inputs(self, X: np.ndarray) -> tuple[list[int], list[int]]:
        """Positions of the member's volatility and leverage inputs ([] where the names are unknown)."""
        names = list(self.feature_names)
        if not names:
            return [], []
        if len(names) != X.shape[1]:
            raise ValueError(f"{len(names)} feature names for {X.shape[1]} columns")
        rng = [names.index(n) for n in RANGE_INPUTS] if set(RANGE_INPUTS) <= set(names) else []
        if rng and np.mean(X[:, rng[0]] > 0) < MIN_RANGE_SHARE:
            rng = []  # no range in these bars (a single price series)
        cols = rng or ([names.index(n) for n in CLOSE_INPUTS] if set(CLOSE_INPUTS) <= set(names) else [])
        lev = [names.index(n) for n in LEVERAGE_INPUTS] if cols and set(LEVERAGE_INPUTS) <= set(names) else []
        return cols, lev

    def _har_design(self, X: np.ndarray) -> np.ndarray:
        vol = np.maximum(X[:, self.har_columns_].astype(np.float64), self.har_floor_)
        lev = np.minimum(X[:, self.leverage_columns_].astype(np.float64), 0.0)
        return np.column_stack([2.0 * np.log(vol), lev])

    def _fit_har(self, X: np.ndarray, variance: np.ndarray) -> None:
        from sklearn.linear_model import GammaRegressor

        self.har_columns_, self.leverage_columns_ = self._har_inputs(X)
        scale = float(np.mean(variance))
        if not self.har_columns_:
            self.har_floor_ = np.zeros(0)
            self.har_coef_ = np.zeros(0)
            self.har_intercept_ = float(np.log(scale))
            return
        vol = X[:, self.har_columns_].astype(np.float64)
        floor = np.array([np.quantile(c[c > 0], INPUT_FLOOR_QUANTILE) if np.any(c > 0) else 1e-12 for c in vol.T])
        self.har_floor_ = floor.astype(np.float32).astype(np.float64)  # what the float32 graph holds
        Z = self._har_design(X)
        mu, sd = Z.mean(axis=0), Z.std(axis=0)
        sd[sd == 0] = 1.0
        glm = GammaRegressor(alpha=self.har_alpha, solver="newton-cholesky", max_iter=200)
        glm.fit((Z - mu) / sd, variance / scale)
        self.har_coef_ = glm.coef_ / sd
        self.har_intercept_ = float(glm.intercept_ - np.dot(self.har_coef_, mu) + np.log(scale))

    def _har_log_variance(self, X: np.ndarray) -> np.ndarray:
        if not self.har_columns_:
            return np.full(len(X), self.har_intercept_)
        return self._har_design(X) @ self.har_coef_ + self.har_intercept_

    # -- the sklearn contract ------------------------------------------------------------

    def fit(self, X: np.ndarray, y: np.ndarray) -> "VolatilityRegressor":
        from lightgbm import LGBMRegressor

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float64)
        if np.any(~np.isfinite(y)) or np.any(y < 0):
            raise ValueError("volatility labels must be finite and non-negative")
        positive = y[y > 0]
        self.floor_ = float(np.float32(0.5 * np.quantile(positive, 0.001))) if positive.size else 1e-12
        variance = np.maximum(y, self.floor_) ** 2  # the Gamma deviance needs positive labels
        self._fit_har(X, variance)
        self.model_ = None
        if self.n_estimators > 0:
            self.model_ = LGBMRegressor(**booster_kwargs(self, objective="gamma")).fit(
                X, variance, init_score=self._har_log_variance(X))
        self.n_features_in_ = X.shape[1]
        return self

    def log_variance(self, X: np.ndarray) -> np.ndarray:
        """The forecast log variance: the HAR member plus the trees' raw score."""
        check_is_fitted(self, "floor_")
        X = np.asarray(X, dtype=np.float32)
        eta = self._har_log_variance(X)
        if self.model_ is not None:
            eta = eta + self.model_.predict(X, raw_score=True)
        return eta

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.maximum(np.exp(0.5 * self.log_variance(X)), self.floor_)

    @property
    def feature_importances_(self) -> np.ndarray:
        """LightGBM gain per feature (zeros without trees); the HAR member's inputs are in ``har_inputs_``."""
        check_is_fitted(self, "floor_")
        if self.model_ is None:
            return np.zeros(self.n_features_in_)
        return self.model_.booster_.feature_importance(importance_type="gain")

    @property
    def har_inputs_(self) -> dict[str, float]:
        """The HAR member's coefficients by input name (on ``2 log vol`` and ``min(ret, 0)``)."""
        check_is_fitted(self, "floor_")
        names = list(self.feature_names) or [f"f{i}" for i in range(self.n_features_in_)]
        columns = list(self.har_columns_) + list(self.leverage_columns_)
        return {names[c]: float(b) for c, b in zip(columns, self.har_coef_)}

    # -- ONNX ----------------------------------------------------------------------------

    def to_onnx(self) -> onnx.ModelProto:
        """Outputs ``value`` (float32 ``[N, 1]``): ``max(exp((har + trees) / 2), floor_)``."""
        from onnx import TensorProto, helper, numpy_helper

        check_is_fitted(self, "floor_")
        f32 = np.float32
        inits: list[onnx.TensorProto] = [numpy_helper.from_array(np.array([self.floor_], dtype=f32), "floor"),
                                         numpy_helper.from_array(np.array([0.5], dtype=f32), "half"),
                                         numpy_helper.from_array(np.array([[self.har_intercept_]], dtype=f32), "b0")]
        nodes: list[onnx.NodeProto] = []
        if self.har_columns_:
            inits += [
                numpy_helper.from_array(np.asarray(self.har_columns_, dtype=np.int64), "har_cols"),
                *([numpy_helper.from_array(np.asarray(self.leverage_columns_, dtype=np.int64), "lev_cols")]
                  if self.leverage_columns_ else []),
                numpy_helper.from_array(self.har_floor_.astype(f32).reshape(1, -1), "har_floor"),
                numpy_helper.from_array(np.array([2.0], dtype=f32), "two"),
                numpy_helper.from_array(np.array([0.0], dtype=f32), "zero"),
                numpy_helper.from_array(self.har_coef_.astype(f32).reshape(-1, 1), "har_coef"),
            ]
            nodes += [
                helper.make_node("Gather", ["input", "har_cols"], ["har_x"], axis=1),
                helper.make_node("Max", ["har_x", "har_floor"], ["har_xf"]),
                helper.make_node("Log", ["har_xf"], ["har_log"]),
                helper.make_node("Mul", ["har_log", "two"], ["har_logvar" if self.leverage_columns_ else "har_z"]),
            ]
            if self.leverage_columns_:
                nodes += [
                    helper.make_node("Gather", ["input", "lev_cols"], ["lev_x"], axis=1),
                    helper.make_node("Min", ["lev_x", "zero"], ["lev_neg"]),
                    helper.make_node("Concat", ["har_logvar", "lev_neg"], ["har_z"], axis=1),
                ]
            nodes += [helper.make_node("MatMul", ["har_z", "har_coef"], ["har_lin"]),
                      helper.make_node("Add", ["har_lin", "b0"], ["har_eta"])]
        else:  # a constant member: broadcast b0 to [N, 1] through a zero column of the input
            inits.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "col0"))
            nodes += [helper.make_node("Gather", ["input", "col0"], ["c0"], axis=1),
                      helper.make_node("Mul", ["c0", "zero_f"], ["c0_zero"]),
                      helper.make_node("Add", ["c0_zero", "b0"], ["har_eta"])]
            inits.append(numpy_helper.from_array(np.array([0.0], dtype=f32), "zero_f"))
        parts: list[tuple[str, onnx.ModelProto]] = []
        eta = "har_eta"
        if self.model_ is not None:
            parts.append(("lgbm", _raw_score_graph(lightgbm_to_onnx(self.model_, self.n_features_in_))))
            nodes.append(helper.make_node("Add", ["har_eta", "lgbm/raw"], ["eta"]))
            eta = "eta"
        nodes += [helper.make_node("Mul", [eta, "half"], ["half_eta"]),
                  helper.make_node("Exp", ["half_eta"], ["vol"]),
                  helper.make_node("Max", ["vol", "floor"], ["value"])]
        output = [helper.make_tensor_value_info("value", TensorProto.FLOAT, [None, 1])]
        if parts:
            return combine_models(parts, nodes=nodes, initializers=inits, outputs=output, name="volatility")
        return _linear_only_graph(nodes, inits, output, self.n_features_in_)


def _raw_score_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """The LightGBM graph without the ``Exp`` that onnxmltools appends for the gamma objective: output ``raw``."""
    from onnx import helper

    graph = model.graph
    trees = next(n for n in graph.node if n.op_type == "TreeEnsembleRegressor")
    kept = [n for n in graph.node if n.op_type != "Exp"]
    if len(kept) != len(graph.node) - 1:
        raise ValueError("expected the LightGBM gamma graph to end in one Exp node")
    trees.output[0] = "raw"
    graph.ClearField("node")
    graph.node.extend(kept)
    graph.ClearField("output")
    graph.output.append(helper.make_tensor_value_info("raw", onnx.TensorProto.FLOAT, [None, 1]))
    return model


def _linear_only_graph(nodes: list[Any], inits: list[Any], outputs: list[Any], n_features: int) -> onnx.ModelProto:
    from onnx import TensorProto, helper

    from models.onnx_export import COMBINE_OPSET, INPUT_NAME

    graph = helper.make_graph(nodes, "volatility", [helper.make_tensor_value_info(
        INPUT_NAME, TensorProto.FLOAT, [None, n_features])], outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", COMBINE_OPSET)], producer_name="alphaops")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def volatility_space(trial: Any) -> dict[str, Any]:
    """Optuna space of the volatility specs: how much LightGBM adds to the HAR member (0 trees: none).

    Smaller and slower than the shared LightGBM space: on daily data more than ~100 trees at a
    learning rate of 0.02 lose QLIKE in purged CV (see ``docs/families.md``)."""
    return {
        "n_estimators": trial.suggest_int("n_estimators", 0, 200, step=25),
        "learning_rate": trial.suggest_float("learning_rate", 0.005, 0.05, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 3, 15),
        "min_child_samples": trial.suggest_int("min_child_samples", 50, 400, log=True),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
    }
