"""``alphaops stack ...``: the production topology on this machine, without Docker."""

from __future__ import annotations

import json
import sys
import time

import typer

from pipelines.app.cli.common import load_settings, stack_app
from pipelines.orchestration.processes import free_port
from pipelines.orchestration.stack import BUCKET, DEFAULT_PORTS, down, exec_component, stack_dir, status, up




@stack_app.command("up")
def up_command(
    workers: int = typer.Option(2, min=1, help="Celery workers to start."),
    postgres: str = typer.Option("postgresql://postgres@127.0.0.1:5432/postgres", envvar="ALPHAOPS_STACK_POSTGRES_URL",
                                 help="PostgreSQL admin URL; the stack creates its two databases there."),
    redis_url: str = typer.Option("redis://127.0.0.1:6379", "--redis", envvar="ALPHAOPS_STACK_REDIS_URL",
                                  help="Redis server; the stack claims one empty database on it."),
    redis_db: int = typer.Option(None, "--redis-db", min=0, max=15, help="Redis database (default: the first empty one of 1-15)."),
    airflow_port: int = typer.Option(DEFAULT_PORTS["api-server"], help="Airflow UI/API port (a free one if taken)."),
    mlflow_port: int = typer.Option(DEFAULT_PORTS["mlflow"], help="MLflow port (a free one if taken)."),
    s3_port: int = typer.Option(DEFAULT_PORTS["s3"], help="moto S3 port (a free one if taken)."),
) -> None:
    """Start Airflow (api-server, scheduler, dag-processor, triggerer, Celery workers), MLflow and S3 (moto)."""
    settings = load_settings()
    ports = {"api-server": free_port(airflow_port), "mlflow": free_port(mlflow_port), "s3": free_port(s3_port)}
    started = time.monotonic()
    state = up(settings, workers=workers, postgres_admin_url=postgres, redis_url=redis_url, redis_db=redis_db,
               ports=ports)
    env = state.env
    print(f"stack up in {time.monotonic() - started:.0f} s on {state.home}")
    print(f"  Airflow UI and REST API  {env['ALPHAOPS_AIRFLOW_API_URL']}  (all users are admins locally; "
          "GET /auth/token gives a REST token)")
    print(f"  MLflow UI                {env['ALPHAOPS_MLFLOW_TRACKING_URI']}")
    print(f"  S3 artifacts             {env['ALPHAOPS_S3_ENDPOINT_URL']}/{BUCKET}  (moto's server, standing in "
          "for MinIO; in memory)")
    print(f"  PostgreSQL databases     {', '.join(state.databases.values())}")
    print(f"  Redis (Celery broker)    {env['ALPHAOPS_CELERY_BROKER_URL']}")
    print(f"  logs and pid files       {stack_dir(settings)}")
    print(f"Point the CLI at the stack: source {stack_dir(settings) / 'stack.env'}")
    print("train_models starts paused: unpause and trigger it in the UI. Stop with `alphaops stack down`.")


@stack_app.command("down")
def down_command() -> None:
    """Stop every service, drop the stack's databases and empty its Redis database."""
    if not down(load_settings()):
        print("no stack is running on this ALPHAOPS_HOME")
        return
    print("stack down")


@stack_app.command("status")
def status_command(as_json: bool = typer.Option(False, "--json")) -> None:
    """Each service's pid and whether it answers; exit 1 unless every one does."""
    report = status(load_settings())
    if report is None:
        print("no stack is running on this ALPHAOPS_HOME")
        raise typer.Exit(1)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        for name, svc in report["services"].items():
            state = "ready" if svc["ready"] else ("starting" if svc["alive"] else "DOWN")
            print(f"  {name:<14} {state:<9} pid {svc['pid']:<8} {svc['url'] or ''}")
        print(f"  Airflow UI {report['airflow_ui']} · MLflow UI {report['mlflow_ui']} · S3 {report['s3']}")
        print(f"  settings: {report['env_file']}")
    if not all(svc["ready"] for svc in report["services"].values()):
        raise typer.Exit(1)


@stack_app.command("component", hidden=False)
def component_command(
    name: str = typer.Argument(..., help="init, api-server, scheduler, dag-processor, triggerer, worker, mlflow or s3"),
    host: str = typer.Option(None, help="Bind address (default: the host of the service's URL)."),
    worker_name: str = typer.Option(None, help="Worker: its name on task instances (default: the FQDN)."),
    concurrency: int = typer.Option(1, min=1, help="Worker: tasks at once."),
    skip_serve_logs: bool = typer.Option(False, "--skip-serve-logs",
                                         help="Worker: serve no logs (workers on one machine share the log folder)."),
) -> None:
    """Run one service in the foreground on the ALPHAOPS_* settings (what `up` and docker-compose.yml run)."""
    exec_component(load_settings(), name, host=host, worker_name=worker_name, concurrency=concurrency,
                   serve_logs=not skip_serve_logs)
