"""Volatility baselines: GARCH(1,1) and EGARCH(1,1) from ``arch``, fitted on the training window only.

The parameters are estimated on the training returns. The holdout forecasts come from the
same model with those parameters **fixed** (``arch_model(...).fix(params)``), run forward over
the whole return series: the forecast made at row ``i`` uses returns up to and including
row ``i`` (the return that ends at that bar, known when the bar closes) and nothing later.
That is a fixed-parameter filter, honest out of sample: no holdout return enters the fit.

Forecasts are of realized volatility in the label's units (:func:`features.labels.
forward_realized_vol`): ``sqrt(mean_k E[r_{t+k}^2])`` over ``k = 1..h`` of the conditional
variance forecasts, unscaled back to per-bar log returns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def arch_scale(train_returns: np.ndarray) -> float:
    """Power of ten that brings the training returns' std into [1, 10).

    arch's optimizer wants returns of order 1: daily returns (std ~1%) get ×100, 1-minute
    returns (std ~0.08%) ×10,000.
    """
    std = float(np.std(train_returns))
    if not np.isfinite(std) or std <= 0:
        raise ValueError("training returns have no variance; cannot fit GARCH")
    return float(10.0 ** np.ceil(-np.log10(std)))


def garch_baselines(train_returns: np.ndarray, all_returns: np.ndarray, holdout_indices: np.ndarray,
                    horizon: int, *, models: Sequence[str] = ("garch", "egarch"), simulations: int = 500,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Out-of-sample h-step realized-volatility forecasts of GARCH(1,1) and EGARCH(1,1).

    - ``train_returns``: 1-bar log returns of the training window; the only data the
      parameters are fitted on.
    - ``all_returns``: the whole series in time order (training window, any purge gap, holdout);
      ``all_returns[i]`` is the return that ends at row ``i``.
    - ``holdout_indices``: positions in ``all_returns`` to forecast at (a boolean mask works too).
      The forecast at position ``i`` uses ``all_returns[:i + 1]`` only.
    - ``horizon``: bars ahead; the value is ``sqrt(mean of the 1..h-step variance forecasts)``.

    GARCH has analytic multi-step forecasts. EGARCH has none beyond one step, so its
    forecasts for ``h > 1`` are simulated (``simulations`` standard-normal paths per origin from
    ``numpy.random.default_rng(seed)``: deterministic). Returns ``{"garch": array, "egarch": array}`` aligned with
    ``holdout_indices``, in per-bar log-return units.
    """
    from arch import arch_model

    train = np.asarray(train_returns, dtype=np.float64)
    series = np.asarray(all_returns, dtype=np.float64)
    idx = np.asarray(holdout_indices)
    idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(int)
    if idx.size == 0:
        return {name: np.empty(0) for name in models}
    if np.any(~np.isfinite(train)) or np.any(~np.isfinite(series[: idx.max() + 1])):
        raise ValueError("returns must be finite (drop the first NaN return before calling)")
    if idx.min() < 1 or idx.max() >= len(series):
        raise ValueError("holdout indices must lie in [1, len(all_returns))")
    scale = arch_scale(train)
    out: dict[str, np.ndarray] = {}
    for name in models:
        vol = {"garch": "GARCH", "egarch": "EGARCH"}[name]
        spec = {"mean": "Constant", "vol": vol, "p": 1, "q": 1, "dist": "normal"}
        fitted = arch_model(train * scale, **spec).fit(disp="off", show_warning=False)
        fixed = arch_model(series[: idx.max() + 1] * scale, **spec).fix(fitted.params)
        method = "analytic" if vol == "GARCH" or horizon == 1 else "simulation"
        # ``rng`` drives the simulated shocks (arch's ``random_state`` only seeds the bootstrap);
        # the draws are taken origin by origin, so a forecast never depends on later rows.
        forecast = fixed.forecast(horizon=horizon, start=int(idx.min()), reindex=False, method=method,
                                  simulations=simulations, rng=np.random.default_rng(seed).standard_normal)
        variance = forecast.variance.to_numpy()  # row j: origin idx.min() + j, columns h.1 .. h.H
        rows = idx - idx.min()
        out[name] = np.sqrt(variance[rows].mean(axis=1)) / scale
    return out


def naive_realized_vol(all_returns: np.ndarray, holdout_indices: np.ndarray, horizon: int) -> np.ndarray:
    """Random-walk volatility forecast: realized vol of the last ``horizon`` returns (up to row i)."""
    series = np.asarray(all_returns, dtype=np.float64)
    idx = np.asarray(holdout_indices)
    idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(int)
    csum = np.concatenate([[0.0], np.cumsum(series ** 2)])
    lo = np.maximum(idx + 1 - horizon, 0)
    return np.sqrt((csum[idx + 1] - csum[lo]) / (idx + 1 - lo))


def volatility_baselines(y_train: np.ndarray, y_holdout: np.ndarray, train_returns: np.ndarray,
                         holdout_returns: np.ndarray, *, horizon: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The ``volatility`` specs' ``baselines`` callable (``ModelSpec.baselines``).

    Signature ``(y_train, y_holdout, train_returns, holdout_returns)`` plus the spec's
    ``horizon`` (bound with functools.partial). ``train_returns[i]`` / ``holdout_returns[i]``
    must be the 1-bar log return that **ends at** training / holdout row ``i`` (e.g. the
    ``ret_1`` feature), not the forward return. The two series are joined, so returns in a
    purge gap between them are skipped; the filter just continues over the holdout.

    Returns holdout predictions in the label's units: ``garch``, ``egarch`` (fitted on the
    training returns only), ``naive_rv`` (realized vol of the last h returns) and
    ``train_mean`` (the training labels' mean).
    """
    train = np.asarray(train_returns, dtype=np.float64)
    series = np.concatenate([train, np.asarray(holdout_returns, dtype=np.float64)])
    holdout_idx = np.arange(len(train), len(series))
    out = garch_baselines(train, series, holdout_idx, horizon, seed=seed)
    out["naive_rv"] = np.maximum(naive_realized_vol(series, holdout_idx, horizon), 1e-12)
    out["train_mean"] = np.full(len(holdout_idx), float(np.mean(y_train)))
    if len(y_holdout) != len(holdout_idx):
        raise ValueError(f"{len(y_holdout)} holdout labels but {len(holdout_idx)} holdout returns")
    return out
