"""Evidently drift of logged feature rows and model outputs against the training reference."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.live.thresholds import MonitorConfig
from pipelines.values import finite_or_none

@dataclass
class DriftResult:
    drift_share: float
    n_drifted: int
    n_features: int
    drifted_features: list[str]
    prediction_drift: bool
    prediction_drift_score: float | None
    snapshot: Any  # the Evidently snapshot (HTML report)


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, features: Sequence[str],
                 config: MonitorConfig) -> DriftResult:
    """Evidently data drift of ``features`` and drift of ``OUTPUT_COLUMN``, current vs reference.

    A feature counts as drifted when its Evidently drift test fails (``feature_drift_method``
    at ``feature_drift_threshold``).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift
    from evidently.presets import DataDriftPreset

    features = list(features)
    columns = features + [OUTPUT_COLUMN]
    definition = DataDefinition(numerical_columns=columns)
    method, threshold = config.feature_drift_method, config.feature_drift_threshold
    if config.drift_preset:
        metrics: list[Any] = [DataDriftPreset(columns=features, drift_share=config.drift_share_threshold,
                                              method=method, threshold=threshold)]
    else:  # the metrics DataDriftPreset generates, without its legacy summary widgets
        metrics = [DriftedColumnsCount(columns=features, drift_share=config.drift_share_threshold, method=method,
                                       threshold=threshold)]
        metrics += [ValueDrift(column=f, method=method, threshold=threshold) for f in features]
    metrics.append(ValueDrift(column=OUTPUT_COLUMN, method=method, threshold=threshold))
    report = Report(metrics, include_tests=True)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        snapshot = report.run(Dataset.from_pandas(current[columns].astype(float), data_definition=definition),
                              Dataset.from_pandas(reference[columns].astype(float), data_definition=definition))
    payload = snapshot.dict()
    scores: dict[str, float] = {}
    for metric in payload["metrics"]:
        config_ = metric.get("config", {})
        if str(config_.get("type", "")).endswith("ValueDrift"):
            scores[config_["column"]] = finite_or_none(metric.get("value"))  # type: ignore[assignment]
    failed: dict[str, bool] = {}
    for test in payload.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if str(params.get("type", "")).endswith("ValueDrift"):
            status = getattr(test.get("status"), "value", test.get("status"))
            failed[params["column"]] = str(status) == "FAIL"
    drifted = [f for f in features if failed.get(f, False)]
    return DriftResult(drift_share=len(drifted) / len(features) if features else 0.0, n_drifted=len(drifted),
                       n_features=len(features), drifted_features=drifted,
                       prediction_drift=failed.get(OUTPUT_COLUMN, False),
                       prediction_drift_score=scores.get(OUTPUT_COLUMN), snapshot=snapshot)


OUTPUT_COLUMN = "model_output"

