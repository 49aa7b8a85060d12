"""The ``alphaops`` command line. Heavy libraries are imported inside commands only."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from pipelines.stack import stack_app

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="AlphaOps: orchestrated MLOps for trading models.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks, printed as ratios against a baseline.")
ui_app = typer.Typer(no_args_is_help=True, help="Open the Airflow or MLflow UI on this state.")
app.add_typer(bench_app, name="bench")
app.add_typer(ui_app, name="ui")
app.add_typer(stack_app, name="stack")
console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 220)  # logs and pipes get the whole table


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _settings() -> Any:
    from pipelines.config import get_settings

    return get_settings()


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


def _check_symbol(symbol: str, option: str = "--symbol") -> str:
    """A symbol becomes part of model names (<tenant>.<spec>.<symbol>): letters, digits, _ and -."""
    if not _SYMBOL.fullmatch(symbol):
        raise CliError(f"{option} {symbol!r} is not a symbol: use 1-32 letters, digits, '_' or '-' "
                       "(starting with a letter or digit)")
    return symbol


def _split_given(values: list[str] | None, option: str) -> list[str] | None:
    """Like _split, but an option that was given and names nothing (``--symbols ,``) is an error."""
    names = _split(values)
    if values and not names:
        raise CliError(f"{option} {','.join(values)!r} names nothing; give at least one name, or leave "
                       f"{option} out for the defaults")
    return names


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _print_json(payload: Any) -> None:
    """Plain JSON on stdout (no wrapping or colour, so pipes always get valid JSON)."""
    sys.stdout.write(json.dumps(payload, default=str, indent=2) + "\n")


def _utc_now() -> Any:
    import pandas as pd

    return pd.Timestamp.now(tz="UTC")


@app.command()
def run(
    symbols: list[str] = typer.Option(None, "--symbols", "-s", help="Symbols (comma-separated or repeated)."),
    families: list[str] = typer.Option(None, "--families", "-f", help="Model families, or 'all'."),
    trials: int = typer.Option(None, "--trials", min=1, help="Optuna trials per spec."),
    holdout: float = typer.Option(None, "--holdout", min=0.05, max=0.8, help="Holdout fraction."),
    reason: str = typer.Option("manual", help="Why this run was started (recorded on the runs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run the train_models DAG in process: extract → … → deploy, then list the registry."""
    from models.catalog import specs_for

    given_symbols = _split_given(symbols, "--symbols")
    for symbol in given_symbols or []:
        _check_symbol(symbol, "--symbols")
    given_families = _split_given(families, "--families")
    settings = _settings()
    conf = {
        "symbols": given_symbols or settings.symbols,
        "families": given_families or settings.families,
        "trials": trials or settings.trials,
        "holdout_fraction": holdout or settings.holdout_fraction,
        "reason": reason,
    }
    specs_for(conf["families"])  # fail fast on an unknown family
    _check_symbols(settings, conf["symbols"])
    from pipelines.airflow_runner import ensure_airflow_db, run_dag

    ensure_airflow_db(settings)
    _reap(settings)  # a killed earlier run must not hold this one back

    n_jobs = len(specs_for(conf["families"])) * len(conf["symbols"])
    console.print(f"[bold]train_models[/] on {', '.join(conf['symbols'])} · families "
                  f"{', '.join(conf['families'])} · {conf['trials']} trials · {n_jobs} train tasks "
                  f"· home {settings.home_dir}")
    stamp = _utc_now().strftime("%Y%m%dT%H%M%S")
    log_path = settings.home_dir / "logs" / f"train_models-{stamp}.log"
    console.print(f"Airflow and task logs: {log_path}")
    started = time.monotonic()
    # The run's own output goes to the log file (fd 1 and 2); progress goes to a copy of stderr.
    with os.fdopen(os.dup(2), "w", buffering=1) as terminal:
        progress = Console(file=terminal)
        with progress.status("train_models: starting…") as status:
            def show(task: str) -> None:
                status.update(f"train_models: {task} ({time.monotonic() - started:.0f} s)")
                progress.print(f"  [dim]{time.monotonic() - started:6.0f} s[/]  {task}", highlight=False)

            state, run_id = run_dag(settings, "train_models", conf, log_path=log_path, on_task=show)
    console.print(f"DAG run {run_id}: {state} in {time.monotonic() - started:.0f} s")
    if state != "success":
        tail = log_path.read_text(errors="replace").splitlines()[-40:]
        console.print("\n".join(tail), markup=False, highlight=False, soft_wrap=True)
        raise CliError(f"DAG run {run_id} ended {state}; the full log is {log_path}")
    exported = _export_champions(settings)
    from pipelines.report import list_versions

    versions = list_versions(settings)
    if as_json:
        _print_json({"run_id": run_id, "state": state, "versions": versions,
                     "bundles": {k: str(v) for k, v in exported.items()}})
        return
    _versions_table(versions)
    _print_next_steps(settings, exported)


