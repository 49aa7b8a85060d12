"""The replay's bars: the top of book from ingested snapshots, point in time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.catalog import spec_by_name
from pipelines.config import get_settings

AS_OF = pd.Timestamp("2040-01-01", tz="UTC")
SPEC = spec_by_name("execution_ppo")


def _snapshots(bars: pd.DataFrame, per_bar: int, seed: int) -> pd.DataFrame:
    """``per_bar`` book snapshots inside each 1-minute bar, the last one carrying the bar's own
    spread and sizes (mid = close)."""
    rng = np.random.default_rng(seed)
    rows = []
    for ts, bar in bars.iterrows():
        for k in range(per_bar):
            last = k == per_bar - 1
            spread = bar["spread"] if last else bar["spread"] * rng.uniform(0.5, 3.0)
            rows.append({"ts": ts + pd.Timedelta(seconds=10 * k + 5), "bid_price": bar["close"] - spread / 2,
                         "ask_price": bar["close"] + spread / 2,
                         "bid_size": bar["bid_size"] if last else rng.uniform(1, 50),
                         "ask_size": bar["ask_size"] if last else rng.uniform(1, 50),
                         "bid_depth": 100.0, "ask_depth": 100.0})
    return pd.DataFrame(rows).set_index("ts")


def test_the_replay_takes_each_bars_book_from_the_last_snapshot_before_its_close(alphaops_home):
    """Bars ingested without book columns plus snapshots (``--kind book``): episode_bars joins the
    last snapshot before each bar's close, so the replay equals the one of bars that carry the book;
    a snapshot after the close never enters the bar, and a sparse book is refused with the share."""
    from models.cv import InsufficientDataError
    from pipelines.ingest.ingestion import ingest
    from pipelines.ingest.sources import FrameSource
    from pipelines.ingest.synthetic import SyntheticMarket
    from pipelines.evaluation.replay import book_at_bar_close, episode_bars

    settings = get_settings()
    full, _ = SyntheticMarket(seed=4, n_bars=400).generate()
    book = _snapshots(full, per_bar=3, seed=4)
    plain = full.drop(columns=["spread", "bid_size", "ask_size"])
    ingest(FrameSource(plain, name="generated:BOOKJOIN"), symbol="BOOKJOIN", timeframe="1m", settings=settings,
           as_of=AS_OF)
    with pytest.raises(InsufficientDataError, match="no snapshots in the book table"):
        episode_bars(settings, SPEC, symbol="BOOKJOIN", timeframe="1m", as_of=AS_OF)
    ingest(FrameSource(book, name="generated:BOOKJOIN-book", kind="book"), symbol="BOOKJOIN", timeframe="book",
           settings=settings, as_of=AS_OF)
    replayed = episode_bars(settings, SPEC, symbol="BOOKJOIN", timeframe="1m", as_of=AS_OF)
    assert len(replayed) == len(full)
    for column in ("spread", "bid_size", "ask_size"):
        np.testing.assert_allclose(replayed[column].to_numpy(), full[column].to_numpy(), rtol=1e-9)

    # A snapshot stamped at a bar's close belongs to the next bar (bars are stamped at their open).
    moved = book.copy()
    at_close = full.index[10] + pd.Timedelta(minutes=1)
    moved.loc[at_close] = {**moved.iloc[0].to_dict(), "bid_price": 1.0, "ask_price": 9.0}
    joined = book_at_bar_close(plain, moved.sort_index(), "1m")
    assert joined["spread"].iloc[10] == pytest.approx(full["spread"].iloc[10])
    assert joined["spread"].iloc[11] == pytest.approx(full["spread"].iloc[11])  # its own last snapshot is later
    # Bars before the first snapshot are cut; a book with a snapshot every third bar is refused.
    assert len(book_at_bar_close(plain, book[book.index >= full.index[50]], "1m")) == len(full) - 50
    with pytest.raises(ValueError, match=r"66\.\d% of the bars have no book snapshot of their own"):
        book_at_bar_close(plain, book.iloc[2::9], "1m")
