"""``alphaops models``, ``export``, ``promote`` and ``rollback``: the registry's versions and aliases."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
import typer

from pipelines.app.cli.common import app, CliError, load_settings, out, print_json, reap, versions_table


@app.command()
def models(as_json: bool = typer.Option(False, "--json"),
           history: bool = typer.Option(False, "--history", help="Show every alias change.")) -> None:
    """Every registered version with aliases, validation status and holdout metrics (versions
    orphaned by a killed run are first tagged rejected, failed gate ``orphaned``)."""
    from pipelines.app.report import list_versions

    settings = load_settings()
    reap(settings, always_sweep=False)  # Airflow only if an open run or pending version needs it
    versions = list_versions(settings, with_history=history or as_json)
    if as_json:
        print_json(versions)
        return
    versions_table(versions)
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
    registry = Registry.from_settings(load_settings())
    path = registry.load_bundle(registry.qualify(name), alias, directory, force=force)
    out.print(f"wrote {path / 'model.onnx'} and {path / 'schema.json'}")


@app.command()
def promote(name: str, reason: str = typer.Option("manual promotion", help="Recorded in the history.")) -> None:
    """Promote the challenger of NAME to champion."""
    from registry import Registry

    registry = Registry.from_settings(load_settings())
    version = registry.promote(registry.qualify(name), reason=reason, run_id="cli")
    out.print(f"{registry.qualify(name)}: champion is now v{version}")


@app.command()
def rollback(name: str, reason: str = typer.Option("manual rollback", help="Recorded in the history.")) -> None:
    """End NAME's canary (drop the challenger), or restore the previous champion."""
    from registry import Registry

    registry = Registry.from_settings(load_settings())
    version = registry.rollback(registry.qualify(name), reason=reason, run_id="cli")
    out.print(f"{registry.qualify(name)}: champion is v{version}, no challenger")
