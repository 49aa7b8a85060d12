"""Holdout metrics: classification, regression, trading after costs, baselines and the null test."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from models.metrics import classifier_score


def classification_metrics(y: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    n_classes = proba.shape[1]
    if n_classes == 2:
        pred = (proba[:, 1] >= threshold).astype(int)
        average = "binary"
    else:
        pred = np.argmax(proba, axis=1)
        average = "macro"
    n = len(y)
    accuracy = float(np.mean(pred == y))
    low, high = wilson_interval(int(np.sum(pred == y)), n)
    return {
        "n_test": float(n),
        "accuracy": accuracy,
        "accuracy_ci95_low": low,
        "accuracy_ci95_high": high,
        "balanced_accuracy": float(skm.balanced_accuracy_score(y, pred)),
        "auc": classifier_score("auc", y, proba, n_classes),
        "f1": float(skm.f1_score(y, pred, average=average, zero_division=0)),
        "precision": float(skm.precision_score(y, pred, average=average, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, average=average, zero_division=0)),
        "log_loss": float(skm.log_loss(y, np.clip(proba, 1e-7, 1.0), labels=np.arange(n_classes))),
    }


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Binomial 95% interval (Wilson score) for a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(centre - half), float(centre + half)


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R²; for ``[n, n_targets]`` labels, each is the mean of the per-target values
    (as ``models.metrics.regressor_score`` scores the primary metric and the baselines)."""
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if y.ndim == 2:
        per_target = [regression_metrics(y[:, k], pred[:, k]) for k in range(y.shape[1])]
        return {"n_test": float(len(y)),
                **{name: float(np.mean([m[name] for m in per_target])) for name in ("rmse", "mae", "r2")}}
    return {
        "n_test": float(len(y)),
        "rmse": float(np.sqrt(np.mean((y - pred) ** 2))),
        "mae": float(np.mean(np.abs(y - pred))),
        "r2": float(skm.r2_score(y, pred)),
    }


def periods_per_year(index: pd.DatetimeIndex) -> float:
    """Bars per year as observed in ``index`` (252-ish for equities' daily bars)."""
    years = (index[-1] - index[0]).total_seconds() / (365.25 * 86400)
    return float(len(index) / years) if years > 0 else 252.0


def trading_metrics(position: np.ndarray, next_return: np.ndarray, *, cost_per_turnover: float,
                    bars_per_year: float) -> dict[str, float]:
    """Metrics of holding ``position`` (−1..1) for one bar, after costs on every change of position."""
    position = np.asarray(position, dtype=float)
    turnover = np.abs(np.diff(np.concatenate([[0.0], position])))
    pnl = strategy_pnl(position, next_return, cost_per_turnover)
    equity = np.cumprod(1.0 + pnl)
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    drawdown = 1.0 - equity / peak
    total = float(equity[-1] - 1.0) if len(equity) else 0.0
    years = len(pnl) / bars_per_year
    std = float(np.std(pnl))
    active = pnl[position != 0]
    gains, losses = active[active > 0].sum(), -active[active < 0].sum()
    return {
        "total_return": total,
        "annual_return": float((1.0 + total) ** (1.0 / years) - 1.0) if years > 0 and total > -1 else -1.0,
        "sharpe": float(np.mean(pnl) / std * np.sqrt(bars_per_year)) if std > 0 else 0.0,
        "profit_factor": float(gains / losses) if losses > 0 else float("inf") if gains > 0 else 0.0,
        "max_drawdown": float(drawdown.max()) if len(drawdown) else 0.0,
        "win_rate": float(np.mean(active > 0)) if len(active) else 0.0,
        "turnover": float(turnover.mean()),
        "n_trades": float(np.count_nonzero(turnover)),
    }


def classifier_position(proba: np.ndarray) -> np.ndarray:
    """Long when up is likelier than down, short when down is likelier than up (first class
    is down, last is up); flat where a middle class (neutral) is at least as likely as both."""
    edge = proba[:, -1] - proba[:, 0]
    position = np.sign(edge)
    if proba.shape[1] > 2:
        position[np.maximum(proba[:, -1], proba[:, 0]) <= proba[:, 1:-1].max(axis=1)] = 0.0
    return position


