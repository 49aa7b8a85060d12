"""News features are point in time: a headline changes no bar whose features were computed before it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.news import RECENCY_CAP, bar_positions, news_feature_names, news_features


def _scored(ts: list[str], scores: list[float], hack: list[int] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"ts": pd.DatetimeIndex(ts, tz="UTC"), "score": scores})
    for event in ("hack", "regulation", "listing", "delisting", "partnership", "lawsuit"):
        frame[f"event_{event}"] = hack if (event == "hack" and hack is not None) else 0
    return frame


BARS = pd.date_range("2024-01-02 09:00", periods=600, freq="1min", tz="UTC", name="ts")
LAST_CLOSE = BARS[-1] + pd.Timedelta("1min")


def test_a_headline_belongs_to_the_bar_whose_interval_holds_it() -> None:
    ts = pd.DatetimeIndex(["2024-01-02 10:03:20", "2024-01-02 10:04:00", "2024-01-02 08:59:59",
                           "2024-01-02 18:59:59", "2024-01-02 19:00:00"], tz="UTC")
    position = bar_positions(ts, BARS, LAST_CLOSE)
    assert BARS[position[0]] == pd.Timestamp("2024-01-02 10:03", tz="UTC")   # inside 10:03-10:04
    assert BARS[position[1]] == pd.Timestamp("2024-01-02 10:04", tz="UTC")   # at 10:04: the next bar
    assert position[2] == -1 and position[4] == -1                          # before the first / at the last close
    assert position[3] == len(BARS) - 1


def test_features_before_a_headline_do_not_change_and_its_bar_does() -> None:
    rng = np.random.default_rng(0)
    stamps = sorted(BARS[0] + pd.to_timedelta(rng.uniform(0, 36_000, 80), unit="s"))
    base = _scored([str(t) for t in stamps], list(rng.uniform(-1, 1, 80)), list(rng.integers(0, 2, 80)))
    before = news_features(base, BARS, LAST_CLOSE)
    headline = pd.Timestamp("2024-01-02 13:30:20", tz="UTC")
    added = pd.concat([base, _scored([str(headline)], [-0.9], [1])], ignore_index=True)
    after = news_features(added, BARS, LAST_CLOSE)
    closes = BARS + pd.Timedelta("1min")
    earlier = closes <= headline                     # computed at or before the headline's time
    pd.testing.assert_frame_equal(after[earlier], before[earlier], check_exact=True)
    its_bar = BARS.get_loc(pd.Timestamp("2024-01-02 13:30", tz="UTC"))
    assert after["news_count_30"].iloc[its_bar] == before["news_count_30"].iloc[its_bar] + 1
    assert after["news_event_hack_30"].iloc[its_bar] == before["news_event_hack_30"].iloc[its_bar] + 1
    assert after["news_sent_min_30"].iloc[its_bar] == pytest.approx(min(-0.9, before["news_sent_min_30"].iloc[its_bar]))
    assert after["news_last_score"].iloc[its_bar] == pytest.approx(-0.9)
    assert after["news_bars_since"].iloc[its_bar] == 0
    # a later headline on the same bars changes nothing before it either (prefix of the series)
    head = news_features(base, BARS[:its_bar + 1], closes[its_bar])
    pd.testing.assert_frame_equal(head, before.iloc[:its_bar + 1], check_exact=False, rtol=0, atol=1e-12)


def test_window_values_and_memory() -> None:
    scored = _scored(["2024-01-02 09:10:30", "2024-01-02 09:20:10"], [0.5, -0.7])
    frame = news_features(scored, BARS, LAST_CLOSE)
    assert list(frame.columns) == news_feature_names()
    at_20 = BARS.get_loc(pd.Timestamp("2024-01-02 09:20", tz="UTC"))
    assert frame["news_count_30"].iloc[at_20] == 2
    assert frame["news_sent_mean_30"].iloc[at_20] == pytest.approx(-0.1)
    assert frame["news_sent_min_30"].iloc[at_20] == pytest.approx(-0.7)
    assert frame["news_sent_decay_5"].iloc[at_20] == pytest.approx(-0.7 + 0.5 * np.exp(-10 / 5))
    assert frame["news_count_30"].iloc[at_20 + 30] == 0 and frame["news_count_240"].iloc[at_20 + 30] == 2
    assert frame["news_bars_since"].iloc[at_20 + 3] == 3
    assert frame["news_bars_since"].iloc[at_20 + RECENCY_CAP + 1] == RECENCY_CAP
    assert frame["news_last_score"].iloc[at_20 + RECENCY_CAP + 1] == 0.0
    assert np.isfinite(frame.to_numpy()).all()
    assert (frame.iloc[:10] == 0).drop(columns="news_bars_since").all().all()


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="lack column"):
        news_features(pd.DataFrame({"ts": [], "score": []}), BARS, LAST_CLOSE)
    with pytest.raises(ValueError, match=r"\[-1, \+1\]"):
        news_features(_scored(["2024-01-02 09:10:30"], [1.5]), BARS, LAST_CLOSE)
    with pytest.raises(ValueError, match="after the last bar"):
        bar_positions(pd.DatetimeIndex([], tz="UTC"), BARS, BARS[-1])
