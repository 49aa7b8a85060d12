"""The bars an episodic spec (the execution family's PPO policy) replays, and their episode split.

:func:`episode_bars` reads a symbol's bars with a top of book: the bars' own ``spread``,
``bid_size`` and ``ask_size``, or the ingested book snapshots joined at each bar's close
(:func:`book_at_bar_close`). :func:`episode_split` cuts the bars into training and held-out
episodes with one episode of purge between them. Training, validation (``pipelines.steps.episodes``)
and the monitor's drift reference (``pipelines.live.monitor``) use the same two.
"""

from __future__ import annotations

import pandas as pd

from models.cv import InsufficientDataError
from models.specs import ModelSpec
from pipelines.config import Settings
from warehouse import open_warehouse

BOOK_TIMEFRAME = "book"  # the warehouse timeframe of ingested snapshots (`alphaops ingest FILE --kind book`)
MAX_BARS_WITHOUT_SNAPSHOT = 0.05  # share of bars allowed to carry the previous bar's snapshot


class BookReplayError(ValueError):
    """The book snapshots cannot give the bars a top of book to replay (the message says why)."""


def book_at_bar_close(bars: pd.DataFrame, book: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """``spread``, ``bid_size`` and ``ask_size`` of each bar from the last book snapshot taken
    before the bar closed (``ts < open + bar length``): the replay's top of book at the bar's close.

    Point in time: a snapshot taken after a bar's close never enters it. Bars before the first
    snapshot are cut; a bar with no snapshot of its own carries the previous bar's (counted, and
    a :class:`BookReplayError` names the share when it exceeds :data:`MAX_BARS_WITHOUT_SNAPSHOT`)."""
    from features.timeframes import timeframe_hours

    if book.empty:
        raise BookReplayError("no book snapshots")
    length = pd.Timedelta(hours=timeframe_hours(timeframe))
    closes = pd.DataFrame({"bar_close": (bars.index + length).astype("datetime64[ns, UTC]")})
    snapshots = pd.DataFrame({"snapshot_ts": book.index.astype("datetime64[ns, UTC]"), "spread": book["ask_price"] - book["bid_price"],
                              "bid_size": book["bid_size"], "ask_size": book["ask_size"]}).reset_index(drop=True)
    joined = pd.merge_asof(closes, snapshots, left_on="bar_close", right_on="snapshot_ts",
                           direction="backward", allow_exact_matches=False)
    joined.index = bars.index
    covered = joined["snapshot_ts"].notna()
    if not covered.any():
        raise BookReplayError(f"every book snapshot is after the last bar's close ({closes['bar_close'].iloc[-1]})")
    joined, bars = joined[covered.cummax()], bars[covered.cummax()]
    stale = (joined["snapshot_ts"].to_numpy() < joined.index.to_numpy()).mean()  # the last snapshot is from before this bar opened
    if stale > MAX_BARS_WITHOUT_SNAPSHOT:
        raise BookReplayError(f"{stale:.1%} of the bars have no book snapshot of their own (more than "
                         f"{MAX_BARS_WITHOUT_SNAPSHOT:.0%}); ingest snapshots at least once per {timeframe} bar")
    if (joined["spread"] < 0).any():
        raise BookReplayError("a book snapshot is crossed (ask below bid)")
    return bars.drop(columns=["spread", "bid_size", "ask_size"], errors="ignore").join(
        joined[["spread", "bid_size", "ask_size"]])


def episode_bars(settings: Settings, spec: ModelSpec, *, symbol: str, timeframe: str,
                 as_of: pd.Timestamp) -> pd.DataFrame:
    """The symbol's bars up to ``as_of`` with the top of book to replay: the bars' own ``spread``,
    ``bid_size`` and ``ask_size`` (as the synthetic market's), or else the ingested book snapshots
    of the symbol joined at each bar's close (:func:`book_at_bar_close`). InsufficientDataError
    where neither is there."""
    from models.families.execution_env import BOOK_COLUMNS

    with open_warehouse(settings) as warehouse:
        bars = warehouse.read_bars(tenant=settings.scope, symbol=symbol, timeframe=timeframe, end=as_of)
        if bars.empty:
            raise InsufficientDataError(f"no bars for {symbol} {timeframe} up to {as_of}; ingest data first")
        missing = [c for c in BOOK_COLUMNS if c not in bars.columns or bars[c].isna().any()]
        book = pd.DataFrame()
        if missing:
            book = warehouse.read_book(tenant=settings.scope, symbol=symbol, timeframe=BOOK_TIMEFRAME, end=as_of)
    if not missing:
        return bars
    flow_missing = [c for c in missing if c not in ("spread", "bid_size", "ask_size")]
    if book.empty or flow_missing:
        raise InsufficientDataError(
            f"{spec.name} on {symbol}: no book to replay (bar columns {missing} missing or incomplete"
            + ("" if flow_missing else ", and no snapshots in the book table")
            + "); ingest bars with spread, bid_size and ask_size, such as the synthetic market's, or book snapshots "
              "with `alphaops ingest FILE --kind book`")
    try:
        return book_at_bar_close(bars, book, timeframe)
    except BookReplayError as exc:
        raise InsufficientDataError(f"{spec.name} on {symbol}: the book snapshots cannot be replayed: {exc}") from None


def episode_split(n_bars: int, holdout_fraction: float, horizon: int) -> tuple[int, int]:
    """(train_stop, holdout_start): training episodes lie in ``[0, train_stop)``, held-out ones start at
    ``holdout_start``, one episode of purge between them."""
    holdout_start = n_bars - int(round(n_bars * holdout_fraction))
    train_stop = holdout_start - horizon
    if train_stop <= 0 or holdout_start >= n_bars:
        raise InsufficientDataError(f"{n_bars} bars are too few for a holdout of {holdout_fraction:.0%} "
                                    f"and a purge of {horizon} bars")
    return train_stop, holdout_start
