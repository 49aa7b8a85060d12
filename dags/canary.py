"""
### canary

Every hour, for each model with a `challenger`: once its canary window has passed
(`ALPHAOPS_CANARY_WINDOW_HOURS`, 48 by default), compare the live metrics of both arms from the
prediction log (hit rate once outcomes are known, error rate, latency) and **promote** the
challenger to `champion` or **roll it back**. Every decision is recorded in the model's alias
history with its reason. A legacy stage transition to Production is mapped to `champion` here too.
"""

from datetime import datetime, timedelta

from airflow.sdk import dag, task


@dag(
    dag_id="canary",
    schedule=timedelta(hours=1),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=1)},
    tags=["alphaops", "deployment"],
    doc_md=__doc__,
)
def canary():
    @task
    def decide(dag_run=None) -> list[dict]:
        from pipelines.steps import adapters
        return adapters.canary(dag_run.run_after, dag_run.run_id)

    decide()


canary()