def hold_for_horizon(signal: np.ndarray, horizon: int) -> np.ndarray:
    """The position of a signal that forecasts ``horizon`` bars: each bar's signal is held for
    ``horizon`` bars with weight ``1/horizon`` (overlapping portfolios, as in Jegadeesh &
    Titman), so the position at t is the mean of the signals at ``t-horizon+1 .. t`` (those
    since the start at first). Uses no signal after t; ``horizon`` 1 is the signal itself."""
    signal = np.asarray(signal, dtype=float)
    if horizon <= 1:
        return signal
    sums = np.cumsum(np.concatenate([[0.0], signal]))
    position = sums[1:].copy()
    position[horizon:] -= sums[1:-horizon]
    return position / horizon


def block_permutation(y: np.ndarray, block: int, rng: np.random.Generator) -> np.ndarray:
    """Shuffle contiguous blocks of ``y``: breaks the link to X, keeps the label's autocorrelation."""
    starts = np.arange(0, len(y), block)
    order = rng.permutation(len(starts))
    return np.concatenate([y[starts[i]:starts[i] + block] for i in order])


@dataclass(frozen=True)
class NullTest:
    """The real score against scores under permuted labels (in the metric's own units).

    ``stop_after``: the null scores were drawn sequentially and drawing stopped at the
    ``stop_after``-th null score at least as good as the real one (Besag & Clifford's
    sequential Monte Carlo test, 1991). The p-value is then ``stop_after / draws``; when the
    draws ran out first it is the usual ``(1 + beats) / (1 + draws)``. Either way it is a
    valid p-value, and with ``stop_after >= 1`` the decision ``p < alpha`` is the same as
    with every draw made (stopping only ever happens once ``p >= stop_after / n >= 1/n``).
    """

    real: float
    null_scores: list[float]
    greater_is_better: bool = True
    stop_after: int | None = None

    def beats(self, score: float) -> bool:
        """Is a null ``score`` at least as good as the real one?"""
        sign = 1.0 if self.greater_is_better else -1.0
        return not np.isfinite(self.real) or sign * score >= sign * self.real

    @property
    def stopped_early(self) -> bool:
        return self.stop_after is not None and sum(map(self.beats, self.null_scores)) >= self.stop_after

    @property
    def p_value(self) -> float:
        """Share of null scores at least as good as the real one (with the +1 correction)."""
        if not np.isfinite(self.real):
            return 1.0
        beats = sum(map(self.beats, self.null_scores))
        if self.stopped_early:
            return beats / len(self.null_scores)
        return (1 + beats) / (1 + len(self.null_scores))

    def as_metrics(self) -> dict[str, float]:
        scores = np.asarray(self.null_scores)
        return {"null_p_value": self.p_value, "null_mean": float(scores.mean()),
                "null_q95": float(np.quantile(scores, 0.95)), "null_n": float(len(scores)),
                "null_stopped_early": float(self.stopped_early)}


