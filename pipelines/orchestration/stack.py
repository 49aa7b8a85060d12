"""The production topology on one machine, without Docker: ``alphaops stack up|down|status``.

``up`` starts each service as a background process in its own process group, with its log and
pid file under ``$ALPHAOPS_HOME/stack``:

- ``s3``: moto's S3 server, **standing in for MinIO** (no MinIO server installs on this machine
  kind); it keeps the artifact bucket in memory, so the artifacts live as long as the stack;
- ``mlflow``: the MLflow tracking server on a fresh PostgreSQL database, artifacts on S3;
- ``api-server``, ``scheduler``, ``dag-processor``, ``triggerer``: Airflow 3 on another fresh
  PostgreSQL database, with the CeleryExecutor on a dedicated Redis database;
- ``worker-1``, ``worker-2``: Celery workers, each recording its own hostname on the task
  instances it runs (``--celery-hostname`` and :func:`worker_hostname`).

The platform is pointed at these services through the same ``ALPHAOPS_*`` settings that
docker-compose.yml sets (``pipelines.config.Settings``); ``up`` writes them to
``$ALPHAOPS_HOME/stack/stack.env``. Every service runs through one entrypoint,
``alphaops stack component NAME``, which maps those settings onto the service's own
configuration and then execs it; docker-compose.yml runs the same entrypoint. The warehouse
stays the embedded chDB under ``$ALPHAOPS_HOME`` that every process on this machine shares; workers
on other machines need the ClickHouse server (``ALPHAOPS_CLICKHOUSE_URL``).

This stack is ephemeral: moto holds S3 in memory, so ``down`` stops every process group (and
any task process a worker left behind), drops both databases and empties the Redis database.

Task processes import this module (the hostname callable), so at module level it imports only
the standard library and the settings.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pipelines.orchestration.processes import (
    StackError,
    alive,
    create_time,
    free_port,
    ready,
    stop_process_trees,
    wait_ready,
)

if TYPE_CHECKING:
    from pipelines.config import Settings

BUCKET = "alphaops-artifacts"
WORKER_HOSTNAME_ENV = "ALPHAOPS_WORKER_HOSTNAME"
# The order of start-up; down stops them in reverse (the scheduler and workers before the API).
AIRFLOW_SERVICES = ("api-server", "dag-processor", "scheduler", "triggerer")
DEFAULT_PORTS = {"api-server": 8080, "mlflow": 5000, "s3": 9000}
REDIS_OWNER_KEY = "alphaops:stack-owner"
# moto accepts any credentials; these are the compose file's MinIO defaults.
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "alphaops", "AWS_SECRET_ACCESS_KEY": "alphaops-secret",
                  "AWS_DEFAULT_REGION": "us-east-1"}
# AIRFLOW__* values the stack chooses but the caller's environment may override.
# (The UI's base URL is the API URL unless set: behind compose, the browser's URL differs.)
_OVERRIDABLE = ("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "AIRFLOW__CORE__PARALLELISM",
                "AIRFLOW__API__BASE_URL", "MLFLOW_DISABLE_TELEMETRY")


def worker_hostname() -> str:
    """Airflow's ``[core] hostname_callable`` for the stack: the worker's own name, else the FQDN.

    Two workers on one machine share its FQDN; each gets ``ALPHAOPS_WORKER_HOSTNAME`` so the
    task instances it runs record which worker ran them.
    """
    return os.environ.get(WORKER_HOSTNAME_ENV) or socket.getfqdn()


def venv_bin() -> Path:
    """The directory of this interpreter's scripts (``airflow``, ``mlflow``, ``moto_server``)."""
    return Path(sys.executable).parent


def stack_dir(settings: Settings) -> Path:
    return settings.home_dir / "stack"


# -- mapping ALPHAOPS_* settings onto each service's own configuration ------------------------

def _require(settings: Settings, *fields: str) -> None:
    missing = [f"ALPHAOPS_{f.upper()}" for f in fields if not getattr(settings, f)]
    if missing:
        raise StackError(f"the service topology needs {', '.join(missing)} (see docker-compose.yml, "
                         "or `alphaops stack up`, which sets them)")


