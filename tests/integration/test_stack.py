"""train_models end to end through `alphaops stack`: the Airflow api-server, scheduler,
dag-processor and triggerer, two Celery workers on Redis, metadata in PostgreSQL, MLflow server
on PostgreSQL with artifacts on S3. moto's server stands in for MinIO (no MinIO server installs
on these machines). Mid-run, the worker that runs a train task is killed with SIGKILL, with every
process under it (as when its machine dies): the task is retried on the other worker and the run
still succeeds, with one validated-or-rejected version per model and nothing left half-written.

Needs PostgreSQL (127.0.0.1:5432, trust auth) and Redis (127.0.0.1:6379): skipped, with the
reason, where either is absent. The stack gets fresh databases and an empty Redis database, and
`alphaops stack down` drops them at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

pytestmark = pytest.mark.integration

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379"
SYMBOL = "SYNSTACK"
FAMILIES = ["direction"]  # three specs: three mapped train tasks on two workers
CONF = {"symbols": [SYMBOL], "families": FAMILIES, "trials": 2, "holdout_fraction": 0.25, "reason": "stack-test"}


def _services_or_skip() -> None:
    import psycopg2
    import redis

    try:
        psycopg2.connect(PG_ADMIN, connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN}: {str(exc).strip().splitlines()[0]}")
    try:
        redis.Redis.from_url(REDIS, socket_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS}: {exc}")


def _clean_env(home: Path) -> dict[str, str]:
    """This machine's environment without the test session's embedded settings."""
    env = {k: v for k, v in os.environ.items()  # (without PYTEST_CURRENT_TEST, as in production)
           if not k.startswith(("ALPHAOPS_", "AIRFLOW", "MLFLOW_", "AWS_", "PYTEST_"))}
    env.update({
        "ALPHAOPS_HOME": str(home),
        # The orchestration is under test here, not the null test: the screen's p-value decides
        # (the retrain null test is covered by the DAG honesty test).
        "ALPHAOPS_NULL_PERMUTATIONS": "0",
        # A killed worker's task is failed (and retried) 20 s after its last heartbeat, not 300 s.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # only the run this test triggers
    })
    return env


def _alphaops(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).with_name("alphaops")
    return subprocess.run([str(cli), *args], env=env, capture_output=True, text=True, timeout=timeout)


class Airflow:
    """The stack's REST API with a token from the simple auth manager (all admins)."""

    def __init__(self, base: str) -> None:
        import httpx

        self.base = base
        token = httpx.get(f"{base}/auth/token", timeout=30).json()["access_token"]
        self.http = httpx.Client(base_url=f"{base}/api/v2", headers={"Authorization": f"Bearer {token}"},
                                 timeout=30)

    def get(self, path: str, **params) -> dict:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def send(self, method: str, path: str, body: dict) -> dict:
        response = self.http.request(method, path, json=body)
        assert response.status_code < 300, response.text
        return response.json()

    def task_instances(self, run_id: str) -> list[dict]:
        return self.get(f"/dags/train_models/dagRuns/{quote(run_id, safe='')}/taskInstances",
                        limit=100)["task_instances"]

    def tries(self, run_id: str, task_id: str, map_index: int) -> list[dict]:
        return self.get(f"/dags/train_models/dagRuns/{quote(run_id, safe='')}/taskInstances/"
                        f"{task_id}/{map_index}/tries")["task_instances"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    _services_or_skip()
    home = tmp_path_factory.mktemp("stack-home")
    env = _clean_env(home)
    # The data, in the embedded warehouse that the workers share (written before they start).
    ingest = subprocess.run([sys.executable, "-c", (
        "import pandas as pd; from pipelines.config import get_settings; from pipelines.ingest.ingestion import ingest; "
        "from pipelines.ingest.samples import SyntheticSource; "
        f"ingest(SyntheticSource(seed=11, n_bars=6000, imbalance_coef=0.6), symbol='{SYMBOL}', timeframe='1m', "
        "settings=get_settings(), as_of=pd.Timestamp('2026-01-01', tz='UTC'))")],
        env=env, capture_output=True, text=True, timeout=300)
    assert ingest.returncode == 0, ingest.stderr[-2000:]
    started = time.monotonic()
    up = _alphaops(env, "stack", "up")
    state_path = home / "stack" / "stack.json"
    created = set(json.loads(state_path.read_text())["databases"].values()) if state_path.exists() else set()
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert "moto's server, standing in for MinIO" in up.stdout
        yield {"env": env, "home": home, "state": json.loads(state_path.read_text()),
               "up_seconds": time.monotonic() - started}
    finally:
        down = _alphaops(env, "stack", "down")
        import psycopg2

        with psycopg2.connect(PG_ADMIN) as conn, conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database")
            left = {row[0] for row in cur.fetchall()} & created
        assert down.returncode == 0, down.stdout + down.stderr
        assert not left, f"databases left behind: {left}"


def _kill_worker(state: dict, hostname: str) -> int:
    """SIGKILL the worker that records ``hostname`` and every process under it."""
    import psutil

    from pipelines.orchestration.processes import signal_tree

    name = hostname.split(".", 1)[0]
    pid = int(state["processes"][name]["pid"])
    procs = signal_tree(pid, signal.SIGKILL)
    psutil.wait_procs(procs, timeout=30)
    return pid


def test_train_models_through_the_stack_survives_a_killed_worker(stack):
    import boto3
    import psycopg2
    from mlflow import MlflowClient

    env, state = stack["env"], stack["state"]
    airflow = Airflow(state["env"]["ALPHAOPS_AIRFLOW_API_URL"])
    mlflow = MlflowClient(tracking_uri=state["env"]["ALPHAOPS_MLFLOW_TRACKING_URI"])
    deadline = time.monotonic() + 120
    while True:  # the dag-processor parses the DAGs once it is up
        try:
            airflow.get("/dags/train_models")
            break
        except Exception:
            assert time.monotonic() < deadline, "train_models was not parsed within 120 s"
            time.sleep(1)
    airflow.send("PATCH", "/dags/train_models", {"is_paused": False})
    triggered = time.monotonic()
    run_id = airflow.send("POST", "/dags/train_models/dagRuns", {"logical_date": None, "conf": CONF})["dag_run_id"]

    # Kill the worker that runs the third train task to start, in the middle of its training (the
    # first two started side by side, one on each worker).
    experiment = None
    killed: dict = {}
    deadline = time.monotonic() + 600
    while not killed:
        assert time.monotonic() < deadline, "no train task to interrupt within 600 s"
        tis = [t for t in airflow.task_instances(run_id) if t["task_id"] == "train"]
        failed = [t for t in tis if t["state"] in ("failed", "upstream_failed", "up_for_retry")]
        assert not failed, f"a train task failed before the kill; its logs are under {stack['home']}/airflow/logs"
        started = [t for t in tis if t["state"] in ("running", "success") and t["start_date"]]
        running = [t for t in started if t["state"] == "running" and t["try_number"] == 1 and t["hostname"]]
        if len(tis) == 3 and len(started) == 3 and running:
            target = max(running, key=lambda t: t["start_date"])
            experiment = experiment or mlflow.get_experiment_by_name("default/direction")
            open_runs = mlflow.search_runs([experiment.experiment_id], filter_string=(
                f"tags.spec = '{target['rendered_map_index']}' and tags.symbol = '{SYMBOL}' "
                "and attributes.status = 'RUNNING'"))
            attempt = [r for r in open_runs if "mlflow.parentRunId" not in r.data.tags]
            if attempt:
                time.sleep(1.0)  # in the middle of the Optuna search
                killed = {"map_index": target["map_index"], "hostname": target["hostname"],
                          "run_id": attempt[0].info.run_id, "pid": _kill_worker(state, target["hostname"])}
        time.sleep(0.3)

    deadline = time.monotonic() + 900
    while (dag_run := airflow.get(f"/dags/train_models/dagRuns/{quote(run_id, safe='')}"))["state"] not in (
            "success", "failed"):
        assert time.monotonic() < deadline, "train_models did not finish within 15 minutes"
        time.sleep(2)
    wall = time.monotonic() - triggered
    print(f"\nstack up {stack['up_seconds']:.0f} s; train_models with a killed worker: {wall:.0f} s")
    tis = airflow.task_instances(run_id)
    assert dag_run["state"] == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]

    # The mapped train tasks ran on both workers; the killed one's retry on the other worker.
    workers = {f"{name}." for name in state["processes"] if name.startswith("worker-")}
    assert len(workers) == 2
    trains = [t for t in tis if t["task_id"] == "train"]
    assert len(trains) == 3 and all(t["state"] == "success" for t in trains)
    hosts = {t["hostname"].split(".", 1)[0] for t in trains if t["map_index"] != killed["map_index"]}
    assert hosts == {"worker-1", "worker-2"}, hosts
    tries = airflow.tries(run_id, "train", killed["map_index"])
    assert [t["try_number"] for t in tries] == [1, 2], tries
    assert tries[0]["hostname"] == killed["hostname"] and tries[0]["state"] in ("failed", "up_for_retry")
    assert tries[1]["hostname"] != killed["hostname"] and tries[1]["state"] == "success"

    # Versions, aliases and tags in the MLflow server's PostgreSQL database.
    mlflow_db = state["env"]["ALPHAOPS_MLFLOW_BACKEND_STORE_URI"].replace("+psycopg2", "")
    with psycopg2.connect(mlflow_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT name, version, run_id FROM model_versions WHERE name LIKE %s", (f"%.{SYMBOL}",))
        versions = cur.fetchall()
        cur.execute("SELECT name, version, key, value FROM model_version_tags WHERE name LIKE %s", (f"%.{SYMBOL}",))
        tags: dict = {}
        for name, version, key, value in cur.fetchall():
            tags.setdefault((name, version), {})[key] = value
        cur.execute("SELECT name, alias, version FROM registered_model_aliases WHERE name LIKE %s", (f"%.{SYMBOL}",))
        aliases = cur.fetchall()
        cur.execute("SELECT run_uuid, status FROM runs WHERE status = 'RUNNING'")
        open_runs = cur.fetchall()
        cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (killed["run_id"],))
        killed_status = cur.fetchone()[0]
        cur.execute("SELECT value FROM tags WHERE run_uuid = %s AND key = 'superseded'", (killed["run_id"],))
        superseded = cur.fetchall()
    names = sorted(name for name, _, _ in versions)
    assert names == sorted(f"default.{spec}.{SYMBOL}" for spec in ("direction_h1", "direction_h5", "direction3_h5"))
    assert all(tags[(n, v)].get("validation_status") in ("validated", "rejected") for n, v, _ in versions), tags
    assert len({tags[(n, v)]["train_key"] for n, v, _ in versions}) == 3
    assert killed["run_id"] not in {run for _, _, run in versions}
    assert killed_status == "FAILED" and superseded, (killed_status, superseded)
    assert open_runs == [], open_runs  # no attempt or trial run left half-written
    assert aliases, "no model got an alias"
    assert all(tags[(n, v)]["validation_status"] == "validated" for n, _, v in aliases), aliases

    # Every version's bundle (model.onnx + schema.json) in the S3 bucket (moto's server).
    s3 = boto3.client("s3", endpoint_url=state["env"]["ALPHAOPS_S3_ENDPOINT_URL"],
                      aws_access_key_id=state["env"]["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=state["env"]["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    keys = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="alphaops-artifacts")
            for o in page.get("Contents", [])}
    for _, _, run in versions:
        assert {f"default_direction/{run}/artifacts/bundle/{f}" for f in ("model.onnx", "schema.json")} <= keys

    # The CLI, pointed at the stack by its settings, lists the same versions.
    listed = _alphaops({**env, **state["env"]}, "models", "--json", timeout=300)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert sorted(v["name"] for v in json.loads(listed.stdout)) == names
