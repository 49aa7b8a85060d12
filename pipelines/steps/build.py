"""The features and label steps: bars → ml_features, bars → ml_labels (idempotent upserts)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from features.news import news_feature_set_version
from models.catalog import spec_by_name, timeframe_problem
from pipelines.config import Settings
from warehouse import open_warehouse

log = logging.getLogger(__name__)


def build_features(settings: Settings, *, symbol: str, timeframe: str, as_of: pd.Timestamp) -> dict[str, Any]:
    """Compute the feature set on the symbol's bars up to ``as_of`` and upsert it.

    The features are computed and written in pieces of ``feature_chunk_rows`` bars
    (:func:`features.compute_chunks`, equal to one pass), stored as float32: memory follows
    the piece, not the series. The memory guard refuses a series whose estimate is over budget.
    A symbol with headlines in the warehouse also gets the news features (:func:`news_frame`),
    under the feature set ``<FEATURE_SET_VERSION>+news-1`` when VADER scored them, or
    ``<FEATURE_SET_VERSION>+news-1@<scorer>`` under another scorer (``settings.news_scorer``).
    """
    import features
    from pipelines.memory import require_memory

    # The warehouse is held only to read and to write (other processes wait for it), not to compute.
    with open_warehouse(settings) as warehouse:
        require_memory(settings, "features", rows=warehouse.count_bars(
            tenant=settings.scope, symbol=symbol, timeframe=timeframe, end=as_of), n_features=len(features.catalog()))
        bars = warehouse.read_bars(tenant=settings.scope, symbol=symbol, timeframe=timeframe, end=as_of)
        headlines = warehouse.read_news(tenant=settings.scope, symbol=symbol, end=as_of)
    if bars.empty:
        raise ValueError(f"no bars for symbol {symbol!r} timeframe {timeframe!r}; ingest data first")
    scorer = None
    if len(headlines):
        from models.head_scorer import scorer_for
        from models.text_sentiment import SCORER_NAME

        scorer = scorer_for(settings)  # a missing MiniLM head refuses here, before any write
    news = news_frame(headlines, bars.index, timeframe, as_of, scorer=scorer) if scorer is not None else None
    version = features.FEATURE_SET_VERSION if news is None else news_feature_set_version(
        features.FEATURE_SET_VERSION, "" if scorer.name == SCORER_NAME else scorer.name)
    rows, n_features = 0, 0
    for piece in features.compute_chunks(bars, settings.feature_chunk_rows, n_jobs=settings.n_jobs, dtype=np.float32):
        if news is not None:
            piece = pd.concat([piece, news.loc[piece.index].astype(np.float32)], axis=1)
        n_features = piece.shape[1]
        with open_warehouse(settings) as warehouse:
            rows += warehouse.write_features(piece, tenant=settings.scope, symbol=symbol, timeframe=timeframe,
                                             feature_set_version=version)
        del piece
    return {"symbol": symbol, "timeframe": timeframe, "feature_set_version": version,
            "rows": rows, "n_features": int(n_features),
            **({"headlines": int(len(headlines)), "scorer": scorer.name} if news is not None else {})}


def news_frame(headlines: pd.DataFrame, bar_open: pd.DatetimeIndex, timeframe: str,
               as_of: pd.Timestamp, scorer: Any = None) -> pd.DataFrame:
    """The news features of every bar: headlines scored by ``scorer`` (``models.text_sentiment``;
    VADER when None), then joined point in time (``features.news``). The last bar closes one
    timeframe after its open, and no headline after ``as_of`` is read."""
    from features.news import news_features
    from models.text_sentiment import score_headlines
    from pipelines.ingest.sources import timeframe_delta

    last_close = min(bar_open[-1] + timeframe_delta(timeframe), as_of + pd.Timedelta(microseconds=1))
    return news_features(score_headlines(headlines, scorer), bar_open, max(last_close, bar_open[-1] + pd.Timedelta(1)))


def known_event_label(events: pd.DataFrame, index: pd.DatetimeIndex) -> pd.Series:
    """1.0 on bars inside a recorded market event (e.g. the synthetic market's injected anomalies), else 0.

    ``events`` is the symbol's ``market_events`` (``Warehouse.read_market_events``). The anomaly
    family never trains on it (it is unsupervised); search and validation score the anomaly
    score against it. A symbol without recorded events gets all zeros, and its anomaly model
    cannot be validated.
    """
    from models.families.anomaly import event_mask

    return pd.Series(event_mask(index, events).astype(float), index=index)


def trade_outcome_label(trades: pd.DataFrame, index: pd.DatetimeIndex) -> pd.Series:
    """R-multiple of the platform's own trades (``trade_results``) at the bar each was entered on.

    A trade entered inside a bar counts at that bar (the last bar starting at or before its
    entry); when several trades start in one bar, the first one counts.
    """
    entries = pd.DatetimeIndex(trades["entry_ts"]).tz_convert("UTC")
    position = index.searchsorted(entries, side="right") - 1
    keep = position >= 0
    label = pd.Series(np.nan, index=index)
    first = pd.Series(trades["r_multiple"].to_numpy(dtype=float)[keep], index=position[keep])
    first = first[~first.index.duplicated(keep="first")]
    label.iloc[first.index.to_numpy()] = first.to_numpy()
    return label


def build_labels(settings: Settings, *, symbol: str, timeframe: str, spec_names: list[str],
                 as_of: pd.Timestamp) -> dict[str, Any]:
    """Compute the labels the given specs need and upsert them (the last ``horizon`` rows stay empty).

    A spec that cannot run on these bars (:func:`models.catalog.timeframe_problem`) gets no labels: it
    is logged and returned in ``skipped`` (spec name -> reason)."""
    from pipelines.memory import require_memory

    problems = {name: problem for name in spec_names if (problem := timeframe_problem(name, timeframe))}
    for name, problem in problems.items():
        log.warning("no %s labels for %s %s: %s", name, symbol, timeframe, problem)
    # Universe specs label a universe's joined rows, not one symbol's bars (pipelines.evaluation.universe).
    specs = [spec for spec in (spec_by_name(name, timeframe) for name in spec_names if name not in problems)
             if not spec.universe]
    # The warehouse is held only to read and to write (other processes wait for it), not to compute.
    with open_warehouse(settings) as warehouse:
        require_memory(settings, "labels", rows=warehouse.count_bars(
            tenant=settings.scope, symbol=symbol, timeframe=timeframe, end=as_of), n_features=0)
        bars = warehouse.read_bars(tenant=settings.scope, symbol=symbol, timeframe=timeframe, end=as_of)
        trades = warehouse.read_trades(tenant=settings.scope, symbol=symbol) \
            if any(spec.family == "trade_quality" for spec in specs) else pd.DataFrame()
        events = warehouse.read_market_events(tenant=settings.scope, symbol=symbol) \
            if any(spec.task == "anomaly" for spec in specs) else pd.DataFrame()
    labels = pd.DataFrame({spec.label: spec.label_for(bars) for spec in specs
                           if spec.task != "anomaly" and not spec.targets}, index=bars.index)
    for spec in (s for s in specs if s.targets):
        # Multi-output specs: one column per target, and any companion label their rule returns
        # (the returns family's three-class directions), stored for every symbol the spec runs on.
        frame = spec.make_label(bars)
        spec.label_for(bars)  # the rule returns every target (raises naming a missing one)
        labels = pd.concat([labels, frame], axis=1)
    for spec in (s for s in specs if s.family == "trade_quality" and not trades.empty):
        # The feedback loop: once real trade results are ingested, they replace the sample trade log.
        labels[spec.label] = trade_outcome_label(trades, bars.index)
    for spec in (s for s in specs if s.task == "anomaly"):
        labels[spec.label] = known_event_label(events, bars.index)
    labels = labels.loc[:, ~labels.columns.duplicated()]
    with open_warehouse(settings) as warehouse:
        rows = warehouse.write_labels(labels, tenant=settings.scope, symbol=symbol, timeframe=timeframe)
    return {"symbol": symbol, "timeframe": timeframe, "labels": list(labels.columns), "rows": rows,
            "skipped": problems}
