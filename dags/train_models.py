"""
### train_models

Retrains every model spec of the chosen families on the chosen symbols, every 12 hours and
whenever the monitor requests a retrain (Asset `alphaops://retrain-request`):
**extract → features → label → train (one mapped task per spec × symbol) → validate → rank → deploy**.

Trigger with params to choose `symbols`, `families` (`all` for every family), `trials` and
`holdout_fraction`. Validation is out of sample (purged holdout, null test, baselines); a version
that fails a gate is tagged `validation_status=rejected` and never deployed. Deploy sets the
MLflow alias `challenger` (or `champion` on a first deploy); the `canary` DAG decides the rest.
"""

from datetime import datetime, timedelta

from airflow.sdk import Asset, AssetOrTimeSchedule, DeltaTriggerTimetable, Param, dag, task

WAREHOUSE_POOL = "alphaops_warehouse"  # one slot: embedded chDB allows one process per data path
RETRAIN_REQUEST = Asset("alphaops://retrain-request")


@dag(
    dag_id="train_models",
    schedule=AssetOrTimeSchedule(timetable=DeltaTriggerTimetable(timedelta(hours=12)), assets=[RETRAIN_REQUEST]),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=1), "pool": WAREHOUSE_POOL},
    params={
        "symbols": Param(["SPX", "SYN1"], type="array", description="Symbols to train on"),
        "families": Param(["direction"], type="array", description="Model families, or ['all']"),
        "trials": Param(8, type="integer", minimum=1, description="Optuna trials per spec"),
        "holdout_fraction": Param(0.2, type="number", exclusiveMinimum=0, exclusiveMaximum=0.9),
        "reason": Param("schedule", type="string", description="Why this run was started"),
    },
    tags=["alphaops", "training"],
    doc_md=__doc__,
)
def train_models():
    @task
    def extract(params=None, dag_run=None, triggering_asset_events=None) -> list[dict]:
        from pipelines import steps
        return steps.extract(params, dag_run.run_after, triggering_asset_events)

    @task
    def features(datasets: list[dict], dag_run=None) -> list[dict]:
        from pipelines import steps
        return steps.features(datasets, dag_run.run_after)

    @task
    def label(feature_refs: list[dict], params=None, dag_run=None, triggering_asset_events=None) -> list[dict]:
        from pipelines import steps
        return steps.label(feature_refs, params, dag_run.run_after, triggering_asset_events)

    @task(map_index_template="{{ task.op_kwargs['job']['spec_name'] }}")
    def train(job: dict, dag_run=None) -> dict:
        from pipelines import steps
        return steps.train(job, dag_run.run_after)

    @task
    def validate(trained: dict, params=None, dag_run=None) -> dict:
        from pipelines import steps
        return steps.validate(trained, params, dag_run.run_after)

    @task
    def rank(validated: list[dict], dag_run=None) -> list[dict]:
        from pipelines import steps
        return steps.rank(list(validated), dag_run.run_id)

    @task
    def deploy(ranking: list[dict], dag_run=None) -> list[dict]:
        from pipelines import steps
        return steps.deploy(ranking, dag_run.run_after, dag_run.run_id)

    jobs = label(features(extract()))
    deploy(rank(validate.expand(trained=train.expand(job=jobs))))


train_models()
