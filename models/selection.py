"""Feature selection on the training window: drop inputs whose importance is indistinguishable from noise.

The test is a shadow-feature permutation test, run on the training window only (never the holdout):

1. Take the latest ``max_rows`` training rows, split them in time into a fit part and an evaluation
   part, with ``purge`` rows dropped between them (the label's horizon), so the evaluation is out of
   sample for the selection model.
2. Append ``n_shadows`` shadow columns: copies of randomly chosen real features whose rows are
   permuted, so they keep a real feature's distribution and carry no information about the label.
3. Fit the spec's own estimator (default parameters) on the fit part, then measure each column's
   permutation importance on the evaluation part: the drop of the primary metric when that column's
   rows are shuffled, averaged over ``repeats`` shuffles.
4. Keep the real features whose importance is above the noise level, the ``noise_quantile`` of the
   shadows' importances. At least ``min_features`` are kept (the most important ones), so a model
   whose inputs are all noise still trains, and is then judged by validation's null test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.metrics import primary_score
from models.outputs import build_estimator, fit_estimator, native_output
from models.specs import ModelSpec


class TooFewRowsToSelect(ValueError):
    """The training window is too short to hold out an evaluation part for the selection."""


@dataclass(frozen=True)
class FeatureSelection:
    """The features kept, with the evidence: every real and shadow column's importance."""

    kept: list[str]
    dropped: list[str]
    importance: dict[str, float]
    shadow_importance: list[float]
    noise_level: float
    rows_used: int

    def summary(self) -> dict[str, Any]:
        return {"method": "shadow-permutation", "kept": len(self.kept), "dropped": len(self.dropped),
                "noise_level": self.noise_level, "rows_used": self.rows_used,
                "shadows": len(self.shadow_importance)}


def _oriented(spec: ModelSpec, y: np.ndarray, output: np.ndarray) -> float:
    value = primary_score(spec, y, output)
    return value if spec.greater_is_better else -value


def select_features(spec: ModelSpec, X: np.ndarray, y: np.ndarray, feature_names: list[str], *,
                    next_return: np.ndarray | None = None, purge: int = 0, seed: int = 0,
                    max_rows: int = 40_000, eval_fraction: float = 0.3, n_shadows: int = 24,
                    repeats: int = 2, noise_quantile: float = 0.95, min_features: int = 8) -> FeatureSelection:
    """Select ``spec``'s features on training rows ``X``/``y`` (time order); see the module docstring."""
    if X.ndim != 2:
        raise ValueError(f"{spec.name}: feature selection needs a 2-D matrix, got shape {X.shape}")
    if X.shape[1] != len(feature_names):
        raise ValueError(f"{spec.name}: {X.shape[1]} columns but {len(feature_names)} feature names")
    n_features = X.shape[1]
    rng = np.random.default_rng(seed)
    start = max(0, len(X) - max_rows)
    rows = len(X) - start
    n_eval = int(rows * eval_fraction)
    n_fit = rows - n_eval - purge
    if n_eval < 200 or n_fit < 500:
        raise TooFewRowsToSelect(f"{spec.name}: {rows} training rows are too few to select features "
                         f"(need 500 to fit and 200 to evaluate after a purge of {purge})")
    fit_rows = slice(start, start + n_fit)
    eval_rows = slice(len(X) - n_eval, len(X))
    shadow_sources = rng.choice(n_features, size=min(n_shadows, n_features), replace=False)

    def with_shadows(block: np.ndarray) -> np.ndarray:
        shadows = block[:, shadow_sources][rng.permutation(len(block))]
        return np.concatenate([block, shadows], axis=1).astype(np.float32, copy=False)

    X_fit, X_eval = with_shadows(X[fit_rows]), with_shadows(X[eval_rows])
    y_fit, y_eval = y[fit_rows], y[eval_rows]
    names = list(feature_names) + [f"shadow_{i}" for i in range(len(shadow_sources))]
    fit_returns = None if next_return is None else next_return[fit_rows]
    estimator = build_estimator(spec, {}, names)
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=seed)
    model = fit_estimator(spec, estimator, X_fit, y_fit, fit_returns)
    base = _oriented(spec, y_eval, native_output(spec, model, X_eval))
    importance = np.zeros(X_eval.shape[1])
    shuffled = X_eval.copy()
    for column in range(X_eval.shape[1]):
        drops = []
        for _ in range(repeats):
            shuffled[:, column] = X_eval[rng.permutation(len(X_eval)), column]
            drops.append(base - _oriented(spec, y_eval, native_output(spec, model, shuffled)))
        shuffled[:, column] = X_eval[:, column]
        importance[column] = float(np.mean(drops))
    real, shadow = importance[:n_features], importance[n_features:]
    noise_level = float(np.quantile(shadow, noise_quantile))
    keep = real > noise_level
    if keep.sum() < min(min_features, n_features):
        keep[np.argsort(real)[::-1][:min(min_features, n_features)]] = True
    kept = [name for name, k in zip(feature_names, keep) if k]
    dropped = [name for name, k in zip(feature_names, keep) if not k]
    return FeatureSelection(kept=kept, dropped=dropped,
                            importance={name: float(v) for name, v in zip(feature_names, real)},
                            shadow_importance=[float(v) for v in shadow], noise_level=noise_level,
                            rows_used=n_fit + n_eval)
