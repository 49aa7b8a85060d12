"""Both UIs in a real browser (Playwright driving Debian's headless chromium), on a fresh
ALPHAOPS_HOME with one small synthetic symbol, through the same commands a user runs:

- ``alphaops ui airflow`` (airflow standalone: real api-server, scheduler, dag-processor and
  triggerer; the tasks run in their own processes), started the way a fresh clone would run it,
  with the venv's bin dir *not* on PATH;
- the trigger form runs ``train_models`` to green, and a train task's log is shown;
- ``alphaops monitor --retrain MODEL`` reaches that scheduler through an Asset event, and it
  starts ``train_models`` for that model alone;
- ``alphaops ui mlflow``: the nested trial runs, and moving ``champion`` in the registry UI is
  followed by a ``Predictor`` under ``registry.watch`` within 30 s;
- stopping ``alphaops ui airflow`` stops every process it started.

The tests run in file order and build on each other (one trained model, then its retrain).
Screenshots go to each test's tmp dir. They skip only where Chromium or Playwright is absent.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SYMBOL = "SYNBR"
MODEL = f"default.direction_h1.{SYMBOL}"
DAGS = ["canary", "monitor_drift", "train_models"]
RUN_TIMEOUT = 600.0
INGEST = """
import pandas as pd
from pipelines.config import get_settings
from pipelines.ingest.ingestion import ingest
from pipelines.ingest.samples import SyntheticSource
ingest(SyntheticSource(seed=11, n_bars=6000, imbalance_coef=0.6), symbol=sys.argv[1], timeframe="1m",
       settings=get_settings(), as_of=pd.Timestamp("2026-01-01", tz="UTC"))
"""
STATE: dict[str, Any] = {}  # what one test leaves for the next (run ids, timings)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _user_env(home: Path, **extra: str) -> dict[str, str]:
    """A fresh shell's environment: no ALPHAOPS_/AIRFLOW/MLFLOW settings of this test session, and
    the venv's bin dir off PATH (as when a user calls .venv/bin/alphaops from a fresh clone)."""
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHAOPS_", "AIRFLOW", "MLFLOW_"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir)
    return {**env, "ALPHAOPS_HOME": str(home), **extra}


def _alphaops(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).with_name("alphaops")
    return subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=timeout, env=env)