def service_env(settings: Settings, *, worker_name: str | None = None) -> dict[str, str]:
    """Environment of a stack service: the caller's, plus what the ALPHAOPS_* settings decide."""
    from pipelines.orchestration.airflow_runner import DAGS_FOLDER

    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(venv_bin()), env.get("PATH", "")])  # Airflow starts `airflow …` children
    derived = settings.airflow_env(DAGS_FOLDER)
    if settings.airflow_api_url:
        api = settings.airflow_api_url.rstrip("/")
        derived["AIRFLOW__API__BASE_URL"] = api
        derived["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"{api}/execution/"
    if settings.airflow_jwt_secret:
        derived["AIRFLOW__API_AUTH__JWT_SECRET"] = settings.airflow_jwt_secret
    if settings.celery_broker_url:
        derived["AIRFLOW__CORE__EXECUTOR"] = "CeleryExecutor"
        derived["AIRFLOW__CELERY__BROKER_URL"] = settings.celery_broker_url
        derived["AIRFLOW__CELERY__RESULT_BACKEND"] = settings.celery_result_backend or ""
    derived["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = "pipelines.orchestration.stack.worker_hostname"
    if settings.s3_endpoint_url:
        derived["MLFLOW_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    # MLflow's telemetry thread sets and unsets _MLFLOW_TELEMETRY_SESSION_ID in os.environ while
    # request threads iterate it: the rank task failed twice with KeyError on that name. (Under
    # pytest, or with CI set, MLflow turns telemetry off by itself.)
    derived["MLFLOW_DISABLE_TELEMETRY"] = "true"
    for key in _OVERRIDABLE:
        if key in os.environ:
            derived[key] = os.environ[key]
    env.update(derived)
    if worker_name:
        env[WORKER_HOSTNAME_ENV] = worker_name
    return env


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def component_argv(settings: Settings, name: str, *, host: str | None = None, worker_name: str | None = None,
                   concurrency: int = 1, serve_logs: bool = True) -> list[str]:
    """The command line of one service, from the settings (``host`` overrides the bind address)."""
    bin_dir = venv_bin()
    airflow = str(bin_dir / "airflow")
    if name == "init":
        return [airflow, "db", "migrate"]
    if name in AIRFLOW_SERVICES:
        _require(settings, "airflow_sql_alchemy_conn", "airflow_api_url", "airflow_jwt_secret",
                 "celery_broker_url", "celery_result_backend")
        if name == "api-server":
            bind, port = _host_port(settings.airflow_api_url or "", DEFAULT_PORTS["api-server"])
            return [airflow, "api-server", "--host", host or bind, "--port", str(port), "--workers", "1"]
        return [airflow, name]
    if name == "worker":
        _require(settings, "airflow_sql_alchemy_conn", "airflow_api_url", "celery_broker_url")
        argv = [airflow, "celery", "worker", "--concurrency", str(concurrency)]
        if worker_name:
            argv += ["--celery-hostname", f"{worker_name}@{socket.gethostname()}"]
        return argv + ([] if serve_logs else ["--skip-serve-logs"])
    if name == "mlflow":
        _require(settings, "mlflow_tracking_uri", "mlflow_backend_store_uri", "mlflow_artifact_root")
        bind, port = _host_port(settings.mlflow_tracking_uri or "", DEFAULT_PORTS["mlflow"])
        public = urlsplit(settings.mlflow_tracking_uri or "").hostname or bind
        allowed = ",".join(dict.fromkeys([f"{public}:*", "localhost:*", "127.0.0.1:*"]))
        return [str(bin_dir / "mlflow"), "server", "--host", host or bind, "--port", str(port),
                "--backend-store-uri", settings.mlflow_backend_store_uri or "",
                "--artifacts-destination", settings.mlflow_artifact_root or "", "--serve-artifacts",
                "--workers", "1", "--allowed-hosts", allowed]
    if name == "s3":  # moto's S3 server: the stand-in for MinIO on machines without it
        _require(settings, "s3_endpoint_url")
        bind, port = _host_port(settings.s3_endpoint_url or "", DEFAULT_PORTS["s3"])
        return [str(bin_dir / "moto_server"), "-H", host or bind, "-p", str(port)]
    raise StackError(f"unknown stack component {name!r}; known: init, {', '.join(AIRFLOW_SERVICES)}, "
                     "worker, mlflow, s3")


def exec_component(settings: Settings, name: str, *, host: str | None = None, worker_name: str | None = None,
                   concurrency: int = 1, serve_logs: bool = True) -> None:
    """Replace this process with the service (the entrypoint of the stack and of docker-compose.yml)."""
    argv = component_argv(settings, name, host=host, worker_name=worker_name, concurrency=concurrency,
                          serve_logs=serve_logs)
    env = service_env(settings, worker_name=worker_name)
    if name == "mlflow":
        for key, value in S3_CREDENTIALS.items():
            env.setdefault(key, value)
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    os.execve(argv[0], argv, env)


# -- the stack on this machine ---------------------------------------------------------------

@dataclass
class Service:
    name: str
    argv: list[str]                       # the `alphaops stack component …` command
    url: str | None = None                # answered with HTTP 200 once it is up
    ready_line: str | None = None         # or this text in its log


@dataclass
class StackState:
    """What ``up`` created; ``down`` reads it back from ``stack.json``."""

    home: str
    env: dict[str, str]
    databases: dict[str, str]
    postgres_admin_url: str
    redis_url: str
    redis_db: int
    processes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2, sort_keys=True))
        tmp.chmod(0o600)  # holds the JWT secret
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "StackState":
        return cls(**json.loads(path.read_text()))


def _pg_connect(admin_url: str) -> Any:
    import psycopg2

    try:
        conn = psycopg2.connect(admin_url.replace("postgresql+psycopg2://", "postgresql://"), connect_timeout=5)
    except psycopg2.OperationalError as exc:
        raise StackError(f"PostgreSQL is not reachable at {admin_url}: {str(exc).strip().splitlines()[0]}") from exc
    conn.autocommit = True
    return conn


def _database_url(admin_url: str, database: str, driver: str = "postgresql+psycopg2") -> str:
    parts = urlsplit(admin_url)
    return f"{driver}://{parts.netloc}/{database}"


def _redis(url: str, db: int) -> Any:
    import redis

    client = redis.Redis.from_url(url, db=db, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise StackError(f"Redis is not reachable at {url}: {exc}") from exc
    return client


def _claim_redis_db(url: str, owner: str, wanted: int | None) -> int:
    """A Redis database for this stack's Celery queues: empty, or already claimed by this home."""
    for db in ([wanted] if wanted is not None else range(1, 16)):
        client = _redis(url, db)
        if client.get(REDIS_OWNER_KEY) == owner.encode():
            return db
        if client.dbsize() == 0 and client.set(REDIS_OWNER_KEY, owner, nx=True):
            return db
    raise StackError(f"no empty Redis database to claim at {url}" +
                     (f" (db {wanted} is in use)" if wanted is not None else " (1-15 are all in use)"))


def _services(settings: Settings, workers: int) -> list[Service]:
    cli = [sys.executable, "-m", "pipelines.app.cli", "stack", "component"]
    api = (settings.airflow_api_url or "").rstrip("/")
    services = [
        Service("s3", [*cli, "s3"], url=f"{settings.s3_endpoint_url}/moto-api/"),
        Service("mlflow", [*cli, "mlflow"], url=f"{settings.mlflow_tracking_uri}/health"),
        Service("api-server", [*cli, "api-server"], url=f"{api}/api/v2/monitor/health"),
        Service("dag-processor", [*cli, "dag-processor"]),
        Service("scheduler", [*cli, "scheduler"]),
        Service("triggerer", [*cli, "triggerer"]),
    ]
    for i in range(1, workers + 1):
        name = f"worker-{i}"
        services.append(Service(name, [*cli, "worker", "--worker-name", f"{name}.{socket.gethostname()}",
                                       "--skip-serve-logs"], ready_line=" ready."))
    return services


def _start(service: Service, directory: Path, env: dict[str, str]) -> dict[str, Any]:
    log_path = directory / f"{service.name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(service.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)  # its own session and process group
    (directory / f"{service.name}.pid").write_text(f"{proc.pid}\n")
    return {"pid": proc.pid, "started": create_time(proc.pid), "log": str(log_path), "url": service.url,
            "ready_line": service.ready_line}


def _stack_settings(settings: Settings, env: dict[str, str]) -> Settings:
    from pipelines.config import get_settings

    overrides = {k.removeprefix("ALPHAOPS_").lower(): v for k, v in env.items() if k.startswith("ALPHAOPS_")}
    overrides["home"] = settings.home_dir
    return get_settings(**overrides)


def env_file_text(env: dict[str, str]) -> str:
    lines = ["# AlphaOps stack settings: `source` this file to point the CLI at the running stack.",
             "# S3 is moto's server standing in for MinIO."]
    return "\n".join([*lines, *(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items()))]) + "\n"


def up(settings: Settings, *, workers: int = 2, postgres_admin_url: str, redis_url: str,
       redis_db: int | None = None, ports: dict[str, int] | None = None, timeout: float = 180.0,
       echo: Any = print) -> StackState:
    """Create the databases, start every service, and wait until each answers."""
    directory = stack_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    state_path = directory / "stack.json"
    if state_path.exists():
        old = StackState.load(state_path)
        if any(alive(info) for info in old.processes.values()):
            raise StackError(f"a stack already runs on {settings.home_dir}: `alphaops stack status`, "
                             "or `alphaops stack down` first")
        down(settings, echo=echo)

    admin = _pg_connect(postgres_admin_url)
    suffix = secrets.token_hex(4)
    databases = {"airflow": f"alphaops_airflow_{suffix}", "mlflow": f"alphaops_mlflow_{suffix}"}
    db = _claim_redis_db(redis_url, str(settings.home_dir), redis_db)
    ports = {**{k: free_port(v) for k, v in DEFAULT_PORTS.items()}, **(ports or {})}
    airflow_db = _database_url(postgres_admin_url, databases["airflow"])
    env = {
        "ALPHAOPS_HOME": str(settings.home_dir),
        "ALPHAOPS_TENANT": settings.tenant,
        "ALPHAOPS_AIRFLOW_SQL_ALCHEMY_CONN": airflow_db,
        "ALPHAOPS_AIRFLOW_API_URL": f"http://127.0.0.1:{ports['api-server']}",
        "ALPHAOPS_AIRFLOW_JWT_SECRET": secrets.token_urlsafe(32),
        "ALPHAOPS_CELERY_BROKER_URL": f"{redis_url.rstrip('/')}/{db}",
        "ALPHAOPS_CELERY_RESULT_BACKEND": "db+" + airflow_db,
        "ALPHAOPS_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
        "ALPHAOPS_MLFLOW_BACKEND_STORE_URI": _database_url(postgres_admin_url, databases["mlflow"]),
        "ALPHAOPS_MLFLOW_ARTIFACT_ROOT": f"s3://{BUCKET}",
        "ALPHAOPS_S3_ENDPOINT_URL": f"http://127.0.0.1:{ports['s3']}",  # moto, standing in for MinIO
        **{k: os.environ.get(k, v) for k, v in S3_CREDENTIALS.items()},
    }
    if settings.clickhouse_url:
        env["ALPHAOPS_CLICKHOUSE_URL"] = settings.clickhouse_url
    state = StackState(home=str(settings.home_dir), env=env, databases=databases,
                       postgres_admin_url=postgres_admin_url, redis_url=redis_url, redis_db=db)
    state.save(state_path)  # from here on, `down` undoes whatever was done
    try:
        with admin.cursor() as cur:
            for name in databases.values():
                cur.execute(f'CREATE DATABASE "{name}"')
        admin.close()
        (directory / "stack.env").write_text(env_file_text(env))
        stack = _stack_settings(settings, env)
        run_env = {**os.environ, **env}
        services = {s.name: s for s in _services(stack, workers)}
        echo(f"S3 on {env['ALPHAOPS_S3_ENDPOINT_URL']}: moto's server, standing in for MinIO (in memory)")
        state.processes["s3"] = _start(services.pop("s3"), directory, run_env)
        state.save(state_path)
        wait_ready("s3", state.processes["s3"], timeout)
        _create_bucket(env)
        echo(f"airflow db migrate on PostgreSQL database {databases['airflow']}")
        init_log = directory / "init.log"
        with open(init_log, "ab") as log:
            migrated = subprocess.run([sys.executable, "-m", "pipelines.app.cli", "stack", "component", "init"],
                                      stdout=log, stderr=subprocess.STDOUT, env=run_env, timeout=600)
        if migrated.returncode != 0:
            tail = "\n".join(init_log.read_text(errors="replace").splitlines()[-15:])
            raise StackError(f"`airflow db migrate` failed; its log is {init_log}:\n{tail}")
        for name, service in services.items():
            state.processes[name] = _start(service, directory, run_env)
            state.save(state_path)
        for name, info in state.processes.items():
            wait_ready(name, info, timeout)
            echo(f"  {name:<14} up (pid {info['pid']})")
    except BaseException:
        down(settings, echo=echo)
        raise
    return state


def _create_bucket(env: dict[str, str]) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=env["ALPHAOPS_S3_ENDPOINT_URL"],
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                      region_name=env["AWS_DEFAULT_REGION"])
    s3.create_bucket(Bucket=BUCKET)


