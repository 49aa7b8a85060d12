"""``alphaops run``: the train_models DAG in process, then the registry table and the champions' bundles."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console
import typer

from pipelines.app.cli.common import (
    app,
    check_symbol,
    check_symbols,
    CliError,
    console,
    load_settings,
    out,
    print_json,
    reap,
    split_given,
    utc_now,
    versions_table,
)


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

    given_symbols = split_given(symbols, "--symbols")
    for symbol in given_symbols or []:
        check_symbol(symbol, "--symbols")
    given_families = split_given(families, "--families")
    settings = load_settings()
    from pipelines.universes import expand_symbols

    conf = {
        # A universe name (UNIV_SYN, UNIV_ARCH) stands for its members.
        "symbols": expand_symbols(given_symbols or settings.symbols),
        "families": given_families or settings.families,
        "trials": trials or settings.trials,
        "holdout_fraction": holdout or settings.holdout_fraction,
        "reason": reason,
        "user": settings.user,
    }
    specs_for(conf["families"])  # fail fast on an unknown family
    check_symbols(settings, conf["symbols"])
    from pipelines.orchestration.airflow_runner import ensure_airflow_db, run_dag

    ensure_airflow_db(settings)
    reap(settings)  # a killed earlier run must not hold this one back

    from pipelines.universes import UNIVERSES

    chosen = specs_for(conf["families"])
    complete = [u for u in UNIVERSES.values() if set(u.members) <= set(conf["symbols"])]
    n_jobs = sum(not s.universe for s in chosen) * len(conf["symbols"]) + sum(s.universe for s in chosen) * len(complete)
    console.print(f"[bold]train_models[/] on {', '.join(conf['symbols'])} · families "
                  f"{', '.join(conf['families'])} · {conf['trials']} trials · {n_jobs} train tasks "
                  f"· home {settings.home_dir}")
    stamp = utc_now().strftime("%Y%m%dT%H%M%S")
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
    from pipelines.app.report import list_versions

    versions = list_versions(settings)
    if as_json:
        print_json({"run_id": run_id, "state": state, "versions": versions,
                     "bundles": {k: str(v) for k, v in exported.items()}})
        return
    versions_table(versions)
    _print_next_steps(settings, exported, has_versions=bool(versions))


def _export_champions(settings: Any) -> dict[str, Path]:
    from registry import CHAMPION, Registry

    registry = Registry.from_settings(settings)
    exported = {}
    for name in registry.model_names():
        if registry.alias_version(name, CHAMPION):
            exported[name] = registry.load_bundle(name, CHAMPION, settings.bundles_dir / f"{name}@{CHAMPION}")
    return exported


def _print_next_steps(settings: Any, exported: dict[str, Path], *, has_versions: bool = True) -> None:
    home = settings.home_dir
    out.print("\n[bold]Open the UIs on this state[/]")
    out.print(f"  MLflow UI : make mlflow-ui      (= ALPHAOPS_HOME={home} .venv/bin/alphaops ui mlflow)")
    out.print(f"  Airflow UI: make airflow-ui     (= ALPHAOPS_HOME={home} .venv/bin/alphaops ui airflow)")
    if exported:
        out.print("\n[bold]Serving bundles (model.onnx + schema.json) of the champions[/]")
        for name, path in exported.items():
            out.print(f"  {name}: {path}")
        out.print("  load with: python -c \"import serving; p = serving.Predictor.load('<bundle dir>')\"")
    elif has_versions:
        out.print("\n[yellow]No champion: every version failed a validation gate (see failed gates).[/]")
    else:
        out.print("\n[yellow]No version: every train task was skipped (too few labelled rows; the log says why "
                  "for each spec).[/]")
