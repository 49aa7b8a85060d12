"""The reaper ends what SIGKILLed runs left behind, and only that.

Real MLflow, real processes killed with SIGKILL. A process that trains (an MLflow run with an
open trial run) and has registered a version is killed: the reaper ends both runs FAILED and
rejects the version as orphaned, while the same kind of process still alive is left alone,
and ``alphaops models`` shows the orphan as rejected. The slow test kills ``alphaops run``
(the real DAG under ``dag.test()``) during its second train task: the reaper marks the dag run
failed, ends its MLflow runs and rejects the version the first train task registered.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest

from pipelines.config import Settings, get_settings
from pipelines.orchestration.reaper import ORPHANED, TAG_DAG_RUN_ID, TAG_PID, reap_orphans
from registry import Registry, model_name

ROOT = Path(__file__).resolve().parents[3]

# Starts a train-like MLflow run (tagged by pipelines.orchestration.reaper.process_tags, as steps.train does)
# with an open trial run, registers a version from it, says so, and waits to be killed.
TRAINER = textwrap.dedent("""
    import json, sys, time
    import mlflow
    from pipelines.config import get_settings
    from pipelines.orchestration.reaper import process_tags
    from pipelines.tracking import use_experiment
    from registry import Registry, model_name

    settings = get_settings()
    registry = Registry.from_settings(settings)
    symbol = sys.argv[1]
    name = model_name(settings.tenant, "direction_h1", symbol)
    with process_tags():
        experiment = use_experiment(settings, f"{settings.tenant}/direction")
        with mlflow.start_run(experiment_id=experiment, run_name=f"direction_h1.{symbol}") as parent:
            with mlflow.start_run(experiment_id=experiment, run_name="trial-000", nested=True) as trial:
                version = registry.register(name, parent.info.run_id, tags={
                    "family": "direction", "spec": "direction_h1", "symbol": symbol, "timeframe": "1m"})
                print(json.dumps({"run": parent.info.run_id, "trial": trial.info.run_id, "version": version}),
                      flush=True)
                time.sleep(600)
