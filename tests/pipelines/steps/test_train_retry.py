"""The train step under retries (what a killed Celery worker leaves behind), on the embedded MLflow.

A retry returns the version its killed attempt registered; an attempt killed (SIGKILL, a real
process) before registering is marked superseded and ended, and the retry registers once; an
attempt presumed dead that is still running sees the mark and does not register.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from pipelines.config import get_settings

SYMBOL = "SYNRETRY"
AS_OF = pd.Timestamp("2026-01-01", tz="UTC")
NAME = f"default.direction_h1.{SYMBOL}"


@pytest.fixture(scope="module")
def prepared():
    from pipelines.steps.build import build_features, build_labels
    from pipelines.ingest.ingestion import ingest
    from pipelines.ingest.samples import SyntheticSource

    settings = get_settings()
    ingest(SyntheticSource(seed=5, n_bars=3000, imbalance_coef=0.6), symbol=SYMBOL, timeframe="1m",
           settings=settings, as_of=AS_OF)
    ref = build_features(settings, symbol=SYMBOL, timeframe="1m", as_of=AS_OF)
    build_labels(settings, symbol=SYMBOL, timeframe="1m", spec_names=["direction_h1"], as_of=AS_OF)
    return settings, ref["feature_set_version"]


def _train(settings, fsv: str, as_of: pd.Timestamp, trials: int = 1) -> dict:
    from pipelines.steps.train import train_spec

    return train_spec(settings, spec_name="direction_h1", symbol=SYMBOL, timeframe="1m", feature_set_version=fsv,
                      as_of=as_of, trials=trials, holdout_fraction=0.25, trigger="test")


def _attempts(registry, as_of: pd.Timestamp) -> list:
    """Parent runs (train attempts) of this job, oldest first."""
    experiment = registry.client.get_experiment_by_name("default/direction")
    runs = registry.client.search_runs([experiment.experiment_id], filter_string=(
        f"tags.symbol = '{SYMBOL}' and tags.as_of = '{as_of.isoformat()}'"), order_by=["attributes.start_time ASC"])
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def _versions_of(registry, key: str) -> list:
    return [mv for mv in registry.versions(NAME) if mv.tags.get("train_key") == key]


def _wait_for_attempt(registry, as_of: pd.Timestamp, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _attempts(registry, as_of)
        if runs:
            return runs[0]
        time.sleep(0.05)
    raise AssertionError(f"no train attempt for as_of {as_of} within {timeout} s")


def test_a_retry_after_registering_returns_the_same_version(prepared):
    from registry import Registry

    settings, fsv = prepared
    registry = Registry.from_settings(settings)
    first = _train(settings, fsv, AS_OF)
    # The attempt was killed after registering: its run never ended.
    registry.client.update_run(first["run_id"], status="RUNNING")
    retry = _train(settings, fsv, AS_OF)
    assert (retry["version"], retry["run_id"]) == (first["version"], first["run_id"])
    attempts = _attempts(registry, AS_OF)
    assert [r.info.run_id for r in attempts] == [first["run_id"]]  # no second training run
    assert registry.client.get_run(first["run_id"]).info.status == "FINISHED"
    key = attempts[0].data.tags["train_key"]
    assert [str(mv.version) for mv in _versions_of(registry, key)] == [first["version"]]


def test_an_attempt_killed_before_registering_is_superseded_and_the_retry_registers_once(prepared):
    from registry import Registry

    settings, fsv = prepared
    registry = Registry.from_settings(settings)
    as_of = AS_OF + pd.Timedelta(days=1)
    code = ("import pandas as pd; from pipelines.config import get_settings; from pipelines.steps.train import train_spec; "
            f"train_spec(get_settings(), spec_name='direction_h1', symbol='{SYMBOL}', timeframe='1m', "
            f"feature_set_version='{fsv}', as_of=pd.Timestamp('{as_of.isoformat()}'), trials=3, "
            "holdout_fraction=0.25, trigger='test')")
    attempt = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        dead = _wait_for_attempt(registry, as_of)
        time.sleep(1.0)  # in the middle of tuning
    finally:
        os.killpg(attempt.pid, signal.SIGKILL)
        attempt.wait(timeout=30)
    assert registry.client.get_run(dead.info.run_id).info.status == "RUNNING"
    key = dead.data.tags["train_key"]
    assert _versions_of(registry, key) == []

    retry = _train(settings, fsv, as_of, trials=3)
    marked = registry.client.get_run(dead.info.run_id)
    assert marked.info.status == "FAILED" and "superseded" in marked.data.tags
    open_trials = registry.client.search_runs([marked.info.experiment_id], filter_string=(
        f"tags.mlflow.parentRunId = '{dead.info.run_id}' and attributes.status = 'RUNNING'"))
    assert open_trials == []
    versions = _versions_of(registry, key)
    assert [(str(mv.version), mv.run_id) for mv in versions] == [(retry["version"], retry["run_id"])]
    assert retry["run_id"] != dead.info.run_id


def test_an_attempt_presumed_dead_does_not_register(prepared):
    from pipelines.steps.train import AttemptSupersededError
    from registry import Registry

    settings, fsv = prepared
    registry = Registry.from_settings(settings)
    as_of = AS_OF + pd.Timedelta(days=2)
    outcome: dict = {}

    def zombie() -> None:
        try:
            outcome["result"] = _train(settings, fsv, as_of, trials=3)
        except Exception as exc:  # noqa: BLE001 - the assertion below names it
            outcome["error"] = exc

    thread = threading.Thread(target=zombie)
    thread.start()
    run = _wait_for_attempt(registry, as_of)
    registry.client.set_tag(run.info.run_id, "superseded", "a retry took over")  # what a retry does
    thread.join(timeout=300)
    assert isinstance(outcome.get("error"), AttemptSupersededError), outcome
    assert _versions_of(registry, run.data.tags["train_key"]) == []
