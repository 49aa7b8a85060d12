from types import SimpleNamespace

from pipelines.steps import as_timestamp, effective_params

PARAMS = {"symbols": ["SPX", "SYN1"], "families": ["direction"], "trials": 8, "holdout_fraction": 0.2,
          "reason": "schedule"}


def test_scheduled_run_keeps_its_params():
    assert effective_params(PARAMS, None) == PARAMS
    assert effective_params(PARAMS, {"alphaops://retrain-request": []}) == PARAMS


def test_retrain_request_narrows_the_run_and_records_why():
    events = {"alphaops://retrain-request": [
        SimpleNamespace(extra={"symbol": "SYN1", "spec": "direction_h1", "reasons": ["drift_share 0.45 > 0.30"]}),
        SimpleNamespace(extra={"symbol": "SYN1", "spec": "direction_h5", "reasons": ["manual request"]}),
    ]}
    params = effective_params(PARAMS, events)
    assert params["symbols"] == ["SYN1"]
    assert params["families"] == ["direction_h1", "direction_h5"]
    assert params["reason"] == "retrain request: drift_share 0.45 > 0.30; manual request"
    assert params["trials"] == 8


def test_as_timestamp_is_utc():
    assert str(as_timestamp("2026-01-01T12:00:00").tz) == "UTC"
    assert as_timestamp("2026-01-01T12:00:00+02:00").hour == 10
