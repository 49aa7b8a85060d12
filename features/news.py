"""Per-bar news features from scored headlines, joined point in time.

**When a headline counts.** Bars are indexed by their open time and a bar's features are
known at its close (``features.compute``'s convention: the row of bar t uses bars up to and
including t). A headline stamped ``h`` belongs to the bar whose interval ``[open, close)``
holds it: the last bar with ``open <= h``. It enters that bar's features (computed at its
close, after ``h``) and the trailing windows of later bars, never an earlier bar. A headline at
10:03:20 on one-minute bars counts in the 10:03 bar (closed 10:04), not in the 10:02 bar
(closed 10:03). A headline stamped exactly at a bar's close counts in the next bar. Headlines
before the first bar, or at or after the last bar's close, are left out.

**Features** (windows of ``w`` bars, :data:`NEWS_WINDOWS`; zero where no headline fell in the window):

| name | meaning |
|---|---|
| ``news_count_w`` | headlines in the last w bars |
| ``news_sent_mean_w`` | mean score of those headlines |
| ``news_sent_min_w`` | the most negative score among them (0 without headlines) |
| ``news_sent_z_w`` | z-score of the w-bar score sum against its own last :data:`Z_WINDOW` bars |
| ``news_event_<type>_w`` | headlines flagged ``<type>`` in the last w bars |
| ``news_sent_decay_d`` | sum of headline scores weighted by ``exp(-k / d)``, k = bars since the headline's bar (k < :data:`RECENCY_CAP`) |
| ``news_last_score`` | score of the latest headline within :data:`RECENCY_CAP` bars (0 if none) |
| ``news_bars_since`` | bars since that headline's bar, capped at :data:`RECENCY_CAP` |

Every feature has finite memory (at most ``Z_WINDOW + max(NEWS_WINDOWS)`` bars) and uses
only rolling windows that end at the bar, so a headline changes no earlier row (tested in
``tests/features/test_news_lookahead.py``). Only numpy and pandas are used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NEWS_FEATURES_VERSION = "news-1"
NEWS_WINDOWS = (30, 240)
Z_WINDOW = 1440
RECENCY_CAP = 240
DECAY_BARS = (5, 20)
EVENT_TYPES = ("hack", "regulation", "listing", "delisting", "partnership", "lawsuit")
NEWS_PREFIX = "news_"


def news_feature_names() -> list[str]:
    names = []
    for w in NEWS_WINDOWS:
        names += [f"news_count_{w}", f"news_sent_mean_{w}", f"news_sent_min_{w}", f"news_sent_z_{w}"]
        names += [f"news_event_{event}_{w}" for event in EVENT_TYPES]
    return names + [f"news_sent_decay_{d}" for d in DECAY_BARS] + ["news_last_score", "news_bars_since"]


def news_feature_set_version(base: str, scorer: str = "") -> str:
    """The feature set of a symbol's bars features plus these news features, e.g. ``fs-1.1+news-1``;
    headlines scored by another scorer than the default add its name: ``fs-1.1+news-1@<scorer>``."""
    return f"{base}+{NEWS_FEATURES_VERSION}" + (f"@{scorer}" if scorer else "")


def bar_positions(headline_ts: pd.DatetimeIndex, bar_open: pd.DatetimeIndex, last_close: pd.Timestamp) -> np.ndarray:
    """Position of the bar each headline belongs to (see the module doc), -1 where it belongs to none."""
    bar_open = pd.DatetimeIndex(bar_open)
    headline_ts = pd.DatetimeIndex(headline_ts)
    if bar_open.tz is None or headline_ts.tz is None:
        raise ValueError("bar and headline timestamps must be timezone-aware (UTC)")
    if not bar_open.is_monotonic_increasing or bar_open.has_duplicates:
        raise ValueError("bar open times must be strictly increasing")
    if len(bar_open) and pd.Timestamp(last_close) <= bar_open[-1]:
        raise ValueError(f"last_close {last_close} must be after the last bar's open {bar_open[-1]}")
    position = bar_open.searchsorted(headline_ts.tz_convert(bar_open.tz), side="right") - 1
    outside = headline_ts >= pd.Timestamp(last_close)
    return np.where(outside, -1, position)


def news_features(scored: pd.DataFrame, bar_open: pd.DatetimeIndex, last_close: pd.Timestamp) -> pd.DataFrame:
    """Every news feature for every bar (float64), from headlines with ``ts``, ``score`` and
    ``event_<type>`` columns (:func:`models.text_sentiment.score_headlines`)."""
    missing = [c for c in ("ts", "score", *(f"event_{e}" for e in EVENT_TYPES)) if c not in scored.columns]
    if missing:
        raise ValueError(f"scored headlines lack column(s) {', '.join(missing)}")
    scores = scored["score"].to_numpy(dtype=np.float64)
    if not np.isfinite(scores).all() or (np.abs(scores) > 1).any():
        raise ValueError("headline scores must be finite and in [-1, +1]")
    n = len(bar_open)
    position = bar_positions(pd.DatetimeIndex(scored["ts"]), bar_open, last_close)
    keep = position >= 0
    position, scores = position[keep], scores[keep]
    count = np.bincount(position, minlength=n).astype(np.float64)
    total = np.bincount(position, weights=scores, minlength=n)
    lowest = np.full(n, np.nan)
    np.fmin.at(lowest, position, scores)
    out: dict[str, np.ndarray] = {}
    for w in NEWS_WINDOWS:
        count_w = _rolling_sum(count, w)
        sum_w = np.where(count_w > 0, _rolling_sum(total, w), 0.0)  # no rounding residue without headlines
        out[f"news_count_{w}"] = count_w
        out[f"news_sent_mean_{w}"] = np.divide(sum_w, count_w, out=np.zeros(n), where=count_w > 0)
        out[f"news_sent_min_{w}"] = np.nan_to_num(
            pd.Series(lowest).rolling(w, min_periods=1).min().to_numpy(), nan=0.0)
        history = pd.Series(sum_w).rolling(Z_WINDOW, min_periods=2)
        mean, std = history.mean().to_numpy(), history.std(ddof=0).to_numpy()
        z = np.divide(sum_w - mean, std, out=np.zeros(n), where=np.isfinite(std) & (std > 1e-12))
        out[f"news_sent_z_{w}"] = z
        for event in EVENT_TYPES:
            flags = scored[f"event_{event}"].to_numpy(dtype=np.float64)[keep]
            out[f"news_event_{event}_{w}"] = _rolling_sum(np.bincount(position, weights=flags, minlength=n), w)
    for d in DECAY_BARS:  # a causal filter: bar t sums the scores of bars t-k, k < RECENCY_CAP
        kernel = np.exp(-np.arange(RECENCY_CAP) / d)
        out[f"news_sent_decay_{d}"] = np.convolve(total, kernel)[:n]
    # Latest headline within RECENCY_CAP bars: its bar's last headline score, carried forward.
    last_in_bar = np.full(n, np.nan)
    order = np.argsort(position, kind="stable")  # headlines in time order within a bar
    last_in_bar[position[order]] = scores[order]
    bar_no = np.where(count > 0, np.arange(n, dtype=np.float64), np.nan)
    since = np.arange(n) - pd.Series(bar_no).ffill(limit=RECENCY_CAP).to_numpy()
    recent = np.isfinite(since) & (since <= RECENCY_CAP)
    out["news_last_score"] = np.where(recent, pd.Series(last_in_bar).ffill(limit=RECENCY_CAP).to_numpy(), 0.0)
    out["news_last_score"] = np.nan_to_num(out["news_last_score"], nan=0.0)
    out["news_bars_since"] = np.where(recent, since, float(RECENCY_CAP))
    frame = pd.DataFrame(out, index=pd.DatetimeIndex(bar_open, name="ts"))
    return frame[news_feature_names()]


def _rolling_sum(values: np.ndarray, window: int) -> np.ndarray:
    """Sum over the last ``window`` entries (fewer at the start), exact for counts."""
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(1, len(values) + 1)
    return cumulative[idx] - cumulative[np.maximum(idx - window, 0)]
