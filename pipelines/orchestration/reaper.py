"""The reaper: ends what killed runs left behind, and writes down why.

A process killed with SIGKILL (or a machine that went away) runs no clean-up. It leaves:

- MLflow runs ``RUNNING`` forever (killed in train, or in validate while it logged);
- registered versions with no ``validation_status`` (killed before validate tagged them),
  which ``alphaops models`` listed as ``pending`` forever;
- on the embedded path (``alphaops run``: ``dag.test()`` runs every task in one process), an
  Airflow dag run and its task instance ``running`` forever. With ``max_active_runs=1`` such a
  run holds back every later run of ``train_models`` that a scheduler on the same metadata DB
  would start.

``reap_orphans`` finds them and ends them, with the reason in their tags (``orphaned``). It runs
at the start of every ``train_models`` run (the extract step), before ``alphaops run`` starts
its DAG, and before ``alphaops models`` lists the registry. It ends only what is shown dead:

- A dag run of ``dag.test()`` (``triggered_by=test``) is alive while the process that runs its
  tasks is: the PID its task instances recorded, on this host, started before the task did.
  On another host, it is dead after ``stale_after`` without task activity. A dead one is marked
  failed as Airflow's "mark failed" does (the tasks in flight failed, those not run skipped,
  finished ones kept), with a note. Runs that a scheduler runs are left to the scheduler, which fails task instances whose
  heartbeat stopped.
- Every run that the train step starts carries its process (host, PID, the PID's start time) and
  its Airflow task (DAG, dag run, task, try) as tags, through MLflow's ``MLFLOW_RUN_CONTEXT``
  (``process_tags``), so its trial runs carry them too. Such a run is alive while its dag run
  is queued or running: Airflow retries its tasks, and a retried train finds what its attempt
  left (``pipelines.steps.train``). It is dead once its dag run has ended. A run outside Airflow is
  alive while its process on this host is. A run with no such evidence (another host, no tags)
  is dead after ``stale_after`` (6 h).
- A version without ``validation_status`` is orphaned when the run that registered it is dead
  by the rules above (its dag run ended, so no validate task will come), or after
  ``stale_after`` with no evidence.

An orphaned version is tagged ``validation_status=rejected`` (``lifecycle=rejected``,
``failed_gates=orphaned``, ``orphaned=<why>``), not validated again. Validation belongs to its
run: the run-level gates (Benjamini-Hochberg q-values and the deflated Sharpe over every
hypothesis of the run, ``pipelines.steps.discoveries``) cannot be computed for one version once its
run is gone, so a late validation would pass it without the multiple-testing control every
other validated version went through. It would also cost up to a hundred retrains (the null
test) inside a later run's first task, on a warehouse slice that may have changed since
(validate refuses a changed fingerprint). And nothing is lost: the next run trains the same
spec on the current data. A rejected version is never deployed (``Registry.set_challenger``).

Liveness is judged on the wall clock (an audit fact, like ``ingest_log.logged_at``), not on
the run's ``as_of``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from pipelines.config import Settings

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(hours=6)  # no evidence either way: dead after this long without a sign of life
ORPHANED = "orphaned"             # the tag (and failed gate) that says why the reaper ended something
TAG_HOST, TAG_PID, TAG_PID_STARTED = "alphaops.host", "alphaops.pid", "alphaops.pid_started"
TAG_DAG_ID, TAG_DAG_RUN_ID = "airflow.dag_id", "airflow.dag_run_id"
TAG_TASK_ID, TAG_TRY = "airflow.task_id", "airflow.try_number"
_AIRFLOW_CONTEXT = {TAG_DAG_ID: "AIRFLOW_CTX_DAG_ID", TAG_DAG_RUN_ID: "AIRFLOW_CTX_DAG_RUN_ID",
                    TAG_TASK_ID: "AIRFLOW_CTX_TASK_ID", TAG_TRY: "AIRFLOW_CTX_TRY_NUMBER"}
_ALIVE_DAG_RUN_STATES = {"queued", "running"}
_MLFLOW_RUN_CONTEXT = "MLFLOW_RUN_CONTEXT"


# -- marking the runs a process starts ---------------------------------------------------------

def process_identity() -> dict[str, str]:
    """This process as run tags: host, PID and the PID's start time (to tell a reused PID)."""
    import psutil

    return {TAG_HOST: socket.gethostname(), TAG_PID: str(os.getpid()),
            TAG_PID_STARTED: f"{psutil.Process().create_time():.3f}"}


