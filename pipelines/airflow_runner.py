"""Run the project's Airflow DAGs in process (``dag.test()``) on the embedded settings.

Airflow reads its configuration when first imported, so :func:`airflow_environment` must run
before any ``import airflow``. The metadata DB (SQLite under ``$ALPHAOPS_HOME/airflow`` by
default) is migrated once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelines.config import Settings

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
    """Migrate the metadata DB (once per ALPHAOPS_HOME)."""
    marker = settings.airflow_home / ".alphaops-initialised"
    if marker.exists() and settings.airflow_sql_alchemy_conn is None:
        return
    result = airflow_cli(settings, "db", "migrate")
    if result.returncode != 0:
        raise RuntimeError(f"`airflow db migrate` failed:\n{result.stderr[-2000:]}")
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


def run_dag(settings: Settings, dag_id: str, conf: dict[str, Any], *, log_path: Path | None = None,
            on_task: Callable[[str], None] | None = None) -> tuple[str, str]:
    """``dag.test()`` the DAG with ``conf``; returns (state, run_id).

    With ``log_path``, everything Airflow and the tasks print goes to that file instead of the
    terminal, and ``on_task`` is called with each task as it starts (for a progress display).
    """
    ensure_airflow_db(settings)
    if log_path is None:
        dag_run = load_dag(settings, dag_id).test(run_conf=conf)
        return str(dag_run.state), str(dag_run.run_id)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with _output_to(log_path), _follow_tasks(log_path, on_task):
        dag_run = load_dag(settings, dag_id).test(run_conf=conf)
    return str(dag_run.state), str(dag_run.run_id)


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send file descriptors 1 and 2 (Python, Airflow, LightGBM, onnxruntime) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab", buffering=0) as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


@contextmanager
def _follow_tasks(path: Path, on_task: Callable[[str], None] | None) -> Iterator[None]:
    """Call ``on_task`` with 'task_id[map_index]' for every task start written to ``path``."""
    if on_task is None:
        yield
        return
    stop = threading.Event()
    pattern = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")

    def follow() -> None:
        with open(path, errors="replace") as log:
            log.seek(0, os.SEEK_END)
            while not stop.is_set():
                line = log.readline()
                if not line:
                    stop.wait(0.2)
                    continue
                match = pattern.search(line)
                if match:
                    task, index = match.groups()
                    on_task(task if index == "-1" else f"{task}[{index}]")

    thread = threading.Thread(target=follow, name="dag-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)
