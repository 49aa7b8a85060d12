"""Multi-output regressors: one LightGBM booster per target, combined into one ONNX graph.

``y`` is ``[n, n_targets]``; ``predict`` returns the same shape. ``to_onnx()`` merges the
boosters' graphs (``models.onnx_export.combine_models``) into one graph with one float32
``[N, 1]`` output per target, named by ``output_names`` (the spec's targets), so a runtime reads
each horizon by name. Used by the liquidity and returns families.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from models.families.boosting import booster_kwargs
from models.onnx_export import combine_models, lightgbm_to_onnx


def as_target_matrix(y: Any, n_rows: int) -> np.ndarray:
    """``y`` as float64 ``[n, n_targets]``; raises ValueError on a length mismatch or a non-finite label."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or len(y) != n_rows:
        raise ValueError(f"y must be [n_rows, n_targets] with n_rows = {n_rows}, got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("y holds NaN or infinite labels; drop those rows first")
    return y


def output_nodes(prefixes: list[tuple[str, onnx.ModelProto]], names: tuple[str, ...]) -> tuple[list, list]:
    """Identity nodes renaming each part's first output to its target name, and the graph's outputs."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Identity", [f"{prefix}/{part.graph.output[0].name}"], [name])
             for (prefix, part), name in zip(prefixes, names)]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 1]) for name in names]
    return nodes, outputs


def checked_fit_inputs(X: Any, y: Any, output_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A multi-output estimator's ``fit`` inputs: contiguous float32 ``X`` of shape ``[n, features]``
    and ``y`` as ``[n, targets]``, with one output name per target when names are given."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"X must be [n_rows, n_features], got shape {X.shape}")
    y = as_target_matrix(y, len(X))
    if output_names and len(output_names) != y.shape[1]:
        raise ValueError(f"{len(output_names)} output names for {y.shape[1]} targets")
    return X, y


class MultiTargetBoosters(RegressorMixin, BaseEstimator):
    """One ``LGBMRegressor`` per column of ``y``, with shared hyper-parameters."""

    def __init__(self, n_estimators: int = 100, learning_rate: float = 0.05, num_leaves: int = 15,
                 min_child_samples: int = 20, subsample: float = 0.8, colsample_bytree: float = 0.7,
                 reg_lambda: float = 1.0, random_state: int = 0, n_jobs: int = 1,
                 output_names: tuple[str, ...] = ()) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.output_names = output_names

    def fit(self, X: np.ndarray, y: np.ndarray) -> "MultiTargetBoosters":
        from lightgbm import LGBMRegressor

        X, y = checked_fit_inputs(X, y, self.output_names)
        self.boosters_ = [LGBMRegressor(**booster_kwargs(self)).fit(X, y[:, k]) for k in range(y.shape[1])]
        self.n_features_in_ = X.shape[1]
        self.n_targets_ = y.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``[n, n_targets]`` forecasts."""
        check_is_fitted(self, "boosters_")
        X = np.asarray(X, dtype=np.float32)
        return np.column_stack([b.predict(X) for b in self.boosters_])

    @property
    def feature_importances_(self) -> np.ndarray:
        """Gain importance summed over the targets' boosters."""
        check_is_fitted(self, "boosters_")
        return np.sum([b.booster_.feature_importance(importance_type="gain") for b in self.boosters_], axis=0)

    def target_names(self) -> tuple[str, ...]:
        check_is_fitted(self, "boosters_")
        return tuple(self.output_names) or tuple(f"target_{k}" for k in range(self.n_targets_))

    def to_onnx(self) -> onnx.ModelProto:
        """One graph, one float32 ``[N, 1]`` output per target (named by :meth:`target_names`)."""
        check_is_fitted(self, "boosters_")
        parts = [(f"t{k}", lightgbm_to_onnx(b, self.n_features_in_)) for k, b in enumerate(self.boosters_)]
        nodes, outputs = output_nodes(parts, self.target_names())
        return combine_models(parts, nodes=nodes, outputs=outputs, name=type(self).__name__)
