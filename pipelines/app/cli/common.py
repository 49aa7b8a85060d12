"""What every ``alphaops`` command shares: the Typer apps, the consoles, errors and argument checks."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="AlphaOps: orchestrated MLOps for trading models.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks, printed as ratios against a baseline.")
ui_app = typer.Typer(no_args_is_help=True, help="Open the Airflow or MLflow UI on this state.")
stack_app = typer.Typer(no_args_is_help=True, help="The production topology on this machine, without Docker.")
app.add_typer(bench_app, name="bench")
app.add_typer(ui_app, name="ui")
app.add_typer(stack_app, name="stack")
console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 220)  # logs and pipes get the whole table


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


@app.callback()
def _scope(user: str = typer.Option(
        None, "--user", metavar="USER",
        help="Act as USER of the tenant (sets ALPHAOPS_USER): their private models and data, plus the "
             "tenant's shared models. Without it (and without ALPHAOPS_USER): the tenant's shared scope.")) -> None:
    """AlphaOps: orchestrated MLOps for trading models."""
    if user is not None:
        os.environ["ALPHAOPS_USER"] = user  # read by load_settings, and by the Airflow tasks a command starts


def load_settings() -> Any:
    from pipelines.config import get_settings

    return get_settings()


def split_names(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


def check_symbol(symbol: str, option: str = "--symbol") -> str:
    """A symbol becomes part of model names (<tenant>.<spec>.<symbol>): letters, digits, _ and -."""
    if not _SYMBOL.fullmatch(symbol):
        raise CliError(f"{option} {symbol!r} is not a symbol: use 1-32 letters, digits, '_' or '-' "
                       "(starting with a letter or digit)")
    return symbol


def split_given(values: list[str] | None, option: str) -> list[str] | None:
    """Like split_names, but an option that was given and names nothing (``--symbols ,``) is an error."""
    names = split_names(values)
    if values and not names:
        raise CliError(f"{option} {','.join(values)!r} names nothing; give at least one name, or leave "
                       f"{option} out for the defaults")
    return names


def is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def print_json(payload: Any) -> None:
    """Plain JSON on stdout (no wrapping or colour, so pipes always get valid JSON)."""
    sys.stdout.write(json.dumps(payload, default=str, indent=2) + "\n")


def utc_now() -> Any:
    import pandas as pd

    return pd.Timestamp.now(tz="UTC")


def reap(settings: Any, *, always_sweep: bool = True) -> None:
    """End what killed runs left behind (``pipelines.orchestration.reaper``), saying so on stderr. Whatever it
    prints (Airflow's logging, once imported, writes to stdout) goes to stderr too, so that
    stdout stays valid JSON for ``--json``."""
    import contextlib

    from pipelines.orchestration.reaper import reap_orphans_quietly

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


def check_symbols(settings: Any, symbols: list[str]) -> None:
    from pipelines.ingest.samples import SAMPLE_SYMBOLS
    from warehouse import open_warehouse

    unknown = [s for s in symbols if s not in SAMPLE_SYMBOLS]
    if not unknown:
        return
    with open_warehouse(settings) as warehouse:
        have = set(warehouse.inventory(settings.scope)["symbol"])
    missing = [s for s in unknown if s not in have]
    if missing and settings.user:  # a user's run reads the user's own rows only
        raise CliError(f"symbol {', '.join(missing)} has no data of user {settings.user!r} of tenant "
                       f"{settings.tenant!r}; ingest it with `alphaops --user {settings.user} ingest FILE "
                       f"--symbol {missing[0]}`")
    if missing:
        raise CliError(f"symbol {', '.join(missing)} has no data; ingest it with `alphaops ingest FILE "
                       f"--symbol {missing[0]}` (sample symbols: {', '.join(SAMPLE_SYMBOLS)})")


def versions_table(versions: list[dict[str, Any]]) -> None:
    tenant = versions[0]["tenant"] if versions else "default"
    user = versions[0].get("user") if versions else ""
    seen = f"tenant {tenant!r}" + (f" seen by user {user!r} (shared models and theirs)" if user else "")
    table = Table(title=f"Registered model versions of {seen} (holdout metrics, out of sample)")
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

