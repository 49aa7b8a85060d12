"""
### train_models

Retrains every model spec of the chosen families on the chosen symbols, every 12 hours and
whenever the monitor requests a retrain (Asset `alphaops://retrain-request`):
**extract → features → label (one mapped task per symbol × timeframe) → plan → train (one per spec × symbol)
→ validate → rank → deploy**.

Trigger with params to choose `symbols`, `families` (`all` for every family), `trials`, `holdout_fraction`
and `user` (a user of the tenant: that user's private models, on the user's data; empty: the shared ones);
their defaults are the settings (`ALPHAOPS_SYMBOLS`, `_FAMILIES`, `_TRIALS`, `_HOLDOUT_FRACTION`, `_USER`).
A run started by retrain requests trains the models of each scope that requested it. Unpausing starts no run at once: the first
scheduled run is at the next 00:00 or 12:00 UTC, with those defaults. Validation is out of
sample (purged holdout, baselines, the naive rules of each field, null tests, walk-forward folds),
and rank first controls false discoveries over every version the run tested (Benjamini–Hochberg,
deflated Sharpe); a version that fails a gate is tagged `validation_status=rejected` and never
deployed. Deploy sets the MLflow alias `challenger` (or
`champion` on a first deploy); the `canary` DAG decides the rest.
"""

from datetime import timedelta

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from pipelines.config import RETRAIN_REQUEST_URI, USER_PATTERN, get_settings  # pydantic-settings only

RETRAIN_REQUEST = Asset(RETRAIN_REQUEST_URI)
DEFAULTS = get_settings()  # ALPHAOPS_* environment, read when the file is parsed
# No start_date: with a past one and catchup=False, unpausing would run the latest slot at once.
# run_immediately=timedelta(0): with False, Airflow still runs the slot just past when the DAG is
# unpaused within a tenth of the interval (1.2 h) after it.
EVERY_12H = CronTriggerTimetable("0 0,12 * * *", timezone="UTC", run_immediately=timedelta(0))


@dag(
    dag_id="train_models",
    schedule=AssetOrTimeSchedule(timetable=EVERY_12H, assets=[RETRAIN_REQUEST]),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=1)},
    params={
        "symbols": Param(DEFAULTS.symbols, type="array", description="Symbols to train on"),
        "families": Param(DEFAULTS.families, type="array", description="Model families, or ['all']"),
        "trials": Param(DEFAULTS.trials, type="integer", minimum=1, description="Optuna trials per spec"),
        "holdout_fraction": Param(DEFAULTS.holdout_fraction, type="number", exclusiveMinimum=0,
                                  exclusiveMaximum=0.9),
        "reason": Param("schedule", type="string", description="Why this run was started"),
        "user": Param(DEFAULTS.user, type=["null", "string"], pattern=USER_PATTERN,
                      description="User of the tenant whose private models this run trains; empty: the shared models"),
    },
    tags=["alphaops", "training"],
    doc_md=__doc__,
)
def train_models():
    @task
    def extract(params=None, dag_run=None, triggering_asset_events=None) -> list[dict]:
        from pipelines.steps import adapters
        return adapters.extract(params, dag_run.run_after, triggering_asset_events)

    @task(map_index_template="{{ task.op_kwargs['dataset']['symbol'] }} {{ task.op_kwargs['dataset']['timeframe'] }}")
    def features(dataset: dict, dag_run=None) -> dict:
        from pipelines.steps import adapters
        return adapters.features(dataset, dag_run.run_after)

    @task(map_index_template="{{ task.op_kwargs['feature_ref']['symbol'] }} {{ task.op_kwargs['feature_ref']['timeframe'] }}")
    def label(feature_ref: dict, params=None, dag_run=None, triggering_asset_events=None) -> list[dict]:
        from pipelines.steps import adapters
        return adapters.label(feature_ref, params, dag_run.run_after, triggering_asset_events)

    @task
    def plan(job_lists: list[list[dict]]) -> list[dict]:
        from pipelines.steps import adapters
        return adapters.plan(job_lists)

    @task(map_index_template="{{ task.op_kwargs['job']['spec_name'] }}")
    def train(job: dict, dag_run=None) -> dict:
        from pipelines.steps import adapters
        return adapters.train(job, dag_run.run_after)

    @task
    def validate(trained: dict, params=None, dag_run=None) -> dict:
        from pipelines.steps import adapters
        return adapters.validate(trained, params, dag_run.run_after)

    @task
    def rank(validated: list[dict], dag_run=None) -> list[dict]:
        from pipelines.steps import adapters
        return adapters.rank(list(validated), dag_run.run_id)

    @task
    def deploy(ranking: list[dict], dag_run=None) -> list[dict]:
        from pipelines.steps import adapters
        return adapters.deploy(ranking, dag_run.run_after, dag_run.run_id)

    # features and labels: one mapped task per (symbol, timeframe); train: one per (spec, symbol, timeframe)
    jobs = plan(label.expand(feature_ref=features.expand(dataset=extract())))
    deploy(rank(validate.expand(trained=train.expand(job=jobs))))


train_models()
