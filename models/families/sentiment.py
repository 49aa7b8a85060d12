"""``sentiment``: a direction classifier on bar and news features, with a long-side risk filter.

The estimator is ``StandardScaler`` → ``LogisticRegression`` (L2, ``C`` searched, Newton-Cholesky)
on the news features of :mod:`features.news` only (the columns named ``news_*``; the graph
gathers them from the full input row). On the synthetic news market the 180-feature
variants overfit: LightGBM on every feature lost to the price-only logistic regression
(holdout AUC 0.642 against 0.693), and a logistic regression on every feature reached 0.567
where ``news_sent_decay_5`` alone ranked at 0.619. Beside ``label`` and ``probabilities`` its ONNX graph has a third output,
``block_long`` (float32 ``[N, 1]``): 1.0 where the row's ``filter_feature`` (default
``news_sent_min_30``, the most negative headline score of the last 30 bars) is at or below
``filter_threshold`` (default -0.6, where the label ``very bearish`` starts), else 0.0. A runtime
takes no new long position while ``block_long`` is 1, whatever the probabilities say; the
threshold and the feature are in the bundle's ``schema.json`` (``thresholds.block_long_sentiment``
and ``risk_filter``), so a runtime in another language can apply the same rule.

The family's naive rules (``models.naive.sentiment_rules``) see no headline: the last move's
sign, and a logistic regression on the price features alone. The model has to beat them on the
holdout, i.e. the headlines must add something a price-only rule cannot get.
"""

from __future__ import annotations

import numpy as np
import onnx
from sklearn.utils.validation import check_is_fitted

from sklearn.base import BaseEstimator, ClassifierMixin

from models.onnx_export import combine_models, dynamic_batch_outputs, sklearn_to_onnx

FILTER_FEATURE = "news_sent_min_30"
FILTER_THRESHOLD = -0.6


class SentimentClassifier(ClassifierMixin, BaseEstimator):
    """Scaled logistic regression of the direction label with the ``block_long`` risk filter (module doc)."""

    def __init__(self, C: float = 0.1, max_iter: int = 200, random_state: int = 0,
                 feature_names: tuple[str, ...] | None = None, filter_feature: str = FILTER_FEATURE,
                 filter_threshold: float = FILTER_THRESHOLD) -> None:
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state
        self.feature_names = feature_names
        self.filter_feature = filter_feature
        self.filter_threshold = filter_threshold

    def fit(self, X: np.ndarray, y: np.ndarray) -> "SentimentClassifier":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        names = list(self.feature_names) if self.feature_names is not None else \
            list(getattr(X, "columns", []))
        if self.filter_feature not in names:
            raise ValueError(f"the risk filter needs feature {self.filter_feature!r}, which is not among the "
                             f"{len(names)} features; ingest headlines for the symbol (alphaops ingest FILE "
                             "--kind news) and run the features step")
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y).astype(int)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"direction labels have a single class {self.classes_.tolist()}; widen the window")
        self.filter_index_ = names.index(self.filter_feature)
        self.columns_ = np.array([i for i, name in enumerate(names) if name.startswith("news_")], dtype=np.int64)
        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(
            C=self.C, solver="newton-cholesky", max_iter=self.max_iter, random_state=self.random_state))
        self.model_.fit(X[:, self.columns_], y)
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(np.asarray(X, dtype=np.float32)[:, self.columns_])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    @property
    def feature_importances_(self) -> np.ndarray:
        """|coefficient| of each standardized feature (0 for the features the model does not read)."""
        check_is_fitted(self, "model_")
        out = np.zeros(self.n_features_in_)
        out[self.columns_] = np.abs(self.model_[-1].coef_).reshape(-1)
        return out

    def block_long(self, X: np.ndarray) -> np.ndarray:
        """1.0 where the filter feature is at or below the threshold (no new long), else 0.0; ``[N]``."""
        check_is_fitted(self, "filter_index_")
        column = np.asarray(X, dtype=np.float32)[:, self.filter_index_]
        return (column <= np.float32(self.filter_threshold)).astype(np.float32)

    def to_onnx(self) -> onnx.ModelProto:
        """Outputs ``label``, ``probabilities`` (skl2onnx's) and ``block_long`` (``[N, 1]``)."""
        from onnx import TensorProto, helper, numpy_helper

        check_is_fitted(self, "filter_index_")
        linear = sklearn_to_onnx(self.model_, len(self.columns_))
        # The linear part reads the news columns, gathered from the full row.
        for node in linear.graph.node:
            node.input[:] = ["news_columns" if name == "input" else name for name in node.input]
        linear.graph.node.insert(0, helper.make_node("Gather", ["input", "news_index"], ["news_columns"], axis=1))
        linear.graph.initializer.append(numpy_helper.from_array(self.columns_, "news_index"))
        full = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, self.n_features_in_])
        linear.graph.input.pop()
        linear.graph.input.append(full)
        nodes = [
            helper.make_node("Identity", ["m/label"], ["label"]),
            helper.make_node("Identity", ["m/probabilities"], ["probabilities"]),
            helper.make_node("Gather", ["input", "filter_index"], ["filter_value"], axis=1),
            helper.make_node("LessOrEqual", ["filter_value", "filter_threshold"], ["filter_hit"]),
            helper.make_node("Cast", ["filter_hit"], ["block_long"], to=TensorProto.FLOAT),
        ]
        initializers = [
            numpy_helper.from_array(np.array([self.filter_index_], dtype=np.int64), "filter_index"),
            numpy_helper.from_array(np.array(self.filter_threshold, dtype=np.float32), "filter_threshold"),
        ]
        n_classes = len(self.classes_)
        outputs = [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, n_classes]),
            helper.make_tensor_value_info("block_long", TensorProto.FLOAT, [None, 1]),
        ]
        model = combine_models([("m", linear)], nodes=nodes, initializers=initializers, outputs=outputs,
                               name="sentiment")
        return dynamic_batch_outputs(model)
