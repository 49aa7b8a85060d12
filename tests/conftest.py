"""Test session set-up: every run gets a fresh ALPHAOPS_HOME (warehouse, MLflow, Airflow).

The environment is set at import time, before any test module imports Airflow (which reads
its configuration once, on first import).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="alphaops-test-"))
os.environ["ALPHAOPS_HOME"] = str(_HOME)
os.environ.setdefault("ALPHAOPS_TENANT", "default")
for _key in [k for k in os.environ if k.startswith("ALPHAOPS_") and k not in ("ALPHAOPS_HOME", "ALPHAOPS_TENANT")]:
    if _key != "ALPHAOPS_CLICKHOUSE_URL":
        os.environ.pop(_key)

from pipelines.orchestration.airflow_runner import airflow_environment  # noqa: E402
from pipelines.config import get_settings  # noqa: E402

airflow_environment(get_settings())


@pytest.fixture(scope="session")
def alphaops_home() -> Path:
    return _HOME


@pytest.fixture(autouse=True)
def _session_home_stays_put():
    """A test that points this process at another home must not leave the next tests there."""
    yield
    # dag.test() runs tasks in this process, and Airflow leaves their AIRFLOW_CTX_* variables set:
    # a process started later would pass for a task of that run.
    for key in [k for k in os.environ if k.startswith("AIRFLOW_CTX_")]:
        os.environ.pop(key)
    if os.environ.get("ALPHAOPS_HOME") != str(_HOME):
        moved_to = os.environ.get("ALPHAOPS_HOME")
        os.environ["ALPHAOPS_HOME"] = str(_HOME)
        pytest.fail(f"the test left ALPHAOPS_HOME={moved_to} in this process's environment")


# The longest test files, longest first (durations of a fresh-clone `make test`). `make test` gives
# whole files to its xdist workers in collection order; starting these first keeps one of them from
# being the last to begin and the run from waiting on it alone.
LONGEST_FIRST = (
    "tests/integration/test_stack.py",
    "tests/dags/test_train_models_honesty.py",
    "tests/pipelines/steps/test_validate_markets.py",
    "tests/warehouse/test_concurrency.py",
    "tests/pipelines/app/test_ui_browser.py",
    "tests/pipelines/test_memory.py",
)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {path: k for k, path in enumerate(LONGEST_FIRST)}
    root = Path(str(config.rootpath))

    def file_rank(item: pytest.Item) -> int:
        relative = Path(str(item.path)).relative_to(root).as_posix()
        return rank.get(relative, len(LONGEST_FIRST))

    items.sort(key=file_rank)  # stable: the order inside each file and among the rest is kept


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)
