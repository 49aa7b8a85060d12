"""The ``alphaops`` command line. Heavy libraries are imported inside commands only.

Each module of this package holds one group of commands; importing it registers them on ``app``.
"""

from __future__ import annotations

import os
import sys

from pipelines.app.cli import bench, data, health, run, sentiment, serve, stack, versions  # noqa: F401  (registers the commands)
from pipelines.app.cli.common import CliError, app, console

__all__ = ["app", "main"]

# ``alphaops --help`` lists the commands in the order a newcomer uses them.
_ORDER = ["run", "ingest", "data", "models", "doctor", "export", "promote", "rollback", "serve", "monitor"]
app.registered_commands.sort(key=lambda command: _ORDER.index(command.name or command.callback.__name__))


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
