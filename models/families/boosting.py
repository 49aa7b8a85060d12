"""The LightGBM settings the families share: an estimator's own hyper-parameters plus the fixed ones.

Every LightGBM-based family takes the same hyper-parameters in its ``__init__`` (the scikit-learn
contract wants them there, spelled out) and fits its boosters with :func:`booster_kwargs`:
bagging on every iteration, deterministic row-wise histograms, no console output.
"""

from __future__ import annotations

from typing import Any

BOOSTER_PARAMS = ("n_estimators", "learning_rate", "num_leaves", "min_child_samples", "subsample",
                  "colsample_bytree", "reg_lambda", "max_bin", "random_state", "n_jobs")
FIXED = {"subsample_freq": 1, "deterministic": True, "force_row_wise": True, "verbosity": -1}


def booster_kwargs(estimator: Any, **extra: Any) -> dict[str, Any]:
    """Keyword arguments of ``LGBMClassifier``/``LGBMRegressor`` for ``estimator``: the
    :data:`BOOSTER_PARAMS` it has, the :data:`FIXED` settings, and ``extra`` (e.g. the objective)."""
    own = {name: getattr(estimator, name) for name in BOOSTER_PARAMS if hasattr(estimator, name)}
    return {**own, **FIXED, **extra}
