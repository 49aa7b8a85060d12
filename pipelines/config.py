"""Settings: one object chooses between the embedded defaults and the production stack.

Every value can be set with an ``ALPHAOPS_`` environment variable (``ALPHAOPS_HOME``,
``ALPHAOPS_MLFLOW_TRACKING_URI``, ``ALPHAOPS_CLICKHOUSE_URL``, ...). Nothing here forks on a
"test mode": the embedded and production columns differ only in these URIs.
"""

from __future__ import annotations

import hashlib
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from models.parallel import default_n_jobs

FAMILY_ALL = "all"
RETRAIN_REQUEST_URI = "alphaops://retrain-request"  # the Asset monitor_drift emits and train_models is scheduled on
MIN_API_KEY_LENGTH = 16
_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


USER_PATTERN = r"^([a-z0-9][a-z0-9_-]{0,63})?$"  # a user of a tenant: empty (shared) or a lowercase name


class Settings(BaseSettings):
    """AlphaOps settings (env prefix ``ALPHAOPS_``)."""

    model_config = SettingsConfigDict(env_prefix="ALPHAOPS_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path(".alphaops"), description="All embedded state lives here.")
    tenant: str = Field(default="default", pattern=r"^[a-z][a-z0-9_]{0,31}$")
    # A user of the tenant (`--user` on the CLI). Empty: the tenant's shared scope, as before
    # users existed. Set: models, warehouse rows and experiments of this user's private scope
    # (``scope``); the tenant's shared models stay visible (read-only) to the user.
    user: str = Field(default="", pattern=USER_PATTERN)

    # Tracking and registry: sqlite under home unless a server URI is given.
    mlflow_tracking_uri: str | None = None
    mlflow_registry_uri: str | None = None
    mlflow_artifact_root: str | None = Field(
        default=None, description="e.g. s3://alphaops-artifacts (MinIO) in production."
    )
    s3_endpoint_url: str | None = Field(default=None, description="MinIO / S3 endpoint for artifacts.")

    # Warehouse: chDB under home unless a ClickHouse server URL is given.
    clickhouse_url: str | None = Field(
        default=None, description="e.g. http://default:@clickhouse:8123/alphaops"
    )
    # Embedded chDB admits one process at a time: how long an open waits for another process
    # to let go before it fails naming that process (like SQLite's busy timeout). The same
    # default as warehouse.DEFAULT_BUSY_TIMEOUT_SECONDS.
    warehouse_busy_timeout_seconds: float = Field(default=120.0, ge=0.0)

    # Airflow metadata DB: SQLite under home unless given.
    airflow_sql_alchemy_conn: str | None = None

    # The service topology (`alphaops stack`, docker-compose.yml); unset for the embedded default.
    mlflow_backend_store_uri: str | None = Field(
        default=None, description="Database of the MLflow tracking server, e.g. postgresql+psycopg2://…/mlflow"
    )
    airflow_api_url: str | None = Field(
        default=None, description="Airflow api-server, e.g. http://airflow-apiserver:8080 (UI, REST, execution API)"
    )
    airflow_jwt_secret: str | None = Field(default=None, description="Shared by every Airflow component")
    celery_broker_url: str | None = Field(default=None, description="e.g. redis://redis:6379/0: CeleryExecutor")
    celery_result_backend: str | None = Field(default=None, description="e.g. db+postgresql://…/airflow")

    # Training defaults (the DAG params and `alphaops run` override them).
    symbols: list[str] = Field(default_factory=lambda: ["SPX", "SYN1"])
    families: list[str] = Field(default_factory=lambda: ["direction"])
    trials: int = Field(default=6, ge=1)  # with the families' caps: `--families all` in < 15 min on 2 cores
    holdout_fraction: float = Field(default=0.2, gt=0.0, lt=0.9)
    cv_folds: int = Field(default=4, ge=2)
    seed: int = 42
    top_k: int = Field(default=5, ge=1)
    # Null tests (pipelines.steps.validate.null_tests): the fixed-model screen's draws, then at most
    # this many retrains on permuted labels, for versions that pass every other gate.
    null_screen_permutations: int = Field(default=9999, ge=19)
    null_permutations: int = Field(default=100, ge=0)
    # Stop null-test retrains once this many score at least as well as the real model: the
    # model fails the test either way (see pipelines.evaluation.metrics.NullTest). None: never stop.
    null_stop_after: int | None = Field(default=3, ge=1)
    # Threads for independent fits inside one task (CV folds, null-test retrains); results
    # do not depend on it. Default: the cores this process may use.
    n_jobs: int = Field(default_factory=default_n_jobs, ge=1)

    # False discoveries across a run (pipelines.steps.discoveries): Benjamini-Hochberg level over every
    # hypothesis the run tests, and the least deflated Sharpe ratio of a direction-like signal.
    fdr_level: float = Field(default=0.05, gt=0.0, lt=1.0)
    # Walk-forward folds over the holdout (each refit on an expanding window, purged by the horizon).
    walk_forward_folds: int = Field(default=3, ge=3)
    min_deflated_sharpe: float = Field(default=0.95, ge=0.0, le=1.0)

    # Trading costs used by validation (bps per side).
    commission_bps: float = 1.0
    spread_bps: float = 1.0

    # Canary
    canary_share: float = Field(default=0.1, ge=0.0, le=1.0)
    canary_window_hours: float = 48.0

    # REST serving (`alphaops serve`). Keys: "name:key,name2:key2" (or bare keys), and/or a file
    # with one "name:key" per line; without any, serve binds loopback only and nobody is named.
    serve_api_keys: SecretStr | None = Field(default=None, description="API keys of `alphaops serve`")
    serve_api_keys_file: Path | None = Field(default=None, description="File with one name:key per line")
    serve_max_body_bytes: int = Field(default=1_048_576, ge=1_024, le=1_073_741_824)
    serve_max_batch_rows: int = Field(default=1_000, ge=1, le=1_000_000)
    serve_watch_interval_seconds: float = Field(default=5.0, gt=0.0, le=3_600.0)
    serve_routing_header: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9-]{0,63}$",
                                             description="Header that refines a caller's canary routing")

    # Headline scorer of the news features (models.head_scorer.scorer_for): "vader" (the lexicon in
    # vaderSentiment's wheel) or "minilm" (the head `alphaops sentiment train-head` adopted; needs
    # the optional 'text' extra; without an adopted head the features step refuses, naming the fix).
    news_scorer: Literal["vader", "minilm"] = "vader"

    # Data quality
    max_gap_bars: int = Field(default=5, ge=1)

    # Memory (pipelines.memory): a step whose estimated peak exceeds the budget fails before it
    # starts, naming the step, the estimate and this setting. None: half of the machine's memory.
    memory_budget_mb: int | None = Field(default=None, ge=64)
    # Series longer than this are featurized in overlapping pieces (features.compute_chunks).
    feature_chunk_rows: int = Field(default=200_000, ge=1_000)
    # At most this many bytes of training matrix (float32) are read per (spec, symbol): the
    # latest rows are kept, like a spec's max_train_rows.
    max_train_bytes: int = Field(default=2_000_000_000, ge=1_000_000)
    # Specs with select_features drop noise inputs, chosen on the training window only
    # (models.selection); False trains every such spec on all usable features.
    feature_selection: bool = True

    # Monitoring alerts: POSTed as JSON to this URL (Slack-style `text` plus the alert's
    # fields); unset, they are logged as warnings.
    alert_webhook_url: str | None = Field(default=None, pattern=r"^https?://\S+$",
                                          description="http(s) URL that receives monitoring alerts")

    @property
    def scope(self) -> str:
        """Where this process's models and rows live: ``<tenant>`` (shared) or ``<tenant>~<user>``.

        It prefixes registered model names (``<scope>.<spec>.<symbol>``) and MLflow experiment
        names, and is the ``tenant`` key of the warehouse rows the process writes and reads."""
        return scope_of(self.tenant, self.user)

    @cached_property
    def home_dir(self) -> Path:
        path = self.home.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def warehouse_path(self) -> Path:
        return self.home_dir / "warehouse"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home_dir / 'mlflow.db'}"

    @property
    def registry_uri(self) -> str:
        return self.mlflow_registry_uri or self.tracking_uri

    @property
    def artifact_root(self) -> str:
        return self.mlflow_artifact_root or (self.home_dir / "mlartifacts").as_uri()

    @property
    def airflow_home(self) -> Path:
        return self.home_dir / "airflow"

    @property
    def airflow_db_uri(self) -> str:
        return self.airflow_sql_alchemy_conn or f"sqlite:///{self.airflow_home / 'airflow.db'}"

    @property
    def bundles_dir(self) -> Path:
        return self.home_dir / "bundles"

    def airflow_env(self, dags_folder: Path) -> dict[str, str]:
        """Environment for an in-process or standalone Airflow on these settings."""
        return {
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.airflow_db_uri,
            "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", "4"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "ALPHAOPS_HOME": str(self.home_dir),
        }

    def serve_keys(self) -> dict[str, str]:
        """Caller name -> API key, from ``serve_api_keys`` and ``serve_api_keys_file``."""
        entries: list[tuple[str, str]] = []
        if self.serve_api_keys is not None:
            entries += [("ALPHAOPS_SERVE_API_KEYS", e) for e in self.serve_api_keys.get_secret_value().split(",")]
        if self.serve_api_keys_file is not None:
            try:
                lines = self.serve_api_keys_file.expanduser().read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ValueError(f"ALPHAOPS_SERVE_API_KEYS_FILE: cannot read {self.serve_api_keys_file}: "
                                 f"{exc.strerror or exc}") from None
            entries += [(f"{self.serve_api_keys_file} line {i + 1}", line) for i, line in enumerate(lines)
                        if line.strip() and not line.lstrip().startswith("#")]
        keys: dict[str, str] = {}
        for where, entry in entries:
            entry = entry.strip()
            if not entry:
                continue
            name, sep, key = entry.partition(":")
            if not sep or not _KEY_NAME.fullmatch(name):
                name, key = f"key-{hashlib.sha256(entry.encode()).hexdigest()[:12]}", entry
            if len(key) < MIN_API_KEY_LENGTH:
                raise ValueError(f"{where}: the API key of {name!r} is shorter than {MIN_API_KEY_LENGTH} characters")
            if name in keys:
                raise ValueError(f"{where}: {name!r} has more than one API key")
            keys[name] = key
        return keys

    def apply_mlflow_env(self) -> None:
        """Point MLflow (and boto3 for S3 artifacts) at these settings."""
        if self.s3_endpoint_url:
            os.environ.setdefault("MLFLOW_S3_ENDPOINT_URL", self.s3_endpoint_url)


