"""Canary routing: share, stickiness, per-arm counts, challenger failover."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serving import CanaryRouter, InputError, Predictor
from serving.router import bucket


@pytest.fixture(scope="module")
def arms(clf_bundle: Path, clf_bundle_v2: Path) -> tuple[Predictor, Predictor]:
    return Predictor.load(clf_bundle), Predictor.load(clf_bundle_v2)


def test_bucket_is_stable_and_uniform() -> None:
    assert bucket("acct-1") == bucket("acct-1")
    assert 0.0 <= bucket("") < 1.0
    b = np.array([bucket(f"key-{i}") for i in range(10_000)])
    hist, _ = np.histogram(b, bins=10, range=(0, 1))
    assert hist.min() > 850 and hist.max() < 1150


def test_share_within_tolerance_and_sticky(arms) -> None:
    champion, challenger = arms
    router = CanaryRouter(champion, challenger, share=0.1)
    routes = {f"strategy-{i}": router.route(f"strategy-{i}") for i in range(10_000)}
    share = sum(r == "challenger" for r in routes.values()) / len(routes)
    assert 0.08 <= share <= 0.12
    # sticky: a fresh router (as after a process restart) routes every key the same way
    again = CanaryRouter(champion, challenger, share=0.1)
    assert all(again.route(k) == r for k, r in routes.items())
    # growing the share only moves champion keys to the challenger, never back
    wider = CanaryRouter(champion, challenger, share=0.3)
    assert all(wider.route(k) == "challenger" for k, r in routes.items() if r == "challenger")


def test_predict_reports_arm_and_version_and_counts(arms, rows) -> None:
    champion, challenger = arms
    router = CanaryRouter(champion, challenger, share=0.5)
    keys = [f"k{i}" for i in range(200)]
    results = [router.predict(rows[i % 50], key=k) for i, k in enumerate(keys)]
    for k, res in zip(keys, results):
        assert res.routed_to == router.route(k)
        assert res.model_version == {"champion": "1", "challenger": "2"}[res.routed_to]
    n_ch = sum(r.routed_to == "challenger" for r in results)
    assert 0 < n_ch < 200
    s = router.stats
    assert s["challenger"]["answered"] == n_ch and s["champion"]["answered"] == 200 - n_ch
    assert (s["champion"]["version"], s["challenger"]["version"], s["share"]) == ("1", "2", 0.5)
    assert router.predict(rows[0]).routed_to == "champion"  # no key -> champion
    # same key, same arm, every time
    assert {router.predict(rows[1], key="k7").routed_to for _ in range(5)} == {router.route("k7")}


def test_failing_challenger_falls_back_to_champion(clf_bundle, multi_bundle, rows) -> None:
    champion = Predictor.load(clf_bundle)
    wrong = Predictor.load(multi_bundle)  # expects 4 other features: always fails here
    router = CanaryRouter(champion, wrong, share=1.0)
    res = router.predict(rows[0], key="any")
    assert res.routed_to == "champion" and res.model_version == "1"
    assert router.stats["challenger"]["errors"] == 1 and router.stats["challenger_failovers"] == 1
    with pytest.raises(InputError):  # invalid for the champion too -> raised
        router.predict([1.0, 2.0], key="any")
    assert router.stats["champion"]["errors"] == 1


def test_set_challenger_promote_rollback(arms, rows) -> None:
    champion, challenger = arms
    router = CanaryRouter(champion, None, share=0.5)
    assert all(router.route(f"k{i}") == "champion" for i in range(100))
    router.set_challenger(challenger, share=1.0)
    assert router.predict(rows[0], key="x").model_version == "2"
    router.promote()
    assert router.champion is challenger and router.challenger is None
    assert router.predict(rows[0], key="x").routed_to == "champion"
    router.set_challenger(champion)
    router.rollback()
    assert router.challenger is None
    with pytest.raises(ValueError):
        router.set_challenger(champion, share=1.5)
