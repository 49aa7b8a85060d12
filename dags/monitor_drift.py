"""
### monitor_drift

Hourly check of every champion on its prediction log: **fill_outcomes → monitor → request_retrain**;
beside the monitor, **pattern_windows** appends closed trades' windows (with their realized outcomes)
and newly labelled bars to each served pattern model's warehouse library (idempotent).

`monitor` runs Evidently data drift (features vs the training reference) and prediction drift,
live accuracy vs the backtest and the majority baseline, latency and error rates; each Evidently
HTML report is logged to MLflow (experiment `<tenant>/monitoring`) and its URI is in the task log.
When a model needs retraining (drift, degraded accuracy, an old model on a scheduled run, or a
name in the `manual` param), `request_retrain` emits an event on the Asset
`alphaops://retrain-request` that `train_models` is scheduled on; otherwise it is skipped.
"""

from datetime import datetime, timedelta

from airflow.sdk import Asset, Param, dag, task

from pipelines.config import RETRAIN_REQUEST_URI, USER_PATTERN, get_settings  # pydantic-settings only

DEFAULTS = get_settings()  # ALPHAOPS_* environment, read when the file is parsed

RETRAIN_REQUEST = Asset(RETRAIN_REQUEST_URI)  # the same Asset train_models declares


@dag(
    dag_id="monitor_drift",
    schedule=timedelta(hours=1),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=1)},
    params={"manual": Param([], type="array", description="Models to retrain regardless, e.g. direction_h1.SYN1"),
            "user": Param(DEFAULTS.user, type=["null", "string"], pattern=USER_PATTERN,
                          description="User of the tenant whose champions this run checks; empty: the shared ones")},
    tags=["alphaops", "monitoring"],
    doc_md=__doc__,
)
def monitor_drift():
    @task
    def fill_outcomes(params=None, dag_run=None) -> int:
        from pipelines.steps import adapters
        return adapters.fill_outcomes(dag_run.run_after, params.get("user") or "")

    @task
    def monitor(filled: int, params=None, dag_run=None) -> list[dict]:
        from pipelines.steps import adapters
        return adapters.monitor(params, dag_run.run_after, scheduled=dag_run.run_type == "scheduled")

    @task(outlets=[RETRAIN_REQUEST])
    def request_retrain(results: list[dict], params=None, outlet_events=None) -> list[dict]:
        from airflow.sdk.exceptions import AirflowSkipException
        from pipelines.steps import adapters
        requests = adapters.request_retrain(results)
        if not requests:
            raise AirflowSkipException("no champion needs retraining")
        outlet_events[RETRAIN_REQUEST].extra = adapters.retrain_event_extra(requests, params.get("user") or "")
        return requests

    @task
    def pattern_windows(filled: int, params=None, dag_run=None) -> list[dict]:
        from pipelines.steps import adapters
        return adapters.pattern_windows(dag_run.run_after, params.get("user") or "")

    filled = fill_outcomes()
    request_retrain(monitor(filled))
    pattern_windows(filled)


monitor_drift()