""")


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "ALPHAOPS_HOME": str(settings.home_dir), "ALPHAOPS_TENANT": settings.tenant,
            "PYTHONPATH": str(ROOT)}


def _start_trainer(settings: Settings, symbol: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen([sys.executable, "-c", TRAINER, symbol], env=_env(settings), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line, f"the trainer died: {proc.communicate(timeout=30)[1][-2000:]}"
    return proc, json.loads(line)


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_killed_trainer_is_reaped_and_a_live_one_is_not(alphaops_home: Path) -> None:
    settings = get_settings(home=alphaops_home, tenant="reapkill")
    registry = Registry.from_settings(settings)
    client = registry.client
    dead, dead_ids = _start_trainer(settings, "DEAD")
    live, live_ids = _start_trainer(settings, "LIVE")
    try:
        assert client.get_run(dead_ids["run"]).data.tags[TAG_PID] == str(dead.pid)
        # A run with no process tags (not started by a step) and no other evidence yet.
        experiment = client.get_experiment_by_name("reapkill/direction").experiment_id
        untagged = client.create_run(experiment, run_name="untagged").info.run_id

        assert reap_orphans(settings, airflow=None) == []  # everyone is alive or unknown
        _kill(dead)
        reaped = reap_orphans(settings, airflow=None)
        assert {(r["kind"], r["id"]) for r in reaped} == {
            ("mlflow_run", dead_ids["run"]), ("mlflow_run", dead_ids["trial"]),
            ("version", f"reapkill.direction_h1.DEAD v{dead_ids['version']}")}
        for run_id in (dead_ids["run"], dead_ids["trial"]):
            run = client.get_run(run_id)
            assert run.info.status == "FAILED"
            assert f"PID {dead.pid}" in run.data.tags[ORPHANED] and "is gone" in run.data.tags[ORPHANED]
        tags = client.get_model_version("reapkill.direction_h1.DEAD", dead_ids["version"]).tags
        assert tags["validation_status"] == "rejected" and tags["failed_gates"] == ORPHANED
        assert tags["lifecycle"] == "rejected" and "never validated" in tags[ORPHANED]
        for run_id in (live_ids["run"], live_ids["trial"], untagged):
            assert client.get_run(run_id).info.status == "RUNNING"
        assert "validation_status" not in client.get_model_version("reapkill.direction_h1.LIVE",
                                                                    live_ids["version"]).tags

        # `alphaops models` shows the orphan honestly (and reaps nothing alive).
        shown = subprocess.run([str(Path(sys.executable).with_name("alphaops")), "models", "--json"],
                               env=_env(settings), capture_output=True, text=True, timeout=300)
        assert shown.returncode == 0, shown.stderr[-2000:]
        by_name = {v["name"]: v for v in json.loads(shown.stdout)}
        assert by_name["reapkill.direction_h1.DEAD"]["validation_status"] == "rejected"
        assert by_name["reapkill.direction_h1.DEAD"]["failed_gates"] == ORPHANED
        assert by_name["reapkill.direction_h1.LIVE"]["validation_status"] == "pending"

        # No evidence either way: the untagged run ends only once it is older than stale_after.
        reaped = reap_orphans(settings, airflow=None, stale_after=timedelta(0))
        assert [r["id"] for r in reaped] == [untagged]
        assert "no sign of life" in client.get_run(untagged).data.tags[ORPHANED]
    finally:
        for proc in (dead, live):
            if proc.poll() is None:
                _kill(proc)
    # Once the live one dies too, it is reaped like the first.
    reaped = reap_orphans(settings, airflow=None)
    assert {r["id"] for r in reaped} == {live_ids["run"], live_ids["trial"],
                                         f"reapkill.direction_h1.LIVE v{live_ids['version']}"}
    assert reap_orphans(settings, airflow=None) == []  # and a second pass finds nothing


@pytest.mark.slow
def test_a_killed_alphaops_run_is_reaped(alphaops_home: Path) -> None:
    """``alphaops run`` (dag.test in one process) SIGKILLed in its second train task."""
    settings = get_settings(home=alphaops_home, tenant="reapdag")
    client = Registry.from_settings(settings).client
    alphaops = str(Path(sys.executable).with_name("alphaops"))
    proc = subprocess.Popen([alphaops, "run", "--symbols", "SYN1", "--families", "direction_h1,direction_h5",
                             "--trials", "1", "--json"], env=_env(settings), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        runs: list = []
        alive_checked = False
        while time.monotonic() < deadline and proc.poll() is None:
            experiment = client.get_experiment_by_name("reapdag/direction")
            if experiment is not None:
                versions = client.search_model_versions("name LIKE 'reapdag.%'")
                runs = client.search_runs([experiment.experiment_id],
                                          filter_string="attributes.status = 'RUNNING' and tags.spec != ''")
                if runs and not versions and not alive_checked:
                    # The reaper pass takes seconds, so it runs while the first train task trains,
                    # and the kill below follows the detection of the second one without delay.
                    assert reap_orphans(settings) == []  # the run is alive: nothing to end
                    alive_checked = True
                    continue
                runs = [r for r in runs if versions and r.data.tags["spec"] != versions[0].tags.get("spec")]
                if len(versions) == 1 and runs:
                    break  # one train task registered its version, the other one trains
            time.sleep(0.5)
        assert proc.poll() is None, f"alphaops run ended first: {proc.communicate()[1][-3000:]}"
        assert alive_checked, "no train task was ever seen running"
        assert runs, "the second train task never started"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    dag_run_id = runs[0].data.tags[TAG_DAG_RUN_ID]
    reaped = reap_orphans(settings)
    kinds = {}
    for item in reaped:
        kinds.setdefault(item["kind"], []).append(item)
    assert [d["id"] for d in kinds["dag_run"]] == [f"train_models {dag_run_id}"]
    killed_task = kinds["dag_run"][0]["tasks_failed"]
    assert len(killed_task) == 1 and killed_task[0].startswith("train[")
    assert runs[0].info.run_id in {r["id"] for r in kinds["mlflow_run"]}
    assert len(kinds["version"]) == 1

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        dag_run = session.query(DagRun).filter(DagRun.run_id == dag_run_id).one()
        states = {(ti.task_id, ti.map_index): getattr(ti.state, "value", ti.state)
                  for ti in dag_run.get_task_instances(session=session)}
        assert getattr(dag_run.state, "value", dag_run.state) == "failed" and dag_run.note.startswith(ORPHANED)
    killed_index = int(killed_task[0][len("train["):-1])
    assert states[("train", killed_index)] == "failed" and states[("train", 1 - killed_index)] == "success"
    assert states[("extract", -1)] == "success" and states[("deploy", -1)] == "skipped"
    assert client.search_runs([runs[0].info.experiment_id], filter_string="attributes.status = 'RUNNING'") == []
    version = client.search_model_versions("name LIKE 'reapdag.%'")[0]
    assert version.tags["validation_status"] == "rejected" and version.tags["failed_gates"] == ORPHANED
    assert "ended failed" in version.tags[ORPHANED]
    assert reap_orphans(settings) == []


@pytest.mark.slow
def test_a_run_killed_in_validate_shows_its_version_orphaned(alphaops_home: Path) -> None:
    """``alphaops run`` SIGKILLed while its validate task runs: ``alphaops models`` reaps, so it lists
    the never-validated version as rejected (orphaned) and the dag run is failed."""
    settings = get_settings(home=alphaops_home, tenant="reapval")
    alphaops = str(Path(sys.executable).with_name("alphaops"))
    logs = alphaops_home / "logs"
    before = set(logs.glob("train_models-*.log")) if logs.is_dir() else set()
    proc = subprocess.Popen([alphaops, "run", "--symbols", "SYN1", "--families", "direction_h1", "--trials", "1"],
                            env=_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        validating = False
        while time.monotonic() < deadline and proc.poll() is None and not validating:
            new = sorted(set(logs.glob("train_models-*.log")) - before) if logs.is_dir() else []
            validating = bool(new) and "starting task_id=validate" in new[-1].read_text(errors="replace")
            time.sleep(0.5)
        assert validating and proc.poll() is None, f"never killed in validate: {proc.communicate()[1][-3000:]}"
        time.sleep(2.0)  # inside the validation (holdout scoring, null test)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    client = Registry.from_settings(settings).client
    [version] = client.search_model_versions("name = 'reapval.direction_h1.SYN1'")
    assert "validation_status" not in version.tags  # killed before validate tagged it

    shown = subprocess.run([alphaops, "models", "--json"], env=_env(settings), capture_output=True, text=True,
                           timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    [entry] = [v for v in json.loads(shown.stdout) if v["name"] == "reapval.direction_h1.SYN1"]
    assert entry["validation_status"] == "rejected" and entry["failed_gates"] == ORPHANED
    assert "ended an orphan of a killed run: dag_run train_models" in shown.stderr
    tags = client.get_model_version("reapval.direction_h1.SYN1", version.version).tags
    assert "the process that ran its tasks" not in tags[ORPHANED] and "ended failed" in tags[ORPHANED]
    run_id = client.get_run(version.run_id).data.tags[TAG_DAG_RUN_ID]

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        dag_run = session.query(DagRun).filter(DagRun.run_id == run_id).one()
        states = {ti.task_id: getattr(ti.state, "value", ti.state) for ti in dag_run.get_task_instances(session=session)}
        assert getattr(dag_run.state, "value", dag_run.state) == "failed"
    assert states["train"] == "success" and states["validate"] == "failed" and states["rank"] == "skipped"
    assert client.search_runs([client.get_run(version.run_id).info.experiment_id],
                              filter_string="attributes.status = 'RUNNING'") == []


def test_a_dead_process_of_a_dag_run_airflow_cannot_answer_for_is_judged_by_its_pid() -> None:
    import socket
    from datetime import datetime, timezone

    from pipelines.orchestration.reaper import TAG_DAG_ID, TAG_HOST, judge_run

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=30)
    tags = {TAG_DAG_ID: "train_models", TAG_DAG_RUN_ID: "manual__gone", TAG_HOST: socket.gethostname(),
            TAG_PID: str(gone.pid)}
    now = datetime.now(timezone.utc)
    verdict = judge_run(tags, now, now=now, airflow=None)
    assert verdict.alive is False and f"PID {gone.pid}" in verdict.why
    assert judge_run({**tags, TAG_PID: str(os.getpid())}, now, now=now, airflow=None).alive is True