def permutation_scorer(spec: Any, output: np.ndarray) -> Callable[[np.ndarray], float]:
    """``y -> spec's primary metric of the fixed ``output``, equal to ``models.metrics.primary_score``.

    The output is fixed across draws, so AUC is computed from its midranks once: each draw
    is then a sum over the positives (Mann–Whitney). Losses are plain means. A holdout that
    lacks a class falls back to ``primary_score``.
    """
    from scipy.stats import rankdata

    from models.metrics import primary_score, regressor_score

    output = np.asarray(output, dtype=np.float64)
    if spec.task == "regressor":
        return lambda y: regressor_score(spec.metric, y, output)
    if spec.metric not in ("auc", "event_auc"):
        return lambda y: primary_score(spec, y, output)
    columns = output[:, 1:2] if output.ndim == 2 and output.shape[1] == 2 else output.reshape(len(output), -1)
    ranks = np.column_stack([rankdata(columns[:, k]) for k in range(columns.shape[1])])
    n_classes = columns.shape[1]

    def auc(y: np.ndarray) -> float:
        y = np.asarray(y).astype(int)
        if n_classes == 1:  # binary: positives are class 1 (or an event)
            n1 = int(y.sum())
            n0 = len(y) - n1
            if n1 == 0 or n0 == 0:
                return primary_score(spec, y, output)
            return float((ranks[y == 1, 0].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
        counts = np.bincount(y, minlength=n_classes)
        if (counts == 0).any():
            return primary_score(spec, y, output)
        per_class = [(ranks[y == k, k].sum() - c * (c + 1) / 2) / (c * (len(y) - c)) for k, c in enumerate(counts)]
        return float(np.mean(per_class))

    return auc


def holdout_permutation_test(spec: Any, y: np.ndarray, output: np.ndarray, *, n: int, block: int,
                             rng: np.random.Generator, stop_after: int | None = None) -> NullTest:
    """The fixed model's holdout output against block-permuted holdout labels (no retraining).

    Exact for any family, and cheap (see :func:`permutation_scorer`), so it runs thousands of
    draws and its p-value resolves down to ``1 / (n + 1)``. Sequential like :class:`NullTest`.
    """
    from models.metrics import primary_score

    score_of = permutation_scorer(spec, output)
    result = NullTest(real=primary_score(spec, y, output), null_scores=[],
                      greater_is_better=spec.greater_is_better, stop_after=stop_after)
    beats = 0
    for _ in range(n):
        score = score_of(block_permutation(y, block, rng))
        result.null_scores.append(score)
        beats += result.beats(score)
        if stop_after is not None and beats >= stop_after:
            break
    return result


def strategy_pnl(position: np.ndarray, next_return: np.ndarray, cost_per_turnover: float) -> np.ndarray:
    """Per-bar P&L of holding ``position`` for one bar, after costs on every change of position."""
    position = np.asarray(position, dtype=float)
    turnover = np.abs(np.diff(np.concatenate([[0.0], position])))
    return position * np.asarray(next_return, dtype=float) - cost_per_turnover * turnover


def sharpe_statistics(pnl: np.ndarray) -> dict[str, float]:
    """Per-bar Sharpe ratio (not annualized), skewness, kurtosis (3 for a normal) and length of ``pnl``."""
    from scipy import stats

    pnl = np.asarray(pnl, dtype=float)
    std = float(np.std(pnl))
    return {"sr_per_bar": float(np.mean(pnl) / std) if std > 0 else 0.0,
            "pnl_skew": float(stats.skew(pnl)) if std > 0 else 0.0,
            "pnl_kurtosis": float(stats.kurtosis(pnl, fisher=False)) if std > 0 else 3.0,
            "pnl_n": float(len(pnl))}


def expected_max_sharpe(n_trials: int, sr_variance: float) -> float:
    """Expected maximum of ``n_trials`` Sharpe ratios of zero skill (Bailey & López de Prado 2014)."""
    from scipy.stats import norm

    if n_trials <= 1:
        return 0.0
    gamma = 0.5772156649015329  # Euler–Mascheroni
    return float(np.sqrt(sr_variance) * ((1 - gamma) * norm.ppf(1 - 1 / n_trials)
                                         + gamma * norm.ppf(1 - 1 / (n_trials * np.e))))


def deflated_sharpe_ratio(sr: float, n_obs: int, skew: float, kurtosis: float, n_trials: int,
                          sr_variance: float | None = None) -> float:
    """Probability that the true per-bar Sharpe exceeds the best of ``n_trials`` lucky ones.

    Bailey & López de Prado (2014): ``DSR = Φ((SR − SR₀)·√(T−1) / √(1 − γ₃·SR + (γ₄−1)/4·SR²))``
    with ``SR₀`` the expected maximum of ``n_trials`` zero-skill Sharpe ratios. Without a
    measured variance across trials, ``sr_variance`` is the estimator's variance under zero
    skill, ``1 / T``.
    """
    from scipy.stats import norm

    if n_obs < 3:
        return 0.0
    variance = sr_variance if sr_variance is not None else 1.0 / n_obs
    sr0 = expected_max_sharpe(n_trials, variance)
    denominator = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if denominator <= 0:
        return 0.0
    return float(norm.cdf((sr - sr0) * np.sqrt(n_obs - 1) / np.sqrt(denominator)))


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg q-values (adjusted p-values) of ``p_values``, in their order."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out
