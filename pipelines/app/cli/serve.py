"""``alphaops serve`` and ``alphaops ui ...``: the HTTP model server and the Airflow and MLflow UIs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from pipelines.app.cli.common import app, CliError, console, is_loopback, load_settings, ui_app


@app.command()
def serve(name: str = typer.Argument(..., help="Model to serve, e.g. direction_h1.SYN1"),
          host: str = typer.Option("127.0.0.1", help="Interface to bind; other than loopback only with API keys."),
          port: int = typer.Option(8000, min=1, max=65535, help="Port to serve on (1-65535)."),
          allow_contract_change: bool = typer.Option(
              False, "--allow-contract-change",
              help="Follow an alias to a version with other features, feature-set version or classes.")) -> None:
    """Serve NAME over REST: champion, plus the challenger on ALPHAOPS_CANARY_SHARE of callers.

    Follows the aliases (promote, rollback, the MLflow UI) every ALPHAOPS_SERVE_WATCH_INTERVAL_SECONDS and
    writes every prediction to the warehouse's ml_predictions (the canary DAG and the monitor read it)."""
    import logging

    import uvicorn

    import serving
    from pipelines.live.prediction_sink import PredictionSink
    from registry import Registry
    from registry.watch import canary_watcher
    from pipelines.app.rest import create_app

    settings = load_settings()
    keys = settings.serve_keys()
    if not keys and not is_loopback(host):
        raise CliError(f"refusing to serve on {host} without API keys (anyone who reaches it could call it): set "
                       "ALPHAOPS_SERVE_API_KEYS or ALPHAOPS_SERVE_API_KEYS_FILE, or bind 127.0.0.1")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for logger_name in ("serving", "registry"):
        logging.getLogger(logger_name).setLevel(logging.INFO)
    registry = Registry.from_settings(settings)
    qualified = registry.qualify(name)
    log = serving.PredictionLog()
    router, watcher = canary_watcher(registry, qualified, settings.home_dir / "serving-cache",
                                     share=settings.canary_share, interval=settings.serve_watch_interval_seconds,
                                     log=log, allow_schema_change=allow_contract_change)
    model = router.champion.schema.raw.get("model") or {}
    sink = PredictionSink(settings, timeframe=model.get("timeframe") or None)
    log.start(sink, interval=2.0)
    app = create_app(router, api_keys=keys, max_body_bytes=settings.serve_max_body_bytes,
                     max_batch_rows=settings.serve_max_batch_rows, routing_header=settings.serve_routing_header,
                     status={"watcher": watcher, "prediction_log": log})
    challenger = router.challenger
    console.print(f"serving {qualified} v{router.champion.version}"
                  f"{f' (challenger v{challenger.version} on {settings.canary_share:.0%} of callers)' if challenger else ''}"
                  f" on http://{host}:{port} (OpenAPI at /docs); following its aliases every "
                  f"{settings.serve_watch_interval_seconds:g} s; predictions to ml_predictions")
    if keys:
        console.print(f"API keys of {len(keys)} caller(s) ({', '.join(sorted(keys))}); /health is open")
    else:
        console.print("[yellow]no API keys[/] (ALPHAOPS_SERVE_API_KEYS): loopback only, every caller anonymous, "
                      "the canary arm is drawn per request")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        watcher.stop()
        log.stop()  # a last flush to ml_predictions
        console.print(f"stopped; {sink.rows_written} prediction rows written to ml_predictions")


@ui_app.command("mlflow")
def ui_mlflow(port: int = typer.Option(5000, help="Port to serve on."),
              workers: int = typer.Option(1, min=1, help="Server worker processes (MLflow's own default is 4).")) -> None:
    """Serve the MLflow UI on this state's tracking store."""
    settings = load_settings()
    mlflow = Path(sys.executable).with_name("mlflow")
    os.execv(str(mlflow), [str(mlflow), "ui", "--backend-store-uri", settings.tracking_uri,
                           "--default-artifact-root", settings.artifact_root, "--port", str(port),
                           "--workers", str(workers)])


@ui_app.command("airflow")
def ui_airflow(port: int = typer.Option(8080, help="Port to serve on.")) -> None:
    """Serve the Airflow UI (airflow standalone: api-server, scheduler, dag-processor, triggerer) on
    this state's DAGs and metadata DB. Ctrl-C (or SIGTERM) stops it and every process it started."""
    from pipelines.orchestration.airflow_runner import login_hint, port_is_free, serve_standalone, standalone_environment

    if not port_is_free(port):
        raise CliError(f"port {port} is in use (another Airflow UI or `alphaops stack`?): choose another with --port")
    settings = load_settings()
    env = standalone_environment(settings, port=port)
    log_path = settings.home_dir / "logs" / "airflow-standalone.log"
    console.print(f"Airflow UI on http://localhost:{port} (ALPHAOPS_HOME {settings.home_dir}); starting, "
                  "about a minute on 2 cores")
    console.print(f"  login: {login_hint(settings, env)}")
    console.print(f"  DAGs are paused until you unpause them; {env['AIRFLOW__CORE__PARALLELISM']} task slots "
                  "(AIRFLOW__CORE__PARALLELISM)")
    console.print(f"  components' output: {log_path}; task logs in the UI. Stop with Ctrl-C.")
    code = serve_standalone(settings, port=port, log_path=log_path, announce=console.print)
    console.print(f"Airflow standalone stopped (exit code {code}).")
