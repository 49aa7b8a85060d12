"""Live metrics of a prediction-log frame, and the canary decision made from two arms' metrics.

The monitor reads them per champion, the canary step per arm (champion and challenger).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def predicted_up(frame: pd.DataFrame) -> np.ndarray:
    """For binary classifiers: did the call predict the positive (last) class?

    ``output`` is P(last class) and ``confidence`` the probability of the predicted class, so
    the call said "up" exactly when they are equal (this also holds with a decision threshold).
    Without a confidence, ``output >= 0.5``.
    """
    output = frame["output"].to_numpy(dtype=float)
    confidence = frame["confidence"].to_numpy(dtype=float)
    same = np.isclose(output, confidence, rtol=0.0, atol=1e-9)
    return np.where(np.isfinite(confidence), same, output >= 0.5)


def live_metrics(frame: pd.DataFrame, *, binary: bool = True, regression: bool = False) -> dict[str, Any]:
    """Serving health and live quality of a prediction-log frame (e.g. one canary arm).

    ``live_accuracy`` (binary classifiers only) is over rows with a known outcome that were
    answered by the model (no error, no fallback); ``hit_rate`` is the same share, the name the
    canary decision uses. For a ``regression`` model, ``live_mae`` and ``live_rmse`` are the
    errors of ``output`` against the outcome on the same rows (for a multi-output model, its
    first output against its first target).
    """
    n = len(frame)
    out: dict[str, Any] = {"n_predictions": n, "n_outcomes": 0, "live_accuracy": None, "hit_rate": None,
                           "live_mae": None, "live_rmse": None,
                           "latency_p50_us": None, "latency_p95_us": None, "latency_p99_us": None,
                           "error_rate": 0.0, "fallback_rate": 0.0}
    if n == 0:
        return out
    latency = frame["latency_us"].to_numpy(dtype=float)
    latency = latency[np.isfinite(latency)]
    if len(latency):
        p50, p95, p99 = np.percentile(latency, [50, 95, 99])
        out.update(latency_p50_us=float(p50), latency_p95_us=float(p95), latency_p99_us=float(p99))
    errors = frame["error"].astype(str).str.len().to_numpy() > 0
    fallback = frame["fallback"].astype(bool).to_numpy()
    out["error_rate"] = float(errors.mean())
    out["fallback_rate"] = float(fallback.mean())
    known = frame[(~errors) & (~fallback) & frame["outcome"].notna().to_numpy()
                  & np.isfinite(frame["output"].to_numpy(dtype=float))]
    out["n_outcomes"] = int(len(known))
    if binary and len(known):
        correct = predicted_up(known) == (known["outcome"].to_numpy(dtype=float) == 1.0)
        out["live_accuracy"] = out["hit_rate"] = float(correct.mean())
    if regression and len(known):
        error = known["output"].to_numpy(dtype=float) - known["outcome"].to_numpy(dtype=float)
        out["live_mae"] = float(np.mean(np.abs(error)))
        out["live_rmse"] = float(np.sqrt(np.mean(error ** 2)))
    return out


def decide_canary(live_champion: dict[str, float], live_challenger: dict[str, float], *,
                  min_outcomes: int = 30, max_error_rate: float = 0.01,
                  max_latency_ratio: float = 1.5) -> tuple[str, str]:
    """``promote`` / ``rollback`` / ``wait`` from the two arms' live metrics, with the reason."""
    n = live_challenger.get("n_outcomes") or 0
    if (live_challenger.get("error_rate") or 0.0) > max_error_rate:
        return "rollback", f"challenger error rate {live_challenger['error_rate']:.2%} > {max_error_rate:.2%}"
    champ_p50 = live_champion.get("latency_p50_us") or np.nan
    chall_p50 = live_challenger.get("latency_p50_us") or np.nan
    if np.isfinite(champ_p50) and np.isfinite(chall_p50) and chall_p50 > max_latency_ratio * champ_p50:
        return "rollback", f"challenger p50 latency {chall_p50:.0f}us > {max_latency_ratio}x champion's"
    if n < min_outcomes:
        return "wait", f"only {n} challenger outcomes known (need {min_outcomes})"
    hit_new, hit_old = live_challenger.get("hit_rate") or 0.0, live_champion.get("hit_rate") or 0.0
    if hit_new >= hit_old:
        return "promote", f"challenger hit rate {hit_new:.3f} >= champion {hit_old:.3f} over {int(n)} outcomes"
    return "rollback", f"challenger hit rate {hit_new:.3f} < champion {hit_old:.3f} over {int(n)} outcomes"