def load_state(settings: Settings) -> StackState | None:
    path = stack_dir(settings) / "stack.json"
    return StackState.load(path) if path.exists() else None


def down(settings: Settings, *, echo: Any = print) -> bool:
    """Stop every service (process groups and task processes), drop the databases, empty Redis."""
    directory = stack_dir(settings)
    state = load_state(settings)
    if state is None:
        return False
    # The scheduler first, so that nothing new is queued; then everything else at once.
    for batch in (["scheduler"], [n for n in state.processes if n != "scheduler"]):
        running = {n: state.processes[n] for n in batch if n in state.processes and alive(state.processes[n])}
        stop_process_trees([int(info["pid"]) for info in running.values()])
        for name, info in running.items():
            echo(f"  {name:<14} stopped (pid {info['pid']})")
    for name in state.processes:
        (directory / f"{name}.pid").unlink(missing_ok=True)
    try:
        admin = _pg_connect(state.postgres_admin_url)
        with admin.cursor() as cur:
            for name in state.databases.values():
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        echo(f"  dropped PostgreSQL databases {', '.join(state.databases.values())}")
    except StackError as exc:
        echo(f"  could not drop the databases {', '.join(state.databases.values())}: {exc}")
    try:
        client = _redis(state.redis_url, state.redis_db)
        if client.get(REDIS_OWNER_KEY) in (None, state.home.encode()):
            client.flushdb()
            echo(f"  emptied Redis database {state.redis_db}")
    except StackError as exc:
        echo(f"  could not empty Redis database {state.redis_db}: {exc}")
    (directory / "stack.json").unlink(missing_ok=True)
    (directory / "stack.env").unlink(missing_ok=True)
    return True


def status(settings: Settings) -> dict[str, Any] | None:
    """Every service's pid, liveness and readiness, with the URLs and the settings file."""
    state = load_state(settings)
    if state is None:
        return None
    services = {name: {"pid": info["pid"], "alive": alive(info), "ready": ready(info), "log": info["log"],
                       "url": info.get("url")} for name, info in state.processes.items()}
    return {"home": state.home, "services": services, "databases": state.databases,
            "redis": f"{state.redis_url.rstrip('/')}/{state.redis_db}",
            "airflow_ui": state.env["ALPHAOPS_AIRFLOW_API_URL"], "mlflow_ui": state.env["ALPHAOPS_MLFLOW_TRACKING_URI"],
            "s3": f"{state.env['ALPHAOPS_S3_ENDPOINT_URL']} (moto's server, standing in for MinIO)",
            "env_file": str(stack_dir(settings) / "stack.env")}


def worker_pid(settings: Settings, hostname: str) -> int | None:
    """PID of the stack worker whose task instances record ``hostname``."""
    state = load_state(settings)
    if state is None:
        return None
    for name, info in state.processes.items():
        if name.startswith("worker-") and hostname.startswith(f"{name}."):
            return int(info["pid"])
    return None
