"""MLflow set-up on the settings: tracking URI, experiments with artifacts under the artifact root."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

from pipelines.config import Settings


def use_experiment(settings: Settings, name: str) -> str:
    """Point MLflow at the settings and return the id of experiment ``name`` (created if missing)."""
    import mlflow

    settings.apply_mlflow_env()
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        from mlflow.exceptions import MlflowException

        root = settings.artifact_root.rstrip("/")
        try:
            return mlflow.create_experiment(name, artifact_location=f"{root}/{name.replace('/', '_')}")
        except MlflowException as exc:  # tasks on two workers create it at once: the other one won
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
            experiment = mlflow.get_experiment_by_name(name)
            if experiment is None:
                raise
    return experiment.experiment_id


@lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of this checkout (``+dirty`` when modified), or the package version."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import version

        return f"alphaops-{version('alphaops')}"
