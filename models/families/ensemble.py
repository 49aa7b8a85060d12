"""``ensemble``: weighted average, majority vote, stacking and regime-based selection over classifiers.

Members are classifiers of this package (``DirectionClassifier`` by default; any estimator
with ``classes_``, ``predict_proba`` and a ``to_onnx()`` whose second output is the
probabilities, on the same 2-D input, works). Combination methods (``method``):

- ``mean``: ``Σ w_m p_m / Σ w_m`` with ``weights`` (equal when None).
- ``vote``: each member votes for its most probable class (weighted); the probabilities are the
  vote shares and ties go to the lowest class index.
- ``stack``: a logistic regression on the members' probabilities (``P(class 1)`` of each member
  for binary labels, every class probability for multiclass).
- ``regime``: a shallow decision tree on the features (its leaves are the regimes) picks, per
  row, the member to trust: it is trained to predict which member gave the true class the
  highest probability.

Fitting (scikit-learn style): ``members=[...]`` is a constructor parameter and is never
modified. A member that is already fitted is used as it is; an unfitted one is cloned and
fitted. ``stack`` and ``regime`` learn from the members' out-of-sample probabilities, so when
any member must be fitted, the first ``1 - combiner_fraction`` of the rows (time order) fit
the members and the rest fit the combiner; with pre-fitted members (fit on an earlier
window) the combiner uses every row. ``mean`` and ``vote`` fit members on every row.

ONNX: one graph. The member graphs are merged on the shared input (prefixes ``m0/``, ``m1/``
...; :func:`models.onnx_export.combine_models`), their probabilities stacked to
``[N, M, C]``, and the combination added as ops (the stacking logistic regression as
MatMul/Add/Sigmoid or Softmax; the regime tree from skl2onnx plus a one-hot selection).
Outputs ``label`` (class index, int64 ``[N]``) and ``probabilities`` (float32 ``[N, C]``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from models.onnx_export import combine_models, sklearn_to_onnx

METHODS = ("mean", "vote", "stack", "regime")


def default_members(random_state: int = 0) -> list[Any]:
    """Three LightGBM direction classifiers that differ in capacity and feature sampling."""
    from models.families.direction import DirectionClassifier

    return [
        DirectionClassifier(n_estimators=100, num_leaves=7, colsample_bytree=0.5, random_state=random_state, n_jobs=1),
        DirectionClassifier(n_estimators=150, num_leaves=15, learning_rate=0.03, random_state=random_state + 1,
                            n_jobs=1),
        DirectionClassifier(n_estimators=80, num_leaves=31, min_child_samples=100, colsample_bytree=0.3,
                            random_state=random_state + 2, n_jobs=1),
    ]


def _is_fitted(estimator: Any) -> bool:
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    return True


class EnsembleClassifier(ClassifierMixin, BaseEstimator):
    """Combine member classifiers by ``method`` (``mean``, ``vote``, ``stack``, ``regime``); see the module doc."""

    def __init__(self, members: list[Any] | None = None, method: str = "mean", weights: list[float] | None = None,
                 combiner_fraction: float = 0.3, stack_C: float = 1.0, regime_depth: int = 2,
                 regime_min_leaf: float = 0.1, random_state: int = 0) -> None:
        self.members = members
        self.method = method
        self.weights = weights
        self.combiner_fraction = combiner_fraction
        self.stack_C = stack_C
        self.regime_depth = regime_depth
        self.regime_min_leaf = regime_min_leaf
        self.random_state = random_state

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, X: np.ndarray, y: np.ndarray) -> "EnsembleClassifier":
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"labels have a single class {self.classes_.tolist()}")
        members = self.members if self.members is not None else default_members(self.random_state)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        weights = np.ones(len(members)) if self.weights is None else np.asarray(self.weights, dtype=np.float64)
        if weights.shape != (len(members),) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError("weights must be one non-negative number per member, not all zero")
        self.weights_ = weights / weights.sum()

        needs_fit = [not _is_fitted(m) for m in members]
        learned = self.method in ("stack", "regime")
        if learned and any(needs_fit):
            cut = int(round(len(X) * (1.0 - self.combiner_fraction)))
            if cut < 50 or len(X) - cut < 50:
                raise ValueError(f"{len(X)} rows are too few to split between members and the {self.method} combiner")
            member_rows, combiner_rows = np.arange(cut), np.arange(cut, len(X))
        else:
            member_rows = combiner_rows = np.arange(len(X))
        self.members_ = [clone(m).fit(X[member_rows], y[member_rows]) if fit else m
                         for m, fit in zip(members, needs_fit)]
        for i, m in enumerate(self.members_):
            if not np.array_equal(np.asarray(m.classes_), self.classes_):
                raise ValueError(f"member {i} has classes {list(m.classes_)}, the labels have {self.classes_.tolist()}")
        self.n_features_in_ = X.shape[1]

        if learned:
            Xc, yc = X[combiner_rows], np.searchsorted(self.classes_, y[combiner_rows])
            P = self.member_probabilities(Xc)
            if self.method == "stack":
                from sklearn.linear_model import LogisticRegression

                self.stacker_ = LogisticRegression(C=self.stack_C, max_iter=1000).fit(self._stack_inputs(P), yc)
            else:
                from sklearn.tree import DecisionTreeClassifier

                best = np.argmax(P[np.arange(len(yc)), :, yc], axis=1)  # member most confident in the truth
                if len(np.unique(best)) == 1:
                    self.regime_tree_ = None
                    self.regime_member_ = int(best[0])
                else:
                    self.regime_tree_ = DecisionTreeClassifier(
                        max_depth=self.regime_depth, min_samples_leaf=max(1, math.ceil(self.regime_min_leaf * len(yc))),
                        random_state=self.random_state,
                    ).fit(Xc, best)
                    self.regime_member_ = None
        return self

    # -- prediction ------------------------------------------------------------------------

    def member_probabilities(self, X: np.ndarray) -> np.ndarray:
        """``[N, M, C]``: every member's class probabilities."""
        check_is_fitted(self, "members_")
        X = np.asarray(X, dtype=np.float32)
        return np.stack([np.asarray(m.predict_proba(X), dtype=np.float64) for m in self.members_], axis=1)

    def _stack_inputs(self, P: np.ndarray) -> np.ndarray:
        return P[:, :, 1] if P.shape[2] == 2 else P.reshape(len(P), -1)

    def regimes(self, X: np.ndarray) -> np.ndarray:
        """Index of the member the ``regime`` method trusts on each row."""
        check_is_fitted(self, "members_")
        if self.method != "regime":
            raise ValueError("regimes() is defined for method='regime' only")
        if self.regime_tree_ is None:
            return np.full(len(X), self.regime_member_, dtype=np.int64)
        return self.regime_tree_.predict(np.asarray(X, dtype=np.float32)).astype(np.int64)

    def combine(self, P: np.ndarray, X: np.ndarray | None = None) -> np.ndarray:
        """Combine member probabilities ``P`` ``[N, M, C]`` (``X`` is needed by ``regime`` only)."""
        check_is_fitted(self, "members_")
        w = self.weights_[None, :, None]
        if self.method == "mean":
            return (P * w).sum(axis=1)
        if self.method == "vote":
            votes = np.argmax(P, axis=2)
            return ((votes[:, :, None] == np.arange(P.shape[2])[None, None, :]) * w).sum(axis=1)
        if self.method == "stack":
            return self.stacker_.predict_proba(self._stack_inputs(P))
        chosen = self.regimes(X)
        return P[np.arange(len(P)), chosen]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.combine(self.member_probabilities(X), X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        proba = self.predict_proba(X)  # raises NotFittedError first when unfitted
        return self.classes_[np.argmax(proba, axis=1)]

    # -- ONNX ------------------------------------------------------------------------------

    def to_onnx(self) -> onnx.ModelProto:
        """One graph: member graphs + combination ops; outputs ``label`` and ``probabilities``."""
        from onnx import TensorProto, helper, numpy_helper

        check_is_fitted(self, "members_")
        n_members, n_classes = len(self.members_), len(self.classes_)
        parts = [(f"m{i}", m.to_onnx()) for i, m in enumerate(self.members_)]
        nodes: list[onnx.NodeProto] = []
        inits: list[onnx.TensorProto] = []

        def const(name: str, value: np.ndarray) -> str:
            inits.append(numpy_helper.from_array(value, name))
            return name

        const("axis1", np.array([1], dtype=np.int64))
        for i, (prefix, part) in enumerate(parts):
            proba = f"{prefix}/{part.graph.output[1].name}"
            nodes.append(helper.make_node("Unsqueeze", [proba, "axis1"], [f"member_p{i}"]))
        nodes.append(helper.make_node("Concat", [f"member_p{i}" for i in range(n_members)], ["P"], axis=1))  # [N, M, C]

        def weighted_sum(tensor: str, weights: np.ndarray, out: str) -> None:
            w = const(f"{out}_w", weights.astype(np.float32).reshape(1, n_members, 1))
            nodes.append(helper.make_node("Mul", [tensor, w], [f"{out}_wp"]))
            nodes.append(helper.make_node("ReduceSum", [f"{out}_wp", "axis1"], [out], keepdims=0))

        if self.method == "mean":
            weighted_sum("P", self.weights_, "probabilities")
        elif self.method == "vote":
            const("classes", np.arange(n_classes, dtype=np.int64).reshape(1, 1, n_classes))
            nodes += [
                helper.make_node("ArgMax", ["P"], ["votes"], axis=2, keepdims=1),  # [N, M, 1]
                helper.make_node("Equal", ["votes", "classes"], ["onehot_b"]),
                helper.make_node("Cast", ["onehot_b"], ["onehot"], to=TensorProto.FLOAT),
            ]
            weighted_sum("onehot", self.weights_, "probabilities")
        elif self.method == "stack":
            coef = self.stacker_.coef_.astype(np.float32)
            bias = self.stacker_.intercept_.astype(np.float32)
            if n_classes == 2:
                const("class1", np.array(1, dtype=np.int64))
                const("W", coef.T)  # [M, 1]
                const("b", bias.reshape(1, 1))
                const("one", np.array(1.0, dtype=np.float32))
                nodes += [
                    helper.make_node("Gather", ["P", "class1"], ["Z"], axis=2),  # [N, M]
                    helper.make_node("MatMul", ["Z", "W"], ["zw"]),
                    helper.make_node("Add", ["zw", "b"], ["logit"]),
                    helper.make_node("Sigmoid", ["logit"], ["p1"]),
                    helper.make_node("Sub", ["one", "p1"], ["p0"]),
                    helper.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
                ]
            else:
                const("flat_shape", np.array([-1, n_members * n_classes], dtype=np.int64))
                const("W", coef.T)  # [M*C, C]
                const("b", bias.reshape(1, -1))
                nodes += [
                    helper.make_node("Reshape", ["P", "flat_shape"], ["Z"]),
                    helper.make_node("MatMul", ["Z", "W"], ["zw"]),
                    helper.make_node("Add", ["zw", "b"], ["logit"]),
                    helper.make_node("Softmax", ["logit"], ["probabilities"], axis=1),
                ]
        else:  # regime
            if self.regime_tree_ is None:
                weighted_sum("P", np.eye(n_members)[self.regime_member_], "probabilities")
            else:
                parts.append(("regime", sklearn_to_onnx(self.regime_tree_, self.n_features_in_)))
                const("members", np.arange(n_members, dtype=np.int64).reshape(1, n_members))
                nodes += [
                    helper.make_node("Unsqueeze", ["regime/label", "axis1"], ["chosen"]),  # [N, 1]
                    helper.make_node("Equal", ["chosen", "members"], ["pick_b"]),  # [N, M]
                    helper.make_node("Cast", ["pick_b"], ["pick2"], to=TensorProto.FLOAT),
                    helper.make_node("Unsqueeze", ["pick2", "axis2"], ["pick"]),  # [N, M, 1]
                    helper.make_node("Mul", ["P", "pick"], ["picked"]),
                    helper.make_node("ReduceSum", ["picked", "axis1"], ["probabilities"], keepdims=0),
                ]
                const("axis2", np.array([2], dtype=np.int64))
        nodes.append(helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0))
        return combine_models(
            parts, nodes=nodes, initializers=inits,
            outputs=[helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                     helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, n_classes])],
            name=f"ensemble_{self.method}",
        )
