from types import SimpleNamespace

from pipelines.live.retrain import retrain_event_extra
from pipelines.values import as_timestamp
from pipelines.steps.adapters import label

PARAMS = {"symbols": ["SPX", "SYN1"], "families": ["direction"], "trials": 8, "holdout_fraction": 0.2,
          "reason": "schedule"}


def test_as_timestamp_is_utc():
    assert str(as_timestamp("2026-01-01T12:00:00").tz) == "UTC"
    assert as_timestamp("2026-01-01T12:00:00+02:00").hour == 10


def test_a_retrain_request_narrows_the_train_jobs_and_records_why(monkeypatch):
    """The label step turns a retrain-request Asset event into jobs for the affected models only."""
    import pipelines.steps.build

    monkeypatch.setattr(pipelines.steps.build, "build_labels", lambda *a, **k: {"skipped": {}})
    extra = retrain_event_extra([{"model": "default.direction_h1.SYN1", "symbol": "SYN1", "spec": "direction_h1",
                                  "triggers": ["drift"]}])
    events = {"alphaops://retrain-request/": [SimpleNamespace(extra=extra)]}
    refs = [{"symbol": "SYN1", "timeframe": "1m", "feature_set_version": "fs-1.0"}]
    jobs = label(refs, PARAMS, "2026-01-01", events)
    assert [(j["spec_name"], j["symbol"]) for j in jobs] == [("direction_h1", "SYN1")]
    assert jobs[0]["trigger"].startswith("monitor: default.direction_h1.SYN1 (drift)")
    scheduled = label(refs, PARAMS, "2026-01-01", None)
    assert {j["spec_name"] for j in scheduled} == {"direction_h1", "direction_h5", "direction3_h5"}
    assert scheduled[0]["trigger"] == "schedule"


def test_retrain_requests_of_two_users_give_each_dataset_its_own_scopes_jobs(monkeypatch):
    """Events from the shared scope and from user ann, in one run: each featurized dataset's jobs
    are those its own scope requested, and carry that scope."""
    import pipelines.steps.build

    monkeypatch.setattr(pipelines.steps.build, "build_labels", lambda *a, **k: {"skipped": {}})
    shared = retrain_event_extra([{"model": "default.direction_h1.SYN1", "symbol": "SYN1", "spec": "direction_h1",
                                   "triggers": ["drift"]}])
    ann = retrain_event_extra([{"model": "default~ann.direction_h5.SYN1", "symbol": "SYN1", "spec": "direction_h5",
                                "triggers": ["manual"]}], user="ann")
    events = {"alphaops://retrain-request/": [SimpleNamespace(extra=ann), SimpleNamespace(extra=shared)]}
    refs = [{"symbol": "SYN1", "timeframe": "1m", "feature_set_version": "fs-1.0", "user": user}
            for user in ("", "ann")]
    jobs = label(refs, PARAMS, "2026-01-01", events)
    assert [(j["user"], j["spec_name"]) for j in jobs] == [("", "direction_h1"), ("ann", "direction_h5")]
    assert jobs[1]["trigger"] == "monitor: default~ann.direction_h5.SYN1 (manual)"


def test_a_run_with_a_user_param_trains_and_deploys_in_that_users_scope(alphaops_home, monkeypatch):
    """The train_models tasks' adapters, chained as the DAG chains them, with ``user`` in the params:
    the data, versions, ranking and aliases are user cyd's; the tenant's shared scope gets none."""
    import pandas as pd

    from pipelines.config import get_settings
    from pipelines.ingest.ingestion import ingest
    from pipelines.ingest.samples import SyntheticSource
    from pipelines.steps import adapters
    from registry import Registry

    monkeypatch.setenv("ALPHAOPS_NULL_PERMUTATIONS", "0")  # the screen decides: this test is about scope
    as_of = pd.Timestamp("2026-01-01", tz="UTC")
    cyd = get_settings(user="cyd")
    ingest(SyntheticSource(seed=8, n_bars=2000, imbalance_coef=0.6), symbol="CYDFX", timeframe="1m",
           settings=cyd, as_of=as_of)
    params = {"symbols": ["CYDFX"], "families": ["direction_h1"], "trials": 1, "holdout_fraction": 0.25,
              "reason": "test", "user": "cyd"}
    datasets = adapters.extract(params, as_of)
    assert datasets == [{"symbol": "CYDFX", "timeframe": "1m", "user": "cyd"}]
    jobs = adapters.plan([adapters.label(adapters.features(d, as_of), params, as_of) for d in datasets])
    assert [(j["spec_name"], j["user"]) for j in jobs] == [("direction_h1", "cyd")]
    trained = [adapters.train(job, as_of) for job in jobs]
    assert trained[0]["model_name"] == "default~cyd.direction_h1.CYDFX" and trained[0]["user"] == "cyd"
    validated = [adapters.validate(t, params, as_of) for t in trained]
    assert validated[0]["status"] in ("validated", "rejected") and validated[0]["user"] == "cyd"
    ranking = adapters.rank(validated, run_id="user-param-test")
    assert all(row["user"] == "cyd" for row in ranking)
    assert {row["model_name"] for row in ranking} <= {"default~cyd.direction_h1.CYDFX"}
    adapters.deploy(ranking, as_of, run_id="user-param-test")
    own = Registry.from_settings(cyd)
    assert own.model_names() == ["default~cyd.direction_h1.CYDFX"]
    assert bool(own.aliases("default~cyd.direction_h1.CYDFX")) == bool(ranking)
    assert not [n for n in Registry.from_settings(get_settings()).model_names() if n.endswith(".CYDFX")]