def _reap(settings: Any, *, always_sweep: bool = True) -> None:
    """End what killed runs left behind (``pipelines.reaper``), saying so on stderr. Whatever it
    prints (Airflow's logging, once imported, writes to stdout) goes to stderr too, so that
    stdout stays valid JSON for ``--json``."""
    import contextlib

    from pipelines.reaper import reap_orphans_quietly

    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            reaped = reap_orphans_quietly(settings, always_sweep=always_sweep)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    for item in reaped:
        console.print(f"[yellow]ended an orphan of a killed run:[/] {item['kind']} {item['id']}: {item['reason']}",
                      highlight=False)


def _check_symbols(settings: Any, symbols: list[str]) -> None:
    from pipelines.sources import SAMPLE_SYMBOLS
    from warehouse import open_warehouse

    unknown = [s for s in symbols if s not in SAMPLE_SYMBOLS]
    if not unknown:
        return
    with open_warehouse(settings) as warehouse:
        have = set(warehouse.inventory(settings.tenant)["symbol"])
    missing = [s for s in unknown if s not in have]
    if missing:
        raise CliError(f"symbol {', '.join(missing)} has no data; ingest it with `alphaops ingest FILE "
                       f"--symbol {missing[0]}` (sample symbols: {', '.join(SAMPLE_SYMBOLS)})")


def _export_champions(settings: Any) -> dict[str, Path]:
    from registry import CHAMPION, Registry

    registry = Registry.from_settings(settings)
    exported = {}
    for name in registry.model_names():
        if registry.alias_version(name, CHAMPION):
            exported[name] = registry.load_bundle(name, CHAMPION, settings.bundles_dir / f"{name}@{CHAMPION}")
    return exported


def _versions_table(versions: list[dict[str, Any]]) -> None:
    tenant = versions[0]["tenant"] if versions else "default"
    table = Table(title=f"Registered model versions of tenant {tenant!r} (holdout metrics, out of sample)")
    for col in ("model", "v", "aliases", "status", "metric", "model score", "best naive rule", "null p (draws)",
                "q", "deflated SR", "folds mean ± std", "Sharpe", "failed gates"):
        table.add_column(col, justify="left" if col in ("model", "aliases", "status", "metric", "best naive rule",
                                                        "failed gates") else "right")

    def fmt(value: Any, spec: str = ".3f") -> str:
        return "—" if value is None else format(value, spec)

    for v in versions:
        e, m = v.get("evidence") or {}, v["metrics"]
        naive = f"{e['naive_rule']} {e['naive_score']:.3f}" if e.get("naive_rule") else "—"
        null = "—" if e.get("null_p_value") is None else f"{e['null_p_value']:.3g} ({e.get('null_permutations')})"
        folds = "—" if e.get("folds_mean") is None else f"{e['folds_mean']:.3f} ± {fmt(e.get('folds_std'))}"
        table.add_row(v["name"].removeprefix(f"{v['tenant']}."), v["version"], ",".join(v["aliases"]) or "—",
                      v["validation_status"], e.get("metric") or "—", fmt(e.get("score")), naive, null,
                      fmt(e.get("q_value"), ".3g"), fmt(e.get("deflated_sharpe")), folds,
                      fmt(m.get("trading_sharpe"), ".2f"), v.get("failed_gates") or "—")
    out.print(table)


