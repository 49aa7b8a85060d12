"""Run the project's Airflow DAGs in process (``dag.test()``) on the embedded settings.

Airflow reads its configuration when first imported, so :func:`airflow_environment` must run
before any ``import airflow``. The metadata DB (SQLite under ``$ALPHAOPS_HOME/airflow`` by
default) is migrated once.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelines.config import Settings

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


def airflow_environment(settings: Settings) -> dict[str, str]:
    """Point this process's Airflow at ``settings`` (sets ``os.environ``); returns those variables."""
    env = subprocess_airflow_environment(settings)
    os.environ.update(env)
    return env


def subprocess_airflow_environment(settings: Settings) -> dict[str, str]:
    """The variables a child Airflow process needs for ``settings``; this process is left alone."""
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    return settings.airflow_env(DAGS_FOLDER)


def airflow_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **subprocess_airflow_environment(settings)}
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


# -- a real Airflow on this state: airflow standalone, and Asset events for its scheduler --------

PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"  # standalone's generated admin password


def standalone_environment(settings: Settings, *, port: int = 8080) -> dict[str, str]:
    """Environment of ``airflow standalone`` on these settings.

    Standalone starts its api-server, scheduler, dag-processor and triggerer as ``airflow …``
    found on ``PATH``, so this interpreter's bin directory (the venv's) goes first on it.
    ``AIRFLOW__CORE__PARALLELISM`` defaults to the cores (standalone's LocalExecutor would start
    32 workers), and an explicit ``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS`` is kept.
    """
    from models.parallel import default_n_jobs

    explicit = {k: os.environ[k] for k in ("AIRFLOW__CORE__PARALLELISM",
                                           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS") if k in os.environ}
    env = {**os.environ, **subprocess_airflow_environment(settings), **explicit}
    env["AIRFLOW__CORE__PARALLELISM"] = explicit.get("AIRFLOW__CORE__PARALLELISM") or str(default_n_jobs())
    bin_dir = str(Path(sys.executable).parent)  # not resolved: a venv's python is a symlink
    env["PATH"] = os.pathsep.join([bin_dir, *(p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir)])
    env["AIRFLOW__API__PORT"] = str(port)
    env["AIRFLOW__API__BASE_URL"] = f"http://localhost:{port}"  # tasks reach the execution API here
    # The scheduler's and triggerer's log servers: another Airflow on this machine (the stack, a
    # second home) may hold the default ports; then take free ones rather than fail to serve logs.
    for key, default in (("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", 8793),
                         ("AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", 8794)):
        if key not in env and not port_is_free(default):
            env[key] = str(free_port())
    return env


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` on every interface (as Airflow's do)."""
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


def login_hint(settings: Settings, env: dict[str, str]) -> str:
    """How to log in to the UI that ``env`` configures."""
    if env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "").lower() == "true":
        return ("no login: every local user is an admin (AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True; "
                f"set it to False to log in as admin with the password standalone writes to "
                f"{settings.airflow_home / PASSWORDS_FILE})")
    passwords = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE") or settings.airflow_home / PASSWORDS_FILE
    return f"log in as admin with the password in {passwords} (generated on the first start)"


def serve_standalone(settings: Settings, *, port: int = 8080, log_path: Path,
                     announce: Callable[[str], None] = print, ready_timeout: float = 300.0) -> int:
    """Run ``airflow standalone`` until it exits or this process gets SIGINT, SIGTERM or SIGHUP;
    then stop it and everything it started (:func:`stop_session`). Its output goes to
    ``log_path``; ``announce`` gets one line when the UI answers. Returns standalone's exit code."""
    env = standalone_environment(settings, port=port)
    ensure_airflow_db(settings)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    airflow = Path(sys.executable).with_name("airflow")
    stop = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    started = time.monotonic()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([str(airflow), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    threading.Thread(target=_announce_when_up, name="ui-ready", daemon=True,
                     args=(f"http://localhost:{port}", started, ready_timeout, announce, stop, log_path)).start()
    try:
        while proc.poll() is None and not stop.wait(0.5):
            pass
    finally:
        stop.set()
        stop_session(proc)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return proc.returncode


def _announce_when_up(url: str, started: float, timeout: float, announce: Callable[[str], None],
                      stop: threading.Event, log_path: Path) -> None:
    import httpx

    while not stop.is_set() and time.monotonic() - started < timeout:
        try:
            if httpx.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200:
                announce(f"Airflow UI ready at {url} after {time.monotonic() - started:.0f} s")
                return
        except httpx.HTTPError:
            pass
        stop.wait(1.0)
    if not stop.is_set():
        announce(f"Airflow UI not answering at {url} after {timeout:.0f} s; see {log_path}")


def session_processes(sid: int) -> list[Any]:
    """Live (non-zombie) processes of session ``sid``."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (OSError, psutil.Error):
            continue
    return found


def stop_session(proc: subprocess.Popen[Any], *, grace: float = 15.0) -> None:
    """Stop a process started with ``start_new_session=True`` and every process it started.

    SIGINT goes to its process group first, as Ctrl-C in a terminal would (standalone then
    terminates its components). Task processes put themselves in process groups of their own,
    so whatever is left of the session after ``grace`` seconds gets SIGTERM, then SIGKILL.
    """
    import psutil

    sid = proc.pid
    try:
        os.killpg(sid, signal.SIGINT)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = session_processes(sid)
        if not left:
            break
        for member in left:
            try:
                member.send_signal(sig)
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=10)
    if proc.poll() is None:
        proc.wait(timeout=10)


def emit_asset_event(settings: Settings, uri: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Record an event on the Asset ``uri`` in the Airflow metadata DB of these settings, as the
    REST API's ``POST /api/v2/assets/events`` does, and queue the unpaused DAGs scheduled on it:
    the scheduler that runs on this DB (``alphaops ui airflow``, the stack) starts them, now or
    when it next runs. Returns the event id, the queued DAGs and the paused ones it did not queue.
    Raises LookupError when this Airflow has not registered the Asset (no DAG parsed yet)."""
    if settings.airflow_sql_alchemy_conn is None and not (settings.airflow_home / "airflow.db").exists():
        raise LookupError(f"no Airflow metadata DB under {settings.airflow_home} yet (start `alphaops ui airflow`)")
    airflow_environment(settings)
    from sqlalchemy import select

    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.name == uri))
        if asset is None:
            raise LookupError(f"Airflow on {settings.airflow_db_uri} does not know the Asset {uri} yet: "
                              "its dag-processor registers it when it parses the DAGs (`alphaops ui airflow`)")
        event = asset_manager.register_asset_change(asset=asset, extra=extra, source_is_api=True, session=session)
        if event is None:
            raise LookupError(f"Airflow recorded no event on {uri}")
        consumers = {ref.dag_id: bool(ref.dag.is_paused) for ref in asset.scheduled_dags}
        return {"event_id": int(event.id), "asset_id": int(asset.id),
                "queued": sorted(d for d, paused in consumers.items() if not paused),
                "paused": sorted(d for d, paused in consumers.items() if paused)}
