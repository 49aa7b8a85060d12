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

    monkeypatch.setattr(pipelines.steps.build, "build_labels", lambda *a, **k: {})
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