def _wait_for(what: str, check, timeout: float, every: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (httpx.HTTPError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _stop(proc: subprocess.Popen) -> None:
    """Last-resort cleanup of a server started in its own session (the tests check the real stop)."""
    from pipelines.orchestration.airflow_runner import stop_session

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pass
    stop_session(proc, grace=5)


class AirflowAPI:
    """The REST API of the running api-server (simple auth manager, all admins: GET /auth/token)."""

    def __init__(self, url: str):
        self.url = url
        self.client = httpx.Client(base_url=url, timeout=30)

    def get(self, path: str, **params: Any) -> Any:
        token = self.client.get("/auth/token").json()["access_token"]
        response = self.client.get(f"/api/v2{path}", params=params, headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
        return response.json()

    def runs(self) -> list[dict]:
        return self.get("/dags/train_models/dagRuns", order_by="run_after", limit=100)["dag_runs"]

    def task_instances(self, run_id: str) -> list[dict]:
        return self.get(f"/dags/train_models/dagRuns/{run_id}/taskInstances")["task_instances"]

    def wait_for_run(self, run_id: str) -> dict:
        def finished() -> dict | None:
            run = self.get(f"/dags/train_models/dagRuns/{run_id}")
            return run if run["state"] in ("success", "failed") else None

        run = _wait_for(f"train_models run {run_id}", finished, RUN_TIMEOUT, every=5)
        assert run["state"] == "success", [(t["task_id"], t["state"]) for t in self.task_instances(run_id)]
        return run


@pytest.fixture(scope="module")
def ui_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("ui-home")
    result = subprocess.run([sys.executable, "-c", "import sys\n" + INGEST, SYMBOL], capture_output=True, text=True,
                            timeout=300, env=_user_env(home))
    assert result.returncode == 0, result.stderr[-3000:]
    return home


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM}: `make test` installs it with apt-get when it "
                    "runs as root (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (it is in the test extras: pip install -e '.[test]')")
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    except Exception as exc:  # a broken Chromium install: say so rather than fail every test
        playwright.stop()
        pytest.skip(f"Chromium at {CHROMIUM} does not start under Playwright: {exc}")
    yield chromium
    chromium.close()
    playwright.stop()


@pytest.fixture(scope="module")
def servers(browser, ui_home, tmp_path_factory):
    """`alphaops ui airflow` and `alphaops ui mlflow` on the fresh home, each in its own session.
    The settings in their environment are the defaults of the runs the scheduler starts: the
    direction family (3 specs) on SYNBR with 2 trials, so that a 00:00/12:00 UTC slot falling
    inside the test costs little. These tests drive the UIs, not the statistics (tests/dags and
    tests/pipelines/steps/test_validate_markets.py do), so the null tests run at their smallest depth:
    999 screen draws and 20 retrains."""
    logs = tmp_path_factory.mktemp("ui-logs")
    airflow_port, mlflow_port = _free_port(), _free_port()
    env = _user_env(ui_home, ALPHAOPS_SYMBOLS=json.dumps([SYMBOL]), ALPHAOPS_TRIALS="2",
                    ALPHAOPS_NULL_SCREEN_PERMUTATIONS="999", ALPHAOPS_NULL_PERMUTATIONS="20")
    cli = str(Path(sys.executable).with_name("alphaops"))
    started = time.monotonic()
    with open(logs / "airflow-ui.out", "w") as a_out, open(logs / "mlflow-ui.out", "w") as m_out:
        airflow = subprocess.Popen([cli, "ui", "airflow", "--port", str(airflow_port)], env=env, stdout=a_out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        mlflow = subprocess.Popen([cli, "ui", "mlflow", "--port", str(mlflow_port)], env=env, stdout=m_out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    api = AirflowAPI(f"http://localhost:{airflow_port}")
    try:
        _wait_for("the Airflow UI to answer 200", lambda: httpx.get(api.url, timeout=5).status_code == 200, 300)
        STATE["airflow_ui_200_s"] = time.monotonic() - started
        _wait_for("every DAG parsed", lambda: api.get("/dags")["total_entries"] == len(DAGS), 180)
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        _wait_for("the MLflow UI to answer 200", lambda: httpx.get(mlflow_url, timeout=5).status_code == 200, 300)
        STATE["mlflow_ui_200_s"] = time.monotonic() - started
        yield {"airflow": airflow, "mlflow": mlflow, "api": api, "mlflow_url": mlflow_url, "env": env,
               "logs": logs, "home": ui_home}
    except AssertionError:
        print((logs / "airflow-ui.out").read_text()[-3000:], (logs / "mlflow-ui.out").read_text()[-3000:])
        log = ui_home / "logs" / "airflow-standalone.log"
        if log.exists():
            print(log.read_text()[-6000:])
        raise
    finally:
        _stop(airflow)
        _stop(mlflow)
        print(f"UI timings: {json.dumps({k: round(v, 1) for k, v in STATE.items() if k.endswith('_s')})}")


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


@pytest.fixture
def shoot(page, tmp_path):
    """shoot(name): a numbered full-page screenshot in this test's tmp dir (and one at the end)."""
    count = iter(range(1, 100))

    def shoot(name: str) -> None:
        page.screenshot(path=str(tmp_path / f"{next(count):02d}-{name}.png"), full_page=True)

    yield shoot
    shoot("end")


def _is_green(css_color: str) -> bool:
    """oklch(L C H) with a green hue, or rgb(r, g, b) with green the largest part."""
    values = [float(v.rstrip("%,")) for v in css_color[css_color.index("(") + 1:-1].replace("/", " ").split()
              if v.rstrip("%,").replace(".", "", 1).isdigit()]
    if css_color.startswith("oklch"):
        return 100 <= values[2] <= 180
    return values[1] > values[0] and values[1] > values[2]


def test_the_ui_lists_every_dag_and_unpausing_train_models_starts_no_run(servers, page, shoot):
    api = servers["api"]
    assert str(Path(sys.executable).parent) not in servers["env"]["PATH"].split(os.pathsep)  # as from a fresh clone
    page.goto(f"{api.url}/dags")
    for dag_id in DAGS:
        page.get_by_role("link", name=dag_id, exact=True).wait_for()
    shoot("dags")
    assert all(d["is_paused"] for d in api.get("/dags")["dags"])
    page.get_by_placeholder("Search Dags").fill("train_models")
    page.get_by_text("1 Dag", exact=False).wait_for()
    page.get_by_test_id("toggle-pause").click()
    _wait_for("train_models unpaused", lambda: not api.get("/dags/train_models")["is_paused"], 30, every=1)
    shoot("unpaused")
    time.sleep(12)  # two scheduler loops: the old DeltaTriggerTimetable started a default run here
    assert api.runs() == []
    first_slot = api.get("/dags/train_models")["next_dagrun_run_after"]
    assert first_slot[11:19] in ("00:00:00", "12:00:00")
    STATE["first_slot"] = _ts(first_slot)


def _no_surprise_run(api: AirflowAPI) -> None:
    """No scheduled run before the first 00:00/12:00 UTC slot after unpausing."""
    early = [r for r in api.runs() if r["run_type"] == "scheduled" and _ts(r["run_after"]) < STATE["first_slot"]]
    assert early == []


def test_the_trigger_form_runs_train_models_to_green_and_shows_a_train_log(servers, page, shoot):
    api = servers["api"]
    page.goto(f"{api.url}/dags")
    page.get_by_role("link", name="train_models", exact=True).click()
    page.get_by_role("button", name="Reparse Dag").wait_for()  # the DAG's own page
    page.get_by_role("button", name="Trigger Dag").click()
    form = page.get_by_role("dialog")
    assert form.locator("[name=element_trials]").input_value() == "2"  # the default is ALPHAOPS_TRIALS
    form.locator("[name=element_symbols]").fill(SYMBOL)
    form.locator("[name=element_families]").fill("direction_h1")
    form.locator("[name=element_trials]").fill("1")
    form.locator("[name=element_reason]").fill("browser test")
    assert form.locator("[name=element_user]").input_value() == ""  # the shared scope (ALPHAOPS_USER unset)
    shoot("trigger-form")
    form.get_by_role("button", name="Trigger", exact=True).click()
    page.wait_for_url("**/runs/manual__*")
    run_id = page.url.rsplit("/runs/", 1)[1]
    STATE["ui_run_id"] = run_id

    run = api.wait_for_run(run_id)
    assert run["conf"] == {"symbols": [SYMBOL], "families": ["direction_h1"], "trials": 1,
                           "holdout_fraction": 0.2, "reason": "browser test", "user": ""}
    STATE["ui_run_s"] = (_ts(run["end_date"]) - _ts(run["start_date"])).total_seconds()
    page.reload()
    badge = page.locator("h2", has_text=run_id).locator("xpath=..").get_by_test_id("state-badge")
    badge.filter(has_text="Success").wait_for()
    assert _is_green(badge.evaluate("e => getComputedStyle(e).backgroundColor"))
    shoot("run-green")

    tis = api.task_instances(run_id)
    assert sorted((t["task_id"], t["state"]) for t in tis) == sorted(
        (t, "success") for t in ["extract", "features", "label", "plan", "train", "validate", "rank", "deploy"])
    pids = {t["pid"] for t in tis}
    assert len(pids) == len(tis) and os.getpid() not in pids  # each task in a process of its own

    page.get_by_role("link", name="direction_h1", exact=True).click()  # the mapped train task
    page.wait_for_url("**/tasks/train/mapped/0")
    page.get_by_text(f"trained {MODEL} v1", exact=False).wait_for()
    assert "(1 trials" in page.inner_text("body")
    shoot("train-log")


def _ts(value: str) -> Any:
    import pandas as pd

    return pd.Timestamp(value)


def test_monitor_retrain_request_starts_train_models_for_that_model_alone(servers):
    api = servers["api"]
    assert STATE.get("ui_run_id"), "needs the UI-triggered run of the previous test"
    before = {r["dag_run_id"] for r in api.runs()}
    result = _alphaops("monitor", "--retrain", f"direction_h1.{SYMBOL}", env=servers["env"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"retrain request for {MODEL}" in result.stderr and "queued train_models" in result.stderr

    new = _wait_for("an asset-triggered train_models run", lambda: [
        r for r in api.runs() if r["dag_run_id"] not in before and r["run_type"] == "asset_triggered"], 120)
    assert len(new) == 1
    run = api.wait_for_run(new[0]["dag_run_id"])
    STATE["asset_run_s"] = (_ts(run["end_date"]) - _ts(run["start_date"])).total_seconds()
    events = api.get(f"/dags/train_models/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")["asset_events"]
    assert [e["name"] for e in events] == ["alphaops://retrain-request"]
    assert events[0]["extra"]["source"] == "alphaops monitor" and events[0]["extra"]["symbols"] == [SYMBOL]
    # That model alone: one train task, where the default families (direction) have three specs;
    # its version records why it was trained and the settings' trial count (ALPHAOPS_TRIALS=2).
    trains = [t for t in api.task_instances(run["dag_run_id"]) if t["task_id"] == "train"]
    assert [(t["rendered_map_index"], t["state"]) for t in trains] == [("direction_h1", "success")]
    from registry import Registry

    registry = Registry(servers["mlflow_url"])
    retrained = [(v, registry.client.get_run(v.run_id)) for v in registry.client.search_model_versions(f"name='{MODEL}'")]
    retrained = [(v, r) for v, r in retrained if r.data.tags.get("trigger", "").startswith("monitor: ")]
    assert len(retrained) == 1
    version, mlflow_run = retrained[0]
    assert mlflow_run.data.tags["trigger"].startswith(f"monitor: {MODEL} (manual)")
    assert mlflow_run.data.params["trials"] == "2"
    STATE["retrained_version"] = version.version
    _no_surprise_run(api)


def test_mlflow_ui_shows_nested_trials_and_a_watcher_follows_champion_moved_in_the_ui(servers, page, shoot, tmp_path):
    from registry import Registry
    from registry.watch import watch_alias

    registry = Registry(servers["mlflow_url"])
    assert registry.alias_version(MODEL, "champion") == "1", "needs the versions of the previous tests"
    new = STATE["retrained_version"]  # the retrain's version; champion moves to it in the UI
    predictor, watcher = watch_alias(registry, MODEL, "champion", tmp_path / "bundles", interval=5.0)
    try:
        assert predictor.version == "1"
        url = servers["mlflow_url"]
        page.goto(f"{url}/#/experiments")
        page.get_by_role("link", name="default/direction").click()
        _dismiss_if_shown(page.get_by_role("button", name="Got it"))  # the GenAI overview's tour
        page.get_by_text("Model training", exact=True).click()
        runs = page.get_by_role("link", name=f"direction_h1.{SYMBOL}")
        _wait_for("the two training runs listed", lambda: runs.count() >= 2, 60, every=0.5)
        assert page.get_by_text("trial-001", exact=True).count() == 0  # trials are nested, folded
        shoot("experiment-runs")
        newest = runs.first.locator("xpath=ancestor::*[@role='gridcell']")
        newest.get_by_role("button").first.click()  # expand the retrain's run: its 2 Optuna trials
        page.get_by_text("trial-001", exact=True).wait_for()
        assert page.get_by_text("trial-000", exact=True).count() >= 1
        shoot("nested-trials")

        page.goto(f"{url}/#/models")
        page.get_by_role("link", name=MODEL).wait_for()
        _dismiss_if_shown(page.get_by_role("dialog").get_by_role("button", name="Close"))
        page.get_by_role("link", name=MODEL).click()
        page.get_by_role("link", name=f"Version {new}", exact=True).click()
        page.locator("[data-component-id*=aliaseditor]").click()
        dialog = page.get_by_role("dialog")
        box = dialog.get_by_role("combobox")
        box.click()
        box.press_sequentially("champion")
        box.press("Enter")
        dialog.get_by_text("also being used on version 1", exact=False).wait_for()
        shoot("alias-dialog")
        dialog.get_by_role("button", name="Save aliases").click()
        moved = time.monotonic()
        dialog.wait_for(state="hidden")
        page.get_by_text("@ champion", exact=False).wait_for()  # now on the version's page itself
        shoot("champion-moved")
        _wait_for(f"champion on version {new} in the registry", lambda: registry.alias_version(MODEL, "champion") == new,
                  10, every=0.5)

        _wait_for(f"the watched predictor to serve version {new}", lambda: predictor.version == new, 30, every=0.5)
        followed = time.monotonic() - moved
        STATE["watcher_follow_s"] = followed
        assert followed <= 30
        import numpy as np

        assert len(predictor.predict(np.zeros(len(predictor.schema.features), dtype=np.float32)).probabilities) == 2
    finally:
        watcher.stop()


def _dismiss_if_shown(button) -> None:
    """Click the button of one of MLflow's first-visit overlays (a feature tour, the "new model
    registry UI" dialog) if it shows up within 10 s; they block clicks on the page under them."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        button.click(timeout=10_000)
    except PlaywrightTimeout:
        return
    button.wait_for(state="hidden")


def test_stopping_the_airflow_ui_stops_every_process_it_started(servers):
    import psutil

    from pipelines.orchestration.airflow_runner import session_processes

    airflow = servers["airflow"]
    standalone = [p for p in psutil.Process(airflow.pid).children() if "standalone" in " ".join(p.cmdline())]
    assert len(standalone) == 1
    sid = standalone[0].pid
    assert len(session_processes(sid)) >= 5  # standalone, api-server, scheduler, dag-processor, triggerer…
    started = time.monotonic()
    airflow.send_signal(signal.SIGTERM)  # what Ctrl-C or a service manager does
    airflow.wait(timeout=120)
    STATE["airflow_stop_s"] = time.monotonic() - started
    assert session_processes(sid) == []
    assert airflow.returncode == 0