def run_context_tags() -> dict[str, str]:
    """The process, plus the Airflow task it runs (from Airflow's ``AIRFLOW_CTX_*`` environment)."""
    tags = process_identity()
    tags.update({tag: os.environ[env] for tag, env in _AIRFLOW_CONTEXT.items() if os.environ.get(env)})
    return tags


@contextmanager
def process_tags() -> Iterator[dict[str, str]]:
    """Every MLflow run this process starts inside the block gets ``run_context_tags()``
    (through ``MLFLOW_RUN_CONTEXT``, which MLflow reads when it creates a run)."""
    previous = os.environ.get(_MLFLOW_RUN_CONTEXT)
    try:
        tags = dict(json.loads(previous)) if previous else {}
    except ValueError:
        tags = {}
    tags.update(run_context_tags())
    os.environ[_MLFLOW_RUN_CONTEXT] = json.dumps(tags)
    try:
        yield tags
    finally:
        if previous is None:
            os.environ.pop(_MLFLOW_RUN_CONTEXT, None)
        else:
            os.environ[_MLFLOW_RUN_CONTEXT] = previous


# -- evidence of life ------------------------------------------------------------------------

def process_alive(pid: int, started: float | None = None, *, tolerance: float = 1.0) -> bool:
    """Whether ``pid`` runs on this host and, given ``started``, is the process that started then."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) <= tolerance
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


@dataclass(frozen=True)
class Verdict:
    """Alive (True), dead (False) or unknown (None), and why."""

    alive: bool | None
    why: str


class AirflowView(Protocol):
    def dag_run_state(self, dag_id: str, run_id: str) -> str | None: ...
    def reap_test_runs(self, *, now: datetime, stale_after: timedelta) -> list[dict[str, Any]]: ...


def judge_run(tags: dict[str, str], started: datetime, *, now: datetime, airflow: AirflowView | None,
              stale_after: timedelta = STALE_AFTER) -> Verdict:
    """Is the process behind an MLflow run (and so the run) alive? See the module doc."""
    dag_id, dag_run = tags.get(TAG_DAG_ID), tags.get(TAG_DAG_RUN_ID)
    if dag_id and dag_run:
        state = airflow.dag_run_state(dag_id, dag_run) if airflow is not None else None
        if state in _ALIVE_DAG_RUN_STATES:
            return Verdict(True, f"its Airflow run {dag_id} {dag_run} is {state}")
        if state is not None:
            return Verdict(False, f"its Airflow run {dag_id} {dag_run} ended {state}")
    # No Airflow run to ask (or Airflow does not know it): the process itself is the evidence.
    if tags.get(TAG_HOST) == socket.gethostname() and str(tags.get(TAG_PID, "")).isdigit():
        pid = int(tags[TAG_PID])
        started_at = float(tags[TAG_PID_STARTED]) if tags.get(TAG_PID_STARTED) else None
        if process_alive(pid, started_at):
            return Verdict(True, f"its process {pid} is alive")
        return Verdict(False, f"its process (PID {pid} on {tags[TAG_HOST]}) is gone")
    age = now - started
    if age >= stale_after:
        return Verdict(False, f"no sign of life for {_hours(age)} (started {started.isoformat(timespec='seconds')})")
    return Verdict(None, "no evidence yet")


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"


# -- Airflow: the metadata DB, or a task's own API --------------------------------------------

class AirflowDb:
    """Airflow's metadata DB through its ORM, where this process may use it (the CLI, and the
    tasks of ``dag.test()``, which run in the calling process)."""

    def dag_run_state(self, dag_id: str, run_id: str) -> str | None:
        from sqlalchemy import select

        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session

        with create_session() as session:
            state = session.scalar(select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        return None if state is None else str(getattr(state, "value", state))

    def reap_test_runs(self, *, now: datetime, stale_after: timedelta) -> list[dict[str, Any]]:
        """Mark failed the ``dag.test()`` runs left ``running`` by a dead process."""
        from sqlalchemy import select

        from airflow.models.dagrun import DagRun
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import DagRunState, State, TaskInstanceState
        from airflow.utils.types import DagRunTriggeredByType

        # In flight when the process died (dag.test sets a task QUEUED just before running it).
        in_flight = {TaskInstanceState.QUEUED, TaskInstanceState.RUNNING, TaskInstanceState.DEFERRED,
                     TaskInstanceState.UP_FOR_RESCHEDULE, TaskInstanceState.AWAITING_INPUT}
        reaped = []
        with create_session() as session:
            runs = session.scalars(select(DagRun).where(DagRun.state == DagRunState.RUNNING,
                                                        DagRun.triggered_by == DagRunTriggeredByType.TEST)).all()
            for dag_run in runs:
                tis = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_run.dag_id,
                                                                 TaskInstance.run_id == dag_run.run_id)).all()
                verdict = _judge_test_run(dag_run, tis, now=now, stale_after=stale_after)
                if verdict.alive is not False:
                    continue
                # As Airflow's "mark failed" does, per task instance: Airflow's own helper marks every
                # map index of a task that has one running, so it would also fail finished siblings.
                failed = []
                for ti in tis:
                    if ti.state in in_flight:
                        ti.set_state(TaskInstanceState.FAILED, session=session)
                        failed.append(_ti_label(ti))
                    elif ti.state is None or ti.state not in State.finished:
                        ti.set_state(TaskInstanceState.SKIPPED, session=session)
                dag_run.set_state(DagRunState.FAILED)
                dag_run.note = f"{ORPHANED}: {verdict.why}; marked failed by the AlphaOps reaper at {_iso(now)}"
                session.flush()
                reaped.append({"kind": "dag_run", "id": f"{dag_run.dag_id} {dag_run.run_id}", "reason": verdict.why,
                               "tasks_failed": sorted(failed)})
        return reaped


def _ti_label(ti: Any) -> str:
    return ti.task_id if ti.map_index is None or ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"


def _judge_test_run(dag_run: Any, tis: list[Any], *, now: datetime, stale_after: timedelta) -> Verdict:
    """Is the process of a ``dag.test()`` run alive? Its task instances record its PID and host."""
    from airflow.utils.net import get_hostname

    started = [ti for ti in tis if ti.pid and ti.start_date]
    if started:
        latest = max(started, key=lambda ti: ti.start_date)
        if latest.hostname == get_hostname():
            import psutil

            try:
                created = psutil.Process(latest.pid).create_time()
                alive = (psutil.Process(latest.pid).status() != psutil.STATUS_ZOMBIE
                         and created <= latest.start_date.timestamp() + 2.0)
            except psutil.Error:
                alive = False
            if alive:
                return Verdict(True, f"its process {latest.pid} is alive")
            return Verdict(False, f"the process that ran its tasks (PID {latest.pid} on {latest.hostname}) is gone")
    stamps = [dag_run.start_date or dag_run.queued_at] + [
        t for ti in tis for t in (ti.start_date, ti.end_date, ti.last_heartbeat_at) if t is not None]
    last = max((s for s in stamps if s is not None), default=None)
    if last is not None and now - last >= stale_after:
        return Verdict(False, f"no task activity for {_hours(now - last)}")
    return Verdict(None, "no evidence yet")


class AirflowTaskApi:
    """Inside a task that Airflow supervises in its own process (the ORM is blocked there): dag
    run states through the task's own API. It cannot mark runs failed; ``alphaops run`` does."""

    def dag_run_state(self, dag_id: str, run_id: str) -> str | None:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        try:
            return str(RuntimeTaskInstance.get_dagrun_state(dag_id=dag_id, run_id=run_id))
        except Exception as exc:  # not found, or no supervisor to ask: no evidence
            log.debug("no state for dag run %s %s: %s", dag_id, run_id, exc)
            return None

    def reap_test_runs(self, *, now: datetime, stale_after: timedelta) -> list[dict[str, Any]]:
        return []