def _print_next_steps(settings: Any, exported: dict[str, Path]) -> None:
    home = settings.home_dir
    out.print("\n[bold]Open the UIs on this state[/]")
    out.print(f"  MLflow UI : make mlflow-ui      (= ALPHAOPS_HOME={home} .venv/bin/alphaops ui mlflow)")
    out.print(f"  Airflow UI: make airflow-ui     (= ALPHAOPS_HOME={home} .venv/bin/alphaops ui airflow)")
    if exported:
        out.print("\n[bold]Serving bundles (model.onnx + schema.json) of the champions[/]")
        for name, path in exported.items():
            out.print(f"  {name}: {path}")
        out.print("  load with: python -c \"import serving; p = serving.Predictor.load('<bundle dir>')\"")
    else:
        out.print("\n[yellow]No champion: every version failed a validation gate (see failed gates).[/]")


@app.command()
def ingest(
    file: Path = typer.Argument(..., help="CSV or Parquet file."),
    symbol: str = typer.Option(..., "--symbol", help="Symbol to store the rows under."),
    timeframe: str = typer.Option(None, "--timeframe",
                                  help="Bar timeframe, e.g. 1m, 5m, 1h, 1d (inferred from the timestamps if omitted)."),
    kind: str = typer.Option("bars", help="bars, ticks or book."),
    fmt: str = typer.Option(None, "--format", help="'binance' for Binance kline dumps."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Validate a file with the data-quality suite and upsert it (all-or-nothing, idempotent)."""
    from pipelines.extract import IngestRejected, ingest_file
    from pipelines.sources import parse_timeframe

    _check_symbol(symbol)
    if timeframe is not None:
        parse_timeframe(timeframe)  # a ValueError naming the timeframe
    if kind not in ("bars", "ticks", "book"):
        raise CliError(f"--kind {kind!r} is not one of bars, ticks, book")
    if not file.exists():
        raise CliError(f"file not found: {file}")
    if file.is_dir():
        raise CliError(f"{file} is a directory; give a CSV or Parquet file")
    settings = _settings()
    try:
        with console.status(f"validating and ingesting {file.name}…"):
            result = ingest_file(file, symbol=symbol, timeframe=timeframe, settings=settings,
                                 as_of=_utc_now(), kind=kind, fmt=fmt)
    except IngestRejected as exc:
        console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    payload = result.to_dict()
    if as_json:
        _print_json(payload)
    else:
        out.print(f"ingested {symbol} {timeframe}: {payload['rows_in']} rows in, {payload['rows_new']} new, "
                  f"{payload['rows_changed']} changed, {payload['rows_written']} written "
                  f"(ingest {payload['ingest_id']})")
        for warning in payload.get("warnings", []):
            console.print(f"[yellow]warning:[/] {warning}")


@app.command()
def data(as_json: bool = typer.Option(False, "--json")) -> None:
    """Symbols and timeframes in the warehouse: rows, time range and the last ingest."""
    from pipelines.extract import data_summary

    rows = data_summary(_settings())
    if as_json:
        _print_json(rows)
        return
    table = Table(title="Warehouse bars")
    for col in ("symbol", "timeframe", "rows", "from", "to", "last ingest"):
        table.add_column(col)
    for r in rows:
        last = r.get("last_ingest") or {}
        table.add_row(r["symbol"], r["timeframe"], str(r["rows"]), str(r["ts_min"]), str(r["ts_max"]),
                      f"{last.get('status', '—')} {last.get('logged_at', '')}")
    out.print(table)


@app.command()
def models(as_json: bool = typer.Option(False, "--json"),
           history: bool = typer.Option(False, "--history", help="Show every alias change.")) -> None:
    """Every registered version with aliases, validation status and holdout metrics (versions
    orphaned by a killed run are first tagged rejected, failed gate ``orphaned``)."""
    from pipelines.report import list_versions

    settings = _settings()
    _reap(settings, always_sweep=False)  # Airflow only if an open run or pending version needs it
    versions = list_versions(settings, with_history=history or as_json)
    if as_json:
        _print_json(versions)
        return
    _versions_table(versions)
    if history:
        table = Table(title="Alias history")
        for col in ("model", "at", "alias", "action", "version", "previous", "reason", "run"):
            table.add_column(col)
        for v in versions:
            for e in v.get("alias_history", []):
                table.add_row(v["name"], e["at"], e["alias"], e["action"], e["version"], str(e["previous"]),
                              e["reason"], e.get("run_id", ""))
        out.print(table)


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json"),
           no_reap: bool = typer.Option(False, "--no-reap", help="Report only; do not end orphans.")) -> None:
    """The state's health: orphans ended (with their reason), the warehouse lock and its holder,
    disk use, and stale cached bundles."""
    from pipelines.doctor import health_report

    report = health_report(_settings(), reap=not no_reap)
    if as_json:
        _print_json(report)
        return
    out.print(f"[bold]state[/] {report['home']}")
    lock = report["warehouse_lock"]
    if not lock["embedded"]:
        out.print("warehouse: ClickHouse server (no embedded lock)")
    elif lock["held"]:
        out.print(f"warehouse: held by PID {lock['pid']} ({lock['command']}) for {lock['held_seconds']} s")
    else:
        out.print("warehouse: free")
    table = Table(title="Disk use")
    table.add_column("part")
    table.add_column("MB", justify="right")
    for part, size in report["disk_bytes"].items():
        table.add_row(part, f"{size / 1e6:.1f}")
    out.print(table)
    for item in report["orphans_ended"]:
        out.print(f"ended orphan {item['kind']} {item['id']}: {item['reason']}")
    if not report["orphans_ended"]:
        out.print("orphans: none")
    for item in report["stale_bundles"]:
        out.print(f"stale bundle {item['path']}: {item['reason']} (safe to delete)")
    if not report["stale_bundles"]:
        out.print("stale bundles: none")


@app.command()
def export(ref: str = typer.Argument(..., help="NAME@ALIAS or NAME@VERSION, e.g. direction_h1.SYN1@champion"),
           directory: Path = typer.Argument(..., help="Directory to write model.onnx + schema.json into: new, "
                                            "empty, or an earlier bundle."),
           force: bool = typer.Option(False, "--force", help="Replace DIRECTORY even if it holds other files.")
           ) -> None:
    """Write a serving bundle for a registered model (all at once: a failure leaves DIRECTORY as it was)."""
    from registry import Registry

    name, at, alias = ref.rpartition("@")
    if not at or not name or not alias:
        raise CliError(f"expected NAME@ALIAS or NAME@VERSION (e.g. direction_h1.SYN1@champion), got {ref!r}")
    registry = Registry.from_settings(_settings())
    path = registry.load_bundle(registry.qualify(name), alias, directory, force=force)
    out.print(f"wrote {path / 'model.onnx'} and {path / 'schema.json'}")


@app.command()
def promote(name: str, reason: str = typer.Option("manual promotion", help="Recorded in the history.")) -> None:
    """Promote the challenger of NAME to champion."""
    from registry import Registry

    registry = Registry.from_settings(_settings())
    version = registry.promote(registry.qualify(name), reason=reason, run_id="cli")
    out.print(f"{registry.qualify(name)}: champion is now v{version}")


@app.command()
def rollback(name: str, reason: str = typer.Option("manual rollback", help="Recorded in the history.")) -> None:
    """End NAME's canary (drop the challenger), or restore the previous champion."""
    from registry import Registry

    registry = Registry.from_settings(_settings())
    version = registry.rollback(registry.qualify(name), reason=reason, run_id="cli")
    out.print(f"{registry.qualify(name)}: champion is v{version}, no challenger")


@bench_app.command("features")
def bench_features(n_bars: int = typer.Option(1_000_000, help="Synthetic 1-minute bars."),
                   as_json: bool = typer.Option(False, "--json")) -> None:
    """Full feature set vs plain TA-Lib on the same arrays, and one compute_latest call."""
    from features.bench import run_feature_bench

    with console.status(f"computing features on {n_bars:,} bars…"):
        figures = run_feature_bench(n_bars=n_bars)
    _print_figures("Feature benchmark (one process)", figures, as_json)


@bench_app.command("serving")
def bench_serving(n_calls: int = typer.Option(20_000, help="One-row calls per method."),
                  as_json: bool = typer.Option(False, "--json")) -> None:
    """Predictor.predict vs raw onnxruntime session.run vs MLflow pyfunc, same LightGBM model."""
    from pipelines.bench import serving_bench

    with console.status("benchmarking a 300-tree, 64-feature LightGBM direction model…"):
        figures = serving_bench(n_calls=n_calls)
    _print_figures("Serving benchmark (one process, one thread)", figures, as_json)


@bench_app.command("models")
def bench_models(
    quick: bool = typer.Option(False, "--quick", help="SPX x (volatility_h5, direction_h1), 1 seed, 1 trial (CI)."),
    datasets: list[str] = typer.Option(None, "--datasets", help="Sample symbols (default SPX,NASDAQ,VIX,WTI,CRUDE,SYN1)."),
    families: list[str] = typer.Option(None, "--families", help="Families or spec names (default all)."),
    seeds: int = typer.Option(3, min=1, help="Seeds per (spec, dataset)."),
    trials: int = typer.Option(None, min=1, help="Optuna trials per spec (default: the setting)."),
    out_path: Path = typer.Option(Path("docs/benchmarks.md"), "--out", help="Markdown; the JSON and PNG go beside it."),
    resume: bool = typer.Option(False, "--resume", help="Keep the runs in the JSON beside --out; run what is missing."),
    root: Path = typer.Option(None, "--root", help="Folder for the per-(dataset, seed) homes (default: temporary)."),
) -> None:
    """Train and validate every family on the real samples and the synthetic market; publish the table."""
    from pipelines.bench import model_bench

    start = time.perf_counter()
    result = model_bench(out=out_path, datasets=_split(datasets), families=_split(families), seeds=seeds,
                         trials=trials, quick=quick, root=root, resume=resume, console=console)
    out.print(f"wrote {result['markdown']}, {result['json']}" + (f", {result['chart']}" if result["chart"] else "")
              + f" ({result['meta']['n_runs']} runs, wall time {time.perf_counter() - start:.0f} s)")


@bench_app.command("scale")
def bench_scale(
    quick: bool = typer.Option(False, "--quick", help="Small points (20k and 60k minutes, 2 daily symbols), for CI."),
    trials: int = typer.Option(2, min=1, help="Optuna trials of the direction_h1 train-and-validate."),
    out_path: Path = typer.Option(Path("docs/benchmarks.md"), "--out",
                                  help="Markdown (its scale section); the JSON and PNG go beside it."),
    root: Path = typer.Option(None, "--root", help="Folder for the data and per-point homes (default: temporary)."),
    steps: list[str] = typer.Option(None, "--steps", help="A prefix of ingest,features,labels,train (default all)."),
) -> None:
    """Wall time and peak RSS of ingest, features, labels and train as bars and symbols grow."""
    from pipelines.bench_scale import scale_bench

    try:
        result = scale_bench(out=out_path, quick=quick, trials=trials, root=root, steps=_split(steps),
                             console=console)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--steps") from None
    out.print(f"wrote {result['markdown']} (scale section), {result['json']}"
              + (f", {result['chart']}" if result["chart"] else "")
              + f" ({len(result['rows'])} measurements, wall time {result['meta']['wall_seconds']:.0f} s)")


def _print_figures(title: str, figures: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(figures)
        return
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
        table.add_row(key, shown)
    out.print(table)


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
    from pipelines.prediction_sink import PredictionSink
    from registry import Registry
    from registry.watch import canary_watcher
    from serving.http import create_app

    settings = _settings()
    keys = settings.serve_keys()
    if not keys and not _is_loopback(host):
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
    settings = _settings()
    mlflow = Path(sys.executable).with_name("mlflow")
    os.execv(str(mlflow), [str(mlflow), "ui", "--backend-store-uri", settings.tracking_uri,
                           "--default-artifact-root", settings.artifact_root, "--port", str(port),
                           "--workers", str(workers)])


@ui_app.command("airflow")
def ui_airflow(port: int = typer.Option(8080, help="Port to serve on.")) -> None:
    """Serve the Airflow UI (airflow standalone: api-server, scheduler, dag-processor, triggerer) on
    this state's DAGs and metadata DB. Ctrl-C (or SIGTERM) stops it and every process it started."""
    from pipelines.airflow_runner import login_hint, port_is_free, serve_standalone, standalone_environment

    if not port_is_free(port):
        raise CliError(f"port {port} is in use (another Airflow UI or `alphaops stack`?): choose another with --port")
    settings = _settings()
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


@app.command()
def monitor(
    retrain: list[str] = typer.Option(None, "--retrain", help="Request retraining of MODEL regardless "
                                      "(spec.symbol or full name; repeat or comma-separate)."),
    window_hours: float = typer.Option(24.0, "--window-hours", min=0.01, help="Predictions of the last N hours."),
    as_of: str = typer.Option(None, "--as-of", help="End of the window (ISO time, UTC); default now."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Check every champion: Evidently drift, live vs backtest accuracy, latency; flag retraining."""
    import pandas as pd

    from pipelines.alerts import hook_for
    from pipelines.monitor import monitor_models

    settings = _settings()
    when = _utc_now() if as_of is None else pd.Timestamp(as_of)
    when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    with console.status("monitoring the champions (Evidently drift, live metrics)…"):
        results = monitor_models(settings, as_of=when, window=pd.Timedelta(hours=window_hours),
                                 manual=_split(retrain) or [], alert_hook=hook_for(settings.alert_webhook_url))
    if as_json:
        _print_json(results)
        _send_retrain_request(settings, results)
        return
    table = Table(title=f"Champions monitored as of {when.isoformat(timespec='seconds')} "
                        f"(window {window_hours:g} h)")
    for col in ("model", "v", "preds", "drift", "pred drift", "live acc", "backtest", "outcomes", "p99 µs",
                "errors", "retrain", "reasons"):
        table.add_column(col, justify="left" if col in ("model", "retrain", "reasons") else "right")

    def fmt(value: Any, spec: str = ".3f") -> str:
        return "—" if value is None else format(value, spec)

    for r in results:
        drift = f"{r['drift_share']:.0%} ({r.get('n_drifted', 0)}/{r.get('n_features', 0)})" if r.get("n_features") \
            else r.get("status", "—")
        table.add_row(r["model"], str(r.get("version", "")), str(r.get("n_predictions", 0)), drift,
                      "yes" if r.get("prediction_drift") else "no", fmt(r.get("live_accuracy")),
                      fmt(r.get("backtest_accuracy")), str(r.get("n_outcomes", 0)), fmt(r.get("latency_p99_us"), ".0f"),
                      fmt(r.get("error_rate"), ".1%"), "[bold red]yes[/]" if r["retrain"] else "no",
                      "; ".join(r.get("reasons") or []) or (r.get("error") or "—"))
    out.print(table)
    for r in results:
        if r.get("report_uri"):
            out.print(f"  {r['model']}: Evidently report {r['report_uri']}")
    wanted = [r for r in results if r["retrain"]]
    if wanted:
        symbols = ",".join(sorted({str(r.get("symbol")) for r in wanted}))
        specs = ",".join(sorted({str(r.get("spec")) for r in wanted}))
        out.print(f"\nRetraining needed: {symbols} · {specs}. To run it in process now instead:")
        out.print(f"  alphaops run --symbols {symbols} --families {specs} --reason monitor")
    _send_retrain_request(settings, results)


def _send_retrain_request(settings: Any, results: list[dict[str, Any]]) -> None:
    """Emit the retrain-request Asset event for Airflow's scheduler (stderr says what happened)."""
    from pipelines.monitor import RETRAIN_REQUEST_URI, send_retrain_request

    try:
        sent = send_retrain_request(settings, results)
    except LookupError as exc:
        console.print(f"[yellow]retrain request not sent to Airflow[/]: {exc}")
        return
    if sent is None:
        return
    models = ", ".join(r["model"] for r in sent["requests"])
    console.print(f"retrain request for {models}: event {sent['event_id']} on {RETRAIN_REQUEST_URI}")
    if sent["queued"]:
        console.print(f"  queued {', '.join(sent['queued'])}: the scheduler on this state starts it "
                      f"for {', '.join(sent['extra']['families'])} on {', '.join(sent['extra']['symbols'])}")
    if sent["paused"]:
        console.print(f"[yellow]  {', '.join(sent['paused'])} is paused and ignores the event; unpause it "
                      "in the Airflow UI to retrain on requests[/]")


def main() -> None:
    """Entry point: known errors become one line and a non-zero exit, never a traceback."""
    from warehouse import WarehouseError

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no DB-migration chatter on stderr
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow's telemetry thread unsets an env var while request threads iterate os.environ
    # (KeyError '_MLFLOW_TELEMETRY_SESSION_ID', seen in the stack's rank task); no phoning home either.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    known: tuple[type[BaseException], ...] = (CliError, ValueError, FileNotFoundError, WarehouseError,
                                             RuntimeError, KeyError, LookupError)
    try:
        app()
    except known as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
