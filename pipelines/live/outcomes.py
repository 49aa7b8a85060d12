"""Outcomes of logged predictions: filled in from later bars, and joined back to the predictions."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import Settings
from pipelines.values import as_timestamp

log = logging.getLogger(__name__)


def model_tags(registry: Any, name: str) -> dict[str, str] | None:
    from mlflow.exceptions import MlflowException

    try:
        return dict(registry.client.get_registered_model(name).tags)
    except MlflowException:
        return None


def fill_outcomes(settings: Settings, as_of: pd.Timestamp, *,
                  lookback: pd.Timedelta = pd.Timedelta(days=30)) -> int:
    """Write the outcome of every logged prediction (of the last ``lookback``) whose label is
    known from bars up to ``as_of``; returns the rows filled.

    The outcome is the model spec's own label at the prediction's bar (the bar with
    ``ts <= prediction ts < ts + timeframe``), e.g. ``1.0`` if ``close[t+h] > close[t]`` for a
    direction model with horizon ``h``; for a multi-output model, whose logged ``output`` is its
    first output, the realized value of its first target (e.g. ``liq_log_volume_6h``). Rows are
    rewritten with a higher ``version`` (ReplacingMergeTree upsert), so running it again is a no-op.
    """
    from models.catalog import spec_by_name
    from pipelines.ingest.sources import timeframe_delta
    from registry import Registry
    from warehouse import open_warehouse

    as_of = as_timestamp(as_of)
    registry = Registry.from_settings(settings)
    filled = 0
    # The warehouse is held only to read and to write; registry look-ups and labels happen outside it.
    with open_warehouse(settings) as warehouse:
        pending = warehouse.read_predictions(tenant=settings.scope, start=as_of - lookback, end=as_of,
                                             missing_outcome=True)
    outcomes = []
    for (model, symbol), rows in pending.groupby(["model", "symbol"], sort=True):
        tags = model_tags(registry, str(model))
        if tags is None or "spec" not in tags or "timeframe" not in tags:
            log.warning("fill_outcomes: %s is not a registered model with spec and timeframe tags; skipped", model)
            continue
        try:
            spec = spec_by_name(tags["spec"], tags["timeframe"])
        except (KeyError, ValueError):
            log.warning("fill_outcomes: %s has unknown spec %r; skipped", model, tags["spec"])
            continue
        step = timeframe_delta(tags["timeframe"])
        with open_warehouse(settings) as warehouse:
            bars = warehouse.read_bars(tenant=settings.scope, symbol=str(symbol), timeframe=tags["timeframe"],
                                       start=rows["ts"].min() - step, end=as_of)
        if bars.empty:
            continue
        labels = spec.label_for(bars)
        if spec.targets:  # the log keeps a multi-output model's first output: its outcome is the first target
            labels = labels[spec.targets[0]]
        labels = labels.dropna()  # only labels whose future bars are known by as_of
        if labels.empty:
            continue
        table = labels.rename("label").rename_axis("bar_ts").reset_index()
        table["bar_ts"] = pd.DatetimeIndex(table["bar_ts"]).astype("datetime64[us, UTC]")
        ordered = rows.sort_values("ts").reset_index(drop=True)
        ordered["ts"] = pd.DatetimeIndex(ordered["ts"]).astype("datetime64[us, UTC]")
        matched = pd.merge_asof(ordered, table, left_on="ts", right_on="bar_ts", direction="backward",
                                tolerance=step - pd.Timedelta(microseconds=1))
        done = matched[matched["label"].notna()].copy()
        if done.empty:
            continue
        done["outcome"] = done["label"].astype(float)
        done["version"] = np.uint64(time.time_ns())
        outcomes.append(done.drop(columns=["label", "bar_ts"]))
    if outcomes:
        with open_warehouse(settings) as warehouse:
            for frame in outcomes:
                filled += warehouse.write_predictions(frame)
    log.info("fill_outcomes as of %s: %d outcome(s) written", as_of.isoformat(), filled)
    return filled


def _is_binary(settings: Settings, name: str) -> bool:
    """Whether the registered model's spec is a two-class classifier (False when unknown)."""
    from models.catalog import spec_by_name
    from registry import Registry

    tags = model_tags(Registry.from_settings(settings), name) or {}
    try:
        spec = spec_by_name(tags["spec"])
    except (KeyError, ValueError):
        return False
    return spec.task == "classifier" and len(spec.class_names) == 2


def join_predictions_outcomes(settings: Settings, model: str, *, start: pd.Timestamp | None = None,
                              end: pd.Timestamp | None = None, with_features: bool = False) -> pd.DataFrame:
    """The model's logged predictions whose outcome is known, one row each, ordered by time.

    Columns: ``ts, model_version, symbol, routed_to, output, confidence, outcome, latency_us,
    fallback`` (and ``features`` if asked), plus ``predicted_up`` and ``correct`` when the
    registered model is a two-class classifier (see :func:`pipelines.live.metrics.predicted_up`). Rows that raised
    or were answered by the fallback rule are left out. ``model`` may omit the tenant prefix.
    """
    from pipelines.live.metrics import predicted_up
    from warehouse import open_warehouse

    name = model if model.startswith(f"{settings.scope}.") else f"{settings.scope}.{model}"
    with open_warehouse(settings) as warehouse:
        frame = warehouse.read_predictions(tenant=settings.scope, model=name, start=start, end=end)
    frame = frame[frame["outcome"].notna() & (frame["error"].astype(str) == "") & ~frame["fallback"].astype(bool)]
    columns = ["ts", "model_version", "symbol", "routed_to", "output", "confidence", "outcome", "latency_us",
               "fallback"] + (["features"] if with_features else [])
    frame = frame[columns].reset_index(drop=True)
    if _is_binary(settings, name):
        frame["predicted_up"] = predicted_up(frame)
        frame["correct"] = frame["predicted_up"] == (frame["outcome"] == 1.0)
    return frame

