"""PredictionLog: bounded, non-blocking, counted drops, drain and background consumer."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from serving_bundles import FEATURES

from serving import CanaryRouter, InputError, PredictionLog, Predictor


def test_full_log_drops_and_counts() -> None:
    log = PredictionLog(maxsize=3)
    results = [log.put_nowait({"i": i}) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert log.dropped == 2 and len(log) == 3
    assert [r["i"] for r in log.drain(2)] == [0, 1]
    assert log.put_nowait({"i": 5}) is True
    assert [r["i"] for r in log.drain()] == [2, 5]
    assert log.stats == {"pending": 0, "accepted": 4, "dropped": 2, "consumer_errors": 0}


def test_concurrent_producers_never_exceed_bound() -> None:
    log = PredictionLog(maxsize=500)

    def produce() -> None:
        for i in range(1000):
            log.put_nowait({"i": i})

    threads = [threading.Thread(target=produce) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(log) == 500 and log.dropped == 3500


def test_predictor_records_calls(clf_bundle: Path, rows) -> None:
    log = PredictionLog(maxsize=10)
    p = Predictor.load(clf_bundle, log=log)
    x = rows[0].copy()
    res = p.predict(x)
    x[:] = 0  # the record holds a copy, not the caller's buffer
    p.predict(rows[:2])
    with pytest.raises(InputError):
        p.predict({"f00": float("nan")})
    one, batch, err = log.drain()
    assert (one["model"], one["version"], one["routed_to"], one["error"]) == (
        "default.direction.SPX.1d",
        "1",
        None,
        None,
    )
    assert list(one["features"]) == FEATURES
    assert one["features"]["f00"] == pytest.approx(float(rows[0, 0]))
    assert one["output"]["label"] == res.label and one["output"]["confidence"] == pytest.approx(
        res.confidence
    )
    assert one["latency_us"] > 0 and one["ts"] > 1.7e9
    assert len(batch["features"]) == 2 and len(batch["output"]["label"]) == 2
    assert err["output"] is None and "missing feature(s)" in err["error"]
    assert err["features"] == {"f00": None}  # raw input kept, JSON-safe


def test_fallback_and_routed_calls_are_logged(clf_bundle: Path, clf_bundle_v2: Path, rows) -> None:
    log = PredictionLog()
    champion = Predictor.load(clf_bundle, log=log, fallback=True)
    challenger = Predictor.load(clf_bundle_v2, log=log)
    router = CanaryRouter(champion, challenger, share=1.0)
    router.predict(rows[0], key="a")
    router.predict([float("nan")] * 60)
    routed, fb = log.drain()
    assert (routed["routed_to"], routed["version"]) == ("challenger", "2")
    assert routed["output"]["routed_to"] == "challenger"
    assert (fb["routed_to"], fb["output"]["fallback"]) == ("champion", True)
    assert "is NaN" in fb["error"]


def test_full_log_never_blocks_predict(clf_bundle: Path, rows) -> None:
    log = PredictionLog(maxsize=5)
    p = Predictor.load(clf_bundle, log=log)
    for i in range(20):
        p.predict(rows[i])
    assert len(log) == 5 and log.dropped == 15 and p.stats["calls"] == 20


def test_background_consumer_gets_everything_and_survives_errors() -> None:
    log = PredictionLog()
    got: list[dict] = []
    calls = {"n": 0}

    def consumer(records: list[dict]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("warehouse down")
        got.extend(records)

    log.put_nowait({"i": -1})  # lost with the failing first batch
    log.start(consumer, interval=0.01, batch=7)
    time.sleep(0.05)
    for i in range(30):
        log.put_nowait({"i": i})
    log.stop()  # flushes what is left
    assert [r["i"] for r in got] == list(range(30))
    assert log.stats["consumer_errors"] == 1 and len(log) == 0


def test_log_features_for_unreadable_input_are_safe(clf_bundle: Path) -> None:
    log = PredictionLog()
    p = Predictor.load(clf_bundle, log=log)
    with pytest.raises(InputError):
        p.predict(np.array(["a", "b"]))
    (rec,) = log.drain()
    assert rec["features"] == ["a", "b"] and rec["error"]