def airflow_view(settings: Settings) -> AirflowView | None:
    """The metadata DB where this process may use it, else the task API, else None (no Airflow)."""
    import sys

    if "airflow" not in sys.modules:
        if settings.airflow_sql_alchemy_conn is None and not (settings.airflow_home / "airflow.db").exists():
            return None  # Airflow never ran on this state: no dag runs to judge
        from pipelines.orchestration.airflow_runner import airflow_environment

        airflow_environment(settings)
    from airflow import settings as airflow_settings

    session = getattr(airflow_settings, "Session", None)
    blocked = (session is None or getattr(session, "__name__", "") == "BlockedDBSession"
               or "db-not-allowed" in str(getattr(airflow_settings, "SQL_ALCHEMY_CONN", "")))
    if blocked:  # a task process under Airflow's supervisor: it blocks the ORM
        from airflow.sdk.execution_time import task_runner

        return AirflowTaskApi() if getattr(task_runner, "SUPERVISOR_COMMS", None) is not None else None
    return AirflowDb()


# -- the reaper --------------------------------------------------------------------------------

def reap_orphans(settings: Settings, *, now: datetime | None = None, airflow: AirflowView | None | str = "auto",
                 stale_after: timedelta = STALE_AFTER, always_sweep: bool = True) -> list[dict[str, Any]]:
    """End what killed runs left behind on this state (see the module doc); returns what was ended,
    one dict per item: ``kind`` (``dag_run``, ``mlflow_run`` or ``version``), ``id`` and ``reason``.

    ``airflow="auto"`` picks ``airflow_view(settings)``; pass None to judge without Airflow. Dead
    ``dag.test()`` runs are marked failed first; with ``always_sweep=False`` only when a run or
    version to judge belongs to an Airflow run (a listing with nothing open skips Airflow).
    """
    from registry import Registry

    now = now or datetime.now(timezone.utc)
    reaped: list[dict[str, Any]] = []
    made: list[AirflowView | None] = []

    def view() -> AirflowView | None:
        """The Airflow view, made (and its dead dag.test runs swept) on first use."""
        if not made:
            made.append(airflow_view(settings) if airflow == "auto" else airflow)  # type: ignore[arg-type]
            if made[0] is not None:
                reaped.extend(made[0].reap_test_runs(now=now, stale_after=stale_after))
        return made[0]

    if always_sweep:
        view()
    registry = Registry.from_settings(settings)
    client = registry.client
    verdicts: dict[str, Verdict] = {}

    def verdict_of(run: Any) -> Verdict:
        if run.info.run_id not in verdicts:
            started = datetime.fromtimestamp(run.info.start_time / 1000, tz=timezone.utc)
            linked = TAG_DAG_ID in run.data.tags and TAG_DAG_RUN_ID in run.data.tags
            verdicts[run.info.run_id] = judge_run(run.data.tags, started, now=now,
                                                  airflow=view() if linked else None, stale_after=stale_after)
        return verdicts[run.info.run_id]

    experiments = [e.experiment_id for e in client.search_experiments(
        filter_string=f"name LIKE '{settings.scope}/%'")]
    if experiments:
        for run in _all_runs(client, experiments, "attributes.status = 'RUNNING'"):
            verdict = verdict_of(run)
            if verdict.alive is not False:
                continue
            client.set_tag(run.info.run_id, ORPHANED, verdict.why)
            client.set_tag(run.info.run_id, "orphaned_at", _iso(now))
            client.set_terminated(run.info.run_id, "FAILED")
            reaped.append({"kind": "mlflow_run", "id": run.info.run_id,
                           "name": run.info.run_name, "reason": verdict.why})

    for name in registry.model_names():
        for mv in registry.versions(name):
            if "validation_status" in mv.tags:
                continue
            try:
                verdict = verdict_of(client.get_run(mv.run_id))
            except Exception:  # the run is gone (deleted): judge the version by its own age
                created = datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=timezone.utc)
                verdict = judge_run({}, created, now=now, airflow=None, stale_after=stale_after)
            if verdict.alive is not False:
                continue
            why = f"never validated: the run that registered it is dead ({verdict.why})"
            registry.tag(name, str(mv.version), validation_status="rejected", lifecycle="rejected",
                         failed_gates=ORPHANED, orphaned=why, orphaned_at=_iso(now))
            reaped.append({"kind": "version", "id": f"{name} v{mv.version}", "reason": why})
    for item in reaped:
        log.warning("reaped %s %s: %s", item["kind"], item["id"], item["reason"])
    return reaped


def reap_orphans_quietly(settings: Settings, *, always_sweep: bool = True) -> list[dict[str, Any]]:
    """``reap_orphans`` for the start of a run or a listing: a failure is logged, never raised,
    so that housekeeping cannot stop what it precedes."""
    try:
        return reap_orphans(settings, always_sweep=always_sweep)
    except Exception:
        log.warning("the reaper failed; orphans of killed runs are left for the next run", exc_info=True)
        return []


def _all_runs(client: Any, experiment_ids: list[str], filter_string: str) -> list[Any]:
    """Every run matching ``filter_string``, through all result pages."""
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")
