"""The real monitor_drift DAG, run with dag.test(): skipped when nothing needs retraining, and an
Asset event on alphaops://retrain-request when a champion's live traffic comes from a shifted regime."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.config import get_settings

SYMBOL = "MONDAG"
NAME = f"default.direction_h1.{SYMBOL}"
AS_OF = pd.Timestamp("2026-01-01", tz="UTC")
RETRAIN_URI = "alphaops://retrain-request"


@pytest.fixture(scope="module")
def champion(alphaops_home) -> dict:
    """direction_h1 trained on the first 5000 of 9000 synthetic bars; a regime shift at bar 7000
    (the same recipe as tests/pipelines/live/test_monitor.py, under another symbol)."""
    from pipelines.steps.build import build_features, build_labels
    from pipelines.steps.deploy import deploy_models
    from pipelines.ingest.ingestion import ingest
    from pipelines.steps.rank import rank_models
    from pipelines.ingest.samples import SyntheticSource
    from pipelines.steps.train import train_spec
    from pipelines.steps.validate import validate_version

    settings = get_settings()
    source = SyntheticSource(seed=7, n_bars=9000, imbalance_coef=0.35, shift_at=7000, shift_vol_mult=3.0)
    bars = source.read()
    ingest(source, symbol=SYMBOL, timeframe="1m", settings=settings, as_of=AS_OF)
    train_end = bars.index[4999]
    ref = build_features(settings, symbol=SYMBOL, timeframe="1m", as_of=train_end)
    build_labels(settings, symbol=SYMBOL, timeframe="1m", spec_names=["direction_h1"], as_of=train_end)
    trained = train_spec(settings, spec_name="direction_h1", symbol=SYMBOL, timeframe="1m",
                         feature_set_version=ref["feature_set_version"], as_of=train_end, trials=2,
                         holdout_fraction=0.25)
    validated = validate_version(settings, model_name=NAME, version=trained["version"], as_of=train_end,
                                 holdout_fraction=0.25)
    assert validated["status"] == "validated", validated["failed_gates"]
    deploy_models(settings, ranking=rank_models(settings, validated=[validated]), as_of=train_end)
    return {"settings": settings, "bars": bars}


def _run(settings, conf: dict) -> tuple[str, str, dict, list]:
    """dag.test() the DAG; returns state, run id, task states and the run's retrain-request events."""
    from sqlalchemy import select

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from pipelines.orchestration.airflow_runner import run_dag

    state, run_id = run_dag(settings, "monitor_drift", conf)
    with create_session() as session:
        tis = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == "monitor_drift",
                                                         TaskInstance.run_id == run_id)).all()
        states = {ti.task_id: str(ti.state) for ti in tis}
        events = session.scalars(
            select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == RETRAIN_URI, AssetEvent.source_run_id == run_id)).all()
        extras = [dict(e.extra) for e in events]
    return state, run_id, states, extras


def test_nothing_to_retrain_skips_the_request(champion):
    state, _, states, events = _run(champion["settings"], {"manual": []})
    assert state == "success"
    assert states == {"fill_outcomes": "success", "monitor": "success", "request_retrain": "skipped",
                      "pattern_windows": "success"}
    assert events == []


def test_live_regime_shift_emits_a_retrain_request_event(champion):
    """Serve the shifted bars now, through Predictor + PredictionLog + the sink in the log's thread."""
    import features
    import serving
    from pipelines.live.prediction_sink import PredictionSink
    from registry import CHAMPION, Registry
    from warehouse import open_warehouse

    settings = champion["settings"]
    bundle = Registry.from_settings(settings).load_bundle(NAME, CHAMPION, settings.bundles_dir / "mondag-test")
    log = serving.PredictionLog(maxsize=100_000)
    predictor = serving.Predictor.load(bundle, log=log)
    matrix = features.compute(champion["bars"])[list(predictor.features)].iloc[7500:9000]
    sink = PredictionSink(settings)
    log.start(sink, interval=0.2)
    for row in matrix.to_numpy(np.float32):
        predictor.predict(row)
    log.stop()
    assert sink.rows_written == 1500

    state, run_id, states, events = _run(settings, {"manual": []})
    assert state == "success" and states["request_retrain"] == "success"
    assert len(events) == 1
    extra = events[0]
    assert extra["symbols"] == [SYMBOL] and extra["families"] == ["direction_h1"]
    request = next(m for m in extra["models"] if m["model"] == NAME)
    assert request["triggers"][0] == "drift" and request["reasons"][0].startswith("drift: ")
    assert NAME in extra["reason"]
    with open_warehouse(settings) as warehouse:
        history = warehouse.read_monitor_history(tenant="default", model=NAME)
    last = history.iloc[-1]
    assert last["drifted"] == 1 and last["retrain"] == 1 and last["drift_share"] > 0.3
    assert last["report_uri"].endswith("/evidently/data_drift.html")


def test_retrain_scopes_turn_the_event_into_train_models_params(champion):
    """What train_models does with the event (see docs/monitoring.md): train the requested specs."""
    from pipelines.live.retrain import retrain_scopes

    class Event:
        extra = {"symbols": [SYMBOL], "families": ["direction_h1"], "reason": f"monitor: {NAME} (drift)"}

    class Asset:  # as Airflow passes it: the URI normalised with a trailing slash
        name = RETRAIN_URI
        uri = RETRAIN_URI + "/"

    params = {"symbols": ["SPX", "SYN1"], "families": ["direction"], "trials": 8, "reason": "schedule"}
    assert retrain_scopes(params, {Asset(): [Event()]}) == [{
        **params, "user": "", "symbols": [SYMBOL], "families": ["direction_h1"], "reason": f"monitor: {NAME} (drift)"}]
    assert retrain_scopes(params, {}) == [{**params, "user": ""}]
