"""Run the project's Airflow DAGs in process (``dag.test()``) on the embedded settings.

Airflow reads its configuration when first imported, so :func:`airflow_environment` must run
before any ``import airflow``. The metadata DB (SQLite under ``$ALPHAOPS_HOME/airflow`` by
default) is migrated once and the warehouse pool created.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipelines.config import Settings
from pipelines.steps import WAREHOUSE_POOL

DAGS_FOLDER = Path(__file__).resolve().parent.parent / "dags"


def airflow_environment(settings: Settings) -> dict[str, str]:
    env = settings.airflow_env(DAGS_FOLDER)
    os.environ.update(env)
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    return env


def airflow_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **airflow_environment(settings)}
    airflow = Path(sys.executable).with_name("airflow")
    return subprocess.run([str(airflow), *args], env=env, capture_output=True, text=True, check=False)


def ensure_airflow_db(settings: Settings) -> None:
    """Migrate the metadata DB and create the warehouse pool (once per ALPHAOPS_HOME)."""
    marker = settings.airflow_home / ".alphaops-initialised"
    if marker.exists() and settings.airflow_sql_alchemy_conn is None:
        return
    for args in (("db", "migrate"),
                 ("pools", "set", WAREHOUSE_POOL, "1", "embedded chDB: one process per data path")):
        result = airflow_cli(settings, *args)
        if result.returncode != 0:
            raise RuntimeError(f"`airflow {' '.join(args)}` failed:\n{result.stderr[-2000:]}")
    marker.write_text("ok\n")


def load_dag(settings: Settings, dag_id: str) -> Any:
    airflow_environment(settings)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    if dag_id not in bag.dags:
        raise ValueError(f"unknown DAG {dag_id!r}; known: {', '.join(sorted(bag.dags))}")
    return bag.dags[dag_id]


def run_dag(settings: Settings, dag_id: str, conf: dict[str, Any]) -> tuple[str, str]:
    """``dag.test()`` the DAG with ``conf``; returns (state, run_id)."""
    ensure_airflow_db(settings)
    dag = load_dag(settings, dag_id)
    dag_run = dag.test(run_conf=conf)
    return str(dag_run.state), str(dag_run.run_id)
