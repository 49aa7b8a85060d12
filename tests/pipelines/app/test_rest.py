"""REST endpoint via FastAPI's TestClient."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from serving_bundles import FEATURES

with warnings.catch_warnings():  # starlette's notice about httpx vs httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from serving import CanaryRouter, Predictor
from pipelines.app.rest import create_app


@pytest.fixture(scope="module")
def client(clf_bundle: Path) -> TestClient:
    return TestClient(create_app(Predictor.load(clf_bundle)))


def test_predict_one_row_and_batch(client: TestClient, rows) -> None:
    r = client.post("/predict", json={"features": dict(zip(FEATURES, rows[0].tolist()))})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] in (0, 1) and body["class_name"] in ("down", "up")
    assert len(body["probabilities"]) == 2 and body["model_version"] == "1"
    same = client.post("/predict", json={"features": rows[0].tolist()}).json()
    assert same["probabilities"] == pytest.approx(body["probabilities"])
    r = client.post("/predict", json={"rows": rows[:3].tolist()})
    assert r.status_code == 200 and len(r.json()["label"]) == 3


def test_invalid_input_is_422_with_message(client: TestClient) -> None:
    r = client.post("/predict", json={"features": {"f00": 1.0}})
    assert r.status_code == 422 and "missing feature(s) 'f01'" in r.json()["detail"]
    nan_row = '{"features": [' + ", ".join(["NaN"] + ["0.1"] * 59) + "]}"
    r = client.post("/predict", content=nan_row, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "feature 'f00' is NaN" in r.json()["detail"]
    assert client.post("/predict", json={}).status_code == 422
    assert client.post("/predict", json={"rows": [1.0, 2.0]}).status_code == 422
    assert client.post("/predict", json={"features": [[0.1] * 60]}).status_code == 422


def test_fallback_flag(client: TestClient) -> None:
    # f00 is readable and < -2 -> the schema's first rule answers (label 1, confidence 0.5)
    r = client.post("/predict", json={"features": {"f00": -3.0}, "fallback": True})
    assert r.status_code == 200
    body = r.json()
    assert (body["label"], body["confidence"], body["fallback"], body["probabilities"]) == (
        1,
        0.5,
        True,
        None,
    )


def test_health_and_schema(client: TestClient) -> None:
    h = client.get("/health").json()
    assert (h["status"], h["model"], h["version"], h["task"]) == (
        "ok",
        "default.direction.SPX.1d",
        "1",
        "classifier",
    )
    assert h["stats"]["calls"] >= 1
    s = client.get("/schema").json()
    assert s["features"] == FEATURES and s["task"] == "classifier"
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_router_app(clf_bundle: Path, clf_bundle_v2: Path, rows) -> None:
    """Without keys the server draws the arm per request (share 1.0: always the challenger)."""
    router = CanaryRouter(Predictor.load(clf_bundle), Predictor.load(clf_bundle_v2), share=1.0)
    c = TestClient(create_app(router))
    body = c.post("/predict", json={"features": rows[0].tolist()}).json()
    assert (body["routed_to"], body["model_version"]) == ("challenger", "2")
    router.set_challenger(router.challenger, share=0.0)
    assert c.post("/predict", json={"features": rows[0].tolist()}).json()["routed_to"] == "champion"
    h = c.get("/health").json()
    assert h["champion"]["version"] == "1" and h["challenger"]["version"] == "2"
    assert h["routing"]["challenger"]["answered"] == 1 and h["auth"] == "none"
