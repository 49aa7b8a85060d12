"""The REST service on a network: API keys, body and batch limits, server-chosen canary arms,
strict numbers, and error answers that match the OpenAPI document."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_bundles import FEATURES

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from serving import CanaryRouter, Predictor
from pipelines.app.rest import create_app
from serving.router import bucket

KEYS = {"alice": "k-alice-0123456789", "bob": "k-bob-0123456789", "carol": "k-carol-0123456789"}


@pytest.fixture(scope="module")
def clf(clf_bundle: Path) -> Predictor:
    return Predictor.load(clf_bundle)


@pytest.fixture(scope="module")
def secured(clf: Predictor) -> TestClient:
    return TestClient(create_app(clf, api_keys=KEYS, max_body_bytes=200_000, max_batch_rows=50))


def _row(rows, i: int = 0) -> list[float]:
    return rows[i].tolist()


def test_keys_are_required_except_for_health(secured: TestClient, rows) -> None:
    r = secured.post("/predict", json={"features": _row(rows)})
    assert r.status_code == 401 and r.json() == {
        "detail": "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"}
    assert r.headers["www-authenticate"] == "Bearer"
    bad = secured.post("/predict", json={"features": _row(rows)}, headers={"X-API-Key": "k-alice-012345678"})
    assert (bad.status_code, bad.json()["detail"]) == (401, "invalid API key")
    for headers in ({"Authorization": f"Bearer {KEYS['alice']}"}, {"X-API-Key": KEYS["bob"]}):
        ok = secured.post("/predict", json={"features": _row(rows)}, headers=headers)
        assert ok.status_code == 200, ok.text
    assert secured.get("/schema").status_code == 401
    assert secured.get("/schema", headers={"X-API-Key": KEYS["carol"]}).json()["features"] == FEATURES
    health = secured.get("/health")
    assert health.status_code == 200 and health.json()["auth"] == "api-keys"
    schemes = secured.get("/openapi.json").json()["components"]["securitySchemes"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schemes)


def test_a_40_mb_body_gets_413_before_it_is_read(secured: TestClient, clf: Predictor) -> None:
    huge = b'{"rows": [' + b",".join([b"[" + b",".join([b"0.1"] * 60) + b"]"] * 170_000) + b"]}"
    assert len(huge) > 40_000_000
    headers = {"X-API-Key": KEYS["alice"], "content-type": "application/json"}
    calls = clf.stats["calls"]
    r = secured.post("/predict", content=huge, headers=headers)
    assert r.status_code == 413
    assert r.json()["detail"] == (f"request body of {len(huge):,} bytes is over the limit of 200,000 bytes "
                                  "(ALPHAOPS_SERVE_MAX_BODY_BYTES)")

    def chunks():  # no Content-Length: refused once the limit is passed
        for i in range(0, len(huge), 65_536):
            yield huge[i:i + 65_536]

    r = secured.post("/predict", content=chunks(), headers=headers)
    assert r.status_code == 413 and "more than" in r.json()["detail"]
    assert clf.stats["calls"] == calls  # nothing was predicted


def test_batch_row_limit_is_413(secured: TestClient, rows) -> None:
    headers = {"X-API-Key": KEYS["alice"]}
    r = secured.post("/predict", json={"rows": rows[:51].tolist()}, headers=headers)
    assert r.status_code == 413
    assert r.json()["detail"] == "batch of 51 rows is over the limit of 50 (ALPHAOPS_SERVE_MAX_BATCH_ROWS)"
    assert secured.post("/predict", json={"rows": rows[:50].tolist()}, headers=headers).status_code == 200


def test_true_and_strings_are_not_numbers(secured: TestClient, rows) -> None:
    headers = {"X-API-Key": KEYS["alice"]}
    row = _row(rows)
    cases = [
        ({"features": [True, *row[1:]]}, "features[0] is true: a feature value must be a number or null"),
        ({"features": {**dict(zip(FEATURES, row)), "f03": False}}, "features.f03 is false"),
        ({"features": ["0.1", *row[1:]]}, 'features[0] is "0.1"'),
        ({"rows": [row, [*row[:5], True, *row[6:]]]}, "rows[1][5] is true"),
        ({"features": row, "fallback": "yes"}, "fallback: Input should be a valid boolean"),
        ({"features": row, "key": "acct-9"}, "key: Extra inputs are not permitted"),
    ]
    for body, message in cases:
        r = secured.post("/predict", json=body, headers=headers)
        assert r.status_code == 422, (body, r.text)
        assert message in r.json()["detail"], r.json()
        assert list(r.json()) == ["detail"]
    # null is a missing value: the fallback rule may answer it
    fb = secured.post("/predict", json={"features": {"f00": -3.0, "f01": None}, "fallback": True}, headers=headers)
    assert fb.status_code == 200 and fb.json()["fallback"] is True


@pytest.mark.parametrize(("content", "message"), [
    (b"{", "request body is not valid JSON"),
    (b"", "request body must be a JSON object"),
    (b"[1, 2]", "request body must be a JSON object"),
    (b'"text"', "request body must be a JSON object"),
])
def test_a_body_that_is_not_a_json_object_is_400(secured: TestClient, content: bytes, message: str) -> None:
    r = secured.post("/predict", content=content,
                     headers={"X-API-Key": KEYS["alice"], "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["detail"].startswith(message), r.text


def _arm(who: str, extra: str = "") -> str:
    return "challenger" if bucket(hashlib.sha256(f"{who}\0{extra}".encode()).hexdigest()) < 0.5 else "champion"


def test_the_server_picks_the_canary_arm_from_the_key(clf_bundle: Path, clf_bundle_v2: Path, rows) -> None:
    router = CanaryRouter(Predictor.load(clf_bundle), Predictor.load(clf_bundle_v2), share=0.5)
    many = {f"desk-{i}": f"key-{i}-abcdefgh" for i in range(12)}
    c = TestClient(create_app(router, api_keys=many))
    seen = {}
    for who, key in many.items():
        arms = {c.post("/predict", json={"features": _row(rows, i)}, headers={"X-API-Key": key}).json()["routed_to"]
                for i in range(5)}
        assert arms == {_arm(who)}, who  # sticky, and decided by the server from the key alone
        seen[who] = arms.pop()
    assert set(seen.values()) == {"champion", "challenger"}
    # a routing header counts only when the operator configured one
    c2 = TestClient(create_app(router, api_keys=many, routing_header="X-Routing-Key"))
    for strategy in ("s1", "s2", "s3", "s4"):
        got = c2.post("/predict", json={"features": _row(rows)},
                      headers={"X-API-Key": many["desk-0"], "X-Routing-Key": strategy}).json()["routed_to"]
        assert got == _arm("desk-0", strategy)
    ignored = c.post("/predict", json={"features": _row(rows)},
                     headers={"X-API-Key": many["desk-0"], "X-Routing-Key": "s1"}).json()["routed_to"]
    assert ignored == seen["desk-0"]


def test_openapi_describes_every_error_answer(secured: TestClient) -> None:
    doc = secured.get("/openapi.json").json()
    responses = doc["paths"]["/predict"]["post"]["responses"]
    assert {"200", "400", "401", "413", "422"} <= set(responses)
    for code in ("400", "401", "413", "422"):
        ref = responses[code]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/ErrorBody", code
    assert doc["components"]["schemas"]["ErrorBody"]["required"] == ["detail"]
    assert "401" in doc["paths"]["/schema"]["get"]["responses"]
    assert "401" not in doc["paths"]["/health"]["get"]["responses"]
    fields = doc["components"]["schemas"]["PredictRequest"]
    assert fields.get("additionalProperties") is False and "key" not in fields["properties"]


_json = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["f00", "f01", "x"]), inner, max_size=3),
    max_leaves=12,
)
_bodies = st.one_of(
    st.fixed_dictionaries({}, optional={"features": _json, "rows": _json, "fallback": _json, "key": _json}),
    _json,
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=60, max_size=60).map(lambda r: {"features": r}),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies)
def test_fuzzed_bodies_get_documented_answers(secured: TestClient, body) -> None:
    doc = secured.app.openapi()
    documented = set(doc["paths"]["/predict"]["post"]["responses"])
    r = secured.post("/predict", content=json.dumps(body).encode(),
                     headers={"X-API-Key": KEYS["alice"], "content-type": "application/json"})
    assert str(r.status_code) in documented, (body, r.status_code, r.text)
    if r.status_code != 200:
        payload = r.json()
        assert list(payload) == ["detail"] and isinstance(payload["detail"], str) and payload["detail"]
        assert "\n" not in payload["detail"]