USER_SEPARATOR = "~"  # cannot occur in a tenant name, so a user's scope never passes for a tenant's


def scope_of(tenant: str, user: str = "") -> str:
    """``<tenant>`` when ``user`` is empty (the tenant's shared scope), else ``<tenant>~<user>``."""
    return f"{tenant}{USER_SEPARATOR}{user}" if user else tenant


class SettingsInvalid(ValueError):
    """A setting (environment variable, .env line or override) has a bad value; the message names it."""


_SECRET_WORDS = ("key", "secret", "password", "token")


def _explain(exc: ValidationError | SettingsError) -> str:
    """One line naming each bad variable, its value (unless secret) and what is wrong."""
    if isinstance(exc, SettingsError):  # a value pydantic-settings could not even decode
        match = re.search(r'field "([^"]+)"', str(exc))
        field = match.group(1) if match else "?"
        hint = " (lists are JSON, e.g. '[\"SPX\", \"SYN1\"]')" if field in ("symbols", "families") else ""
        return f"invalid setting ALPHAOPS_{field.upper()}: cannot parse its value{hint}"
    parts = []
    for err in exc.errors():
        field = str(err.get("loc", ("?",))[0])
        secret = any(w in field for w in _SECRET_WORDS)
        value = "" if secret or err.get("type") == "missing" else f"={str(err.get('input'))[:60]!r}"
        parts.append(f"ALPHAOPS_{field.upper()}{value}: {err.get('msg')}")
    return "invalid setting " + "; ".join(parts)


def get_settings(**overrides: object) -> Settings:
    """Fresh settings from the environment, with explicit overrides (no global state).

    Raises :class:`SettingsInvalid` (a ``ValueError``) naming the variable when a value is bad."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except (ValidationError, SettingsError) as exc:
        raise SettingsInvalid(_explain(exc)) from None
