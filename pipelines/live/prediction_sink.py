"""The prediction-log sink: ``serving.PredictionLog`` records → warehouse ``ml_predictions``.

``serving`` depends only on numpy and onnxruntime; this module is the other end of its log,
on the platform side. Use it as the log's consumer::

    log = serving.PredictionLog()
    predictor = serving.Predictor.load(bundle, log=log)
    log.start(PredictionSink(settings, timeframe="1m"), interval=5.0)

or call :func:`write_predictions` with drained records. One row is written per answered row
(a batch call becomes one row per input row):

- ``ts``: a time inside the **bar whose features were scored**; the outcome is joined on it
  later (:func:`pipelines.live.outcomes.fill_outcomes` takes the bar with
  ``bar.ts <= ts < bar.ts + timeframe``). It is the record's ``bar_ts`` when present (the
  bar's own timestamp); else, when the sink knows the bars' ``timeframe``, the call time
  minus one bar (bars are stamped with their open time, so that lands in the last bar
  closed at call time); else the call time itself. Rows of one batch call are stamped 1 µs
  apart, so that no row replaces another in the ReplacingMergeTree (key: tenant, model,
  symbol, ts, model_version).
- ``symbol``: the record's ``symbol``, else the last part of the model name
  (``<tenant>.<spec>.<symbol>``).
- ``output``: the primary scalar: P(last class) for classifiers (P(up) for direction models,
  whose classes run down → up), ``value`` for regressors, ``score`` for anomaly detectors,
  the first output of multi-output models; the label for fallback answers without
  probabilities; NaN when the call raised.
- ``features``: the scored values in schema order; for a call that raised, its raw input as
  far as it is numeric (else empty), so the monitor skips it by its width.
- ``confidence`` (classifiers), ``latency_us`` (of the call), ``error`` (empty when none),
  ``fallback``, ``routed_to`` (canary arm, empty without a router); ``outcome`` stays NULL
  until it is known.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import USER_SEPARATOR, Settings
from pipelines.values import as_timestamp

COLUMNS = ["tenant", "model", "model_version", "symbol", "ts", "routed_to", "features", "output", "confidence",
           "latency_us", "error", "fallback", "outcome", "version"]


def _timestamp(value: Any) -> pd.Timestamp:
    """A record time (epoch seconds, datetime, ISO string) as a UTC timestamp."""
    if isinstance(value, (int, float, np.integer, np.floating)):
        return pd.Timestamp(float(value), unit="s", tz="UTC")
    return as_timestamp(value)


def _float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _feature_rows(features: Any) -> list[list[float]] | None:
    """Feature values per row: a dict (one row), a list of dicts / of number lists (a batch), or
    None when the input could not be read (calls that raised keep their raw input)."""
    def row(values: Any) -> list[float] | None:
        if isinstance(values, Mapping):
            values = list(values.values())
        if isinstance(values, (list, tuple, np.ndarray)) and all(
                isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values):
            return [float(v) for v in values]
        return None

    if isinstance(features, Mapping):
        one = row(features)
        return None if one is None else [one]
    if isinstance(features, (list, tuple)) and features and all(
            isinstance(r, (Mapping, list, tuple)) for r in features):
        rows = [row(r) for r in features]
        return None if any(r is None for r in rows) else rows  # type: ignore[return-value]
    one = row(features) if isinstance(features, (list, tuple, np.ndarray)) else None
    return None if one is None else [one]


def _primary(output: Mapping[str, Any]) -> tuple[list[float], list[float], list[bool]]:
    """(output, confidence, fallback) per row from a result's ``to_dict()``; a batch result has
    list fields (``fallback`` is a list), a one-row result scalar ones."""
    batch = isinstance(output.get("fallback"), list)

    def rows(value: Any) -> list[Any]:
        return list(value) if batch and isinstance(value, list) else [value]

    fallback = [bool(f) for f in rows(output.get("fallback", False))]
    n = len(fallback)
    nan = [math.nan] * n
    if "probabilities" in output:  # classifier: P(last class), else the label (fallback answers)
        probs = rows(output.get("probabilities")) if batch else [output.get("probabilities")]
        labels = rows(output.get("label"))
        values = [_float(p[-1]) if isinstance(p, list) and p and p[-1] is not None else _float(lab)
                  for p, lab in zip(probs, labels)]
        return values, [_float(c) for c in rows(output.get("confidence"))], fallback
    for key in ("value", "score"):
        if key in output:
            return [_float(v) for v in rows(output.get(key))], nan, fallback
    outputs = output.get("outputs")
    if isinstance(outputs, Mapping) and outputs:
        first = next(iter(outputs.values()))
        return [_float(v[0] if isinstance(v, list) and not batch else v) for v in rows(first)], nan, fallback
    return nan, nan, fallback


def prediction_rows(records: Iterable[Mapping[str, Any]], *, tenant: str,
                    timeframe: str | None = None) -> pd.DataFrame:
    """``ml_predictions`` rows (a frame) for drained ``PredictionLog`` records.

    A row's ``tenant`` key is the scope of the model that answered: ``tenant`` for a shared
    model, ``<tenant>~<user>`` for a model private to a user of ``tenant`` (so each scope's
    monitor and canary read the traffic of its own models)."""
    from pipelines.ingest.sources import timeframe_delta

    step = timeframe_delta(timeframe) if timeframe else None
    version = np.uint64(time.time_ns())
    rows: list[dict[str, Any]] = []
    for rec in records:
        model = str(rec.get("model") or "")
        owner = model.split(".", 1)[0] if model.startswith(f"{tenant}{USER_SEPARATOR}") else tenant
        symbol = str(rec.get("symbol") or model.rsplit(".", 1)[-1])
        error = str(rec.get("error") or "")
        output = rec.get("output")
        feats = _feature_rows(rec.get("features"))
        if isinstance(output, Mapping):
            values, confidence, fallback = _primary(output)
            n = len(values)
        else:  # the call raised: one row with the error
            n = len(feats) if feats else 1
            values, confidence, fallback = [math.nan] * n, [math.nan] * n, [False] * n
        if feats is None or len(feats) != n:
            feats = [[] for _ in range(n)]
        if rec.get("bar_ts") is not None:
            bar_ts = rec["bar_ts"]
            stamps = [_timestamp(t) for t in bar_ts] if isinstance(bar_ts, (list, tuple)) else [_timestamp(bar_ts)] * n
        else:
            call = _timestamp(rec.get("ts") if rec.get("ts") is not None else time.time())
            stamps = [call - step if step is not None else call] * n
        stamps = [t.floor("us") for t in stamps]  # the table keeps microseconds
        if n > 1 and len(set(stamps)) < n:  # rows of one batch call must not replace each other
            stamps = [t + pd.Timedelta(microseconds=i) for i, t in enumerate(stamps)]
        for i in range(n):
            rows.append({
                "tenant": owner, "model": model, "model_version": str(rec.get("version") or ""),
                "symbol": symbol, "ts": stamps[i], "routed_to": str(rec.get("routed_to") or ""),
                "features": feats[i], "output": values[i], "confidence": confidence[i],
                "latency_us": _float(rec.get("latency_us")), "error": error, "fallback": fallback[i],
                "outcome": math.nan, "version": version,
            })
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if not frame.empty:
        frame["ts"] = pd.DatetimeIndex(frame["ts"]).tz_convert("UTC")
    return frame


def write_predictions(settings: Settings, records: Sequence[Mapping[str, Any]], *,
                      timeframe: str | None = None) -> int:
    """Write drained ``PredictionLog`` records to ``ml_predictions``; returns the rows written."""
    from warehouse import open_warehouse

    frame = prediction_rows(records, tenant=settings.tenant, timeframe=timeframe)
    if frame.empty:
        return 0
    with open_warehouse(settings) as warehouse:
        return warehouse.write_predictions(frame)


class PredictionSink:
    """A ``PredictionLog`` consumer: ``log.start(PredictionSink(settings), interval)``.

    Each flush opens the warehouse, writes, and closes it again (embedded chDB allows one
    process per data path, so nothing is held between flushes). Errors propagate to the log,
    which counts them (``log.stats["consumer_errors"]``) and keeps serving.
    """

    def __init__(self, settings: Settings, *, timeframe: str | None = None) -> None:
        self.settings = settings
        self.timeframe = timeframe
        self.rows_written = 0

    def __call__(self, records: list[dict[str, Any]]) -> None:
        self.rows_written += write_predictions(self.settings, records, timeframe=self.timeframe)
