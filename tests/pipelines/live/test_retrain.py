"""Retrain-request events become train_models params, one entry per scope (user) they name."""

from types import SimpleNamespace

from pipelines.live.retrain import retrain_event_extra, retrain_scopes

PARAMS = {"symbols": ["SYN1"], "families": ["direction"], "trials": 4, "holdout_fraction": 0.2,
          "reason": "schedule", "user": "ben"}
URI = "alphaops://retrain-request/"


def _request(model: str, spec: str, symbol: str) -> dict:
    return {"model": model, "symbol": symbol, "spec": spec, "triggers": ["drift"]}


def test_a_run_without_events_keeps_its_params_and_user():
    assert retrain_scopes(PARAMS, None) == [PARAMS]
    assert retrain_scopes({k: v for k, v in PARAMS.items() if k != "user"}, {}) == [{**PARAMS, "user": ""}]


def test_events_are_grouped_by_the_user_they_name_shared_scope_first():
    events = {URI: [
        SimpleNamespace(extra=retrain_event_extra([_request("default~ann.volatility_h5.SPX", "volatility_h5", "SPX")],
                                                  user="ann")),
        SimpleNamespace(extra=retrain_event_extra([_request("default.direction_h1.SYN2", "direction_h1", "SYN2")])),
        SimpleNamespace(extra=retrain_event_extra([_request("default~ann.direction_h5.SYN1", "direction_h5", "SYN1")],
                                                  user="ann")),
    ]}
    scopes = retrain_scopes(PARAMS, events)
    assert [(s["user"], s["symbols"], s["families"]) for s in scopes] == [
        ("", ["SYN2"], ["direction_h1"]), ("ann", ["SPX", "SYN1"], ["direction_h5", "volatility_h5"])]
    assert scopes[1]["reason"] == ("monitor: default~ann.volatility_h5.SPX (drift); "
                                   "monitor: default~ann.direction_h5.SYN1 (drift)")
    assert all(s["trials"] == 4 for s in scopes)


def test_events_on_other_assets_are_ignored():
    other = {"alphaops://something-else/": [SimpleNamespace(extra={"user": "ann", "symbols": ["X"]})]}
    assert retrain_scopes(PARAMS, other) == [PARAMS]
