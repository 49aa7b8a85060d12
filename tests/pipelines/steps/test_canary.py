"""Canary decisions from the prediction log: promote a better challenger, roll back a worse one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.steps.canary import evaluate_canaries
from pipelines.config import get_settings
from pipelines.live.metrics import decide_canary
from registry import CHALLENGER, CHAMPION, Registry
from warehouse import open_warehouse


def test_decide_canary_rules():
    good = {"n_outcomes": 100, "hit_rate": 0.56, "error_rate": 0.0, "latency_p50_us": 30.0}
    worse = {**good, "hit_rate": 0.50}
    assert decide_canary(worse, good)[0] == "promote"
    assert decide_canary(good, worse)[0] == "rollback"
    assert decide_canary(good, {**good, "n_outcomes": 5})[0] == "wait"
    assert decide_canary(good, {**good, "error_rate": 0.2})[0] == "rollback"
    assert decide_canary(good, {**good, "latency_p50_us": 100.0})[0] == "rollback"


def _register(registry: Registry, name: str, tmp_path: Path, n: int) -> list[str]:
    import mlflow

    from pipelines.tracking import use_experiment

    settings = get_settings()
    exp = use_experiment(settings, "default/canary-test")
    versions = []
    for i in range(n):
        bundle = tmp_path / f"b{i}"
        bundle.mkdir()
        (bundle / "model.onnx").write_bytes(b"x")
        (bundle / "schema.json").write_text(json.dumps({"model": {}}))
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.log_artifacts(str(bundle), "bundle")
        v = registry.register(name, run.info.run_id, tags={"family": "direction", "spec": "direction_h1",
                                                           "symbol": name.split(".")[-1], "timeframe": "1m"})
        registry.tag(name, v, validation_status="validated")
        versions.append(v)
    return versions


def _log_predictions(name: str, version: str, hit_rate: float, start: pd.Timestamp, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    outcome = rng.integers(0, 2, n).astype(float)
    hit = rng.random(n) < hit_rate
    output = np.where(hit == (outcome == 1), 0.7, 0.3)  # P(up); confidence = P(predicted class)
    frame = pd.DataFrame({
        "tenant": "default", "model": name, "model_version": version, "symbol": name.split(".")[-1],
        "ts": start + pd.to_timedelta(np.arange(n), unit="min"), "routed_to": "x",
        "features": [np.zeros(3)] * n, "output": output, "confidence": np.maximum(output, 1 - output),
        "latency_us": 25.0, "error": "", "fallback": np.uint8(0), "outcome": outcome, "version": np.uint64(1)})
    with open_warehouse(get_settings()) as warehouse:
        warehouse.insert("ml_predictions", frame)


@pytest.mark.parametrize("symbol, challenger_hit, expected", [("CANUP", 0.62, "promote"),
                                                               ("CANDOWN", 0.40, "rollback")])
def test_canary_window_end_promotes_or_rolls_back(symbol, challenger_hit, expected, tmp_path):
    settings = get_settings()
    registry = Registry.from_settings(settings)
    name = f"default.direction_h1.{symbol}"
    v1, v2 = _register(registry, name, tmp_path, 2)
    registry.set_challenger(name, v1, reason="first deploy")
    registry.promote(name, reason="first deploy")
    registry.set_challenger(name, v2, reason="beats champion")
    started = pd.Timestamp.now(tz="UTC").floor("s")
    _log_predictions(name, v1, 0.52, started, 400, seed=1)
    _log_predictions(name, v2, challenger_hit, started, 400, seed=2)

    waiting = [d for d in evaluate_canaries(settings, as_of=started + pd.Timedelta(hours=1), window_hours=48)
               if d["model_name"] == name]
    assert waiting[0]["decision"] == "wait"
    assert registry.alias_version(name, CHALLENGER) == v2

    decided = [d for d in evaluate_canaries(settings, as_of=started + pd.Timedelta(hours=49), window_hours=48,
                                            run_id="canary-run") if d["model_name"] == name]
    assert decided[0]["decision"] == expected, decided
    assert registry.alias_version(name, CHALLENGER) is None
    assert registry.alias_version(name, CHAMPION) == (v2 if expected == "promote" else v1)
    decided_events = [e for e in registry.history(name) if e["run_id"] == "canary-run"]
    assert decided_events and all(e["reason"].startswith("canary:") or e["reason"] == "promoted to champion"
                                  for e in decided_events)
