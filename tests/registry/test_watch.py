"""A running predictor follows the champion alias: promotion by CLI verb, MLflow UI or legacy stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from registry import CHAMPION, Registry
from registry.watch import alias_resolver


def _bundle(directory: Path, seed: int) -> Path:
    from models.bundle import classifier_schema, write_bundle
    from models.families.direction import DirectionClassifier

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(500, 4))
    y = (X[:, 0] + rng.normal(size=500) > 0).astype(int)
    model = DirectionClassifier(n_estimators=10 + seed, random_state=seed).fit(X, y)
    schema = classifier_schema(model={"name": "", "version": ""}, feature_set_version="t",
                               features=["a", "b", "c", "d"], class_names=["down", "up"])
    return write_bundle(directory, model.to_onnx(), schema)


@pytest.fixture()
def registry_with_two_versions(tmp_path):
    import mlflow

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    exp = mlflow.create_experiment("watch", artifact_location=(tmp_path / "art").as_uri())
    registry = Registry(store, tenant="default")
    name = "default.direction_h1.WATCH"
    versions = []
    for seed in (1, 2):
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.log_artifacts(str(_bundle(tmp_path / f"b{seed}", seed)), "bundle")
        v = registry.register(name, run.info.run_id, tags={"family": "direction", "spec": "direction_h1",
                                                           "symbol": "WATCH", "timeframe": "1m"})
        registry.tag(name, v, validation_status="validated")
        versions.append(v)
    registry.set_challenger(name, versions[0], reason="first")
    registry.promote(name, reason="first")
    return registry, name, versions


def test_predictor_follows_alias_moves_without_restart(registry_with_two_versions, tmp_path):
    import serving

    registry, name, (v1, v2) = registry_with_two_versions
    resolve = alias_resolver(registry, name, CHAMPION, tmp_path / "cache")
    predictor = serving.Predictor.load(resolve())
    watcher = serving.AliasWatcher(resolve, predictor, interval=3600, start=False)
    assert predictor.version == v1
    assert watcher.poll() is False  # nothing moved

    # What the MLflow UI does when someone moves the alias on a version page:
    registry.client.set_registered_model_alias(name, CHAMPION, v2)
    assert watcher.poll() is True
    assert predictor.version == v2
    assert json.loads((predictor.path / "schema.json").read_text())["model"]["name"] == name
    assert predictor.predict([0.1, 0.2, 0.3, 0.4]).model_version == v2

    # A legacy stage transition to Production maps to champion.
    with pytest.warns(FutureWarning):
        registry.client.transition_model_version_stage(name, v1, "Production")
    assert watcher.poll() is True
    assert predictor.version == v1
    assert registry.alias_version(name, CHAMPION) == v1


def test_canary_router_serves_the_champion_and_a_sticky_share_to_the_challenger(registry_with_two_versions, tmp_path):
    from registry import CHALLENGER
    from registry.watch import canary_router

    registry, name, (v1, v2) = registry_with_two_versions
    registry.set_challenger(name, v2, reason="beats champion")
    router = canary_router(registry, name, tmp_path / "cache", share=0.25)
    answered = [router.predict([0.1, 0.2, 0.3, 0.4], key=f"order-{i}") for i in range(400)]
    versions = [a.model_version for a in answered]
    assert set(versions) == {v1, v2}
    assert 0.15 < versions.count(v2) / len(versions) < 0.35
    again = [router.predict([0.1, 0.2, 0.3, 0.4], key=f"order-{i}").model_version for i in range(400)]
    assert again == versions, "routing is sticky per key"
    registry.rollback(name, reason="test")
    assert registry.alias_version(name, CHALLENGER) is None
    alone = canary_router(registry, name, tmp_path / "cache", share=0.25)
    assert {alone.predict([0.1, 0.2, 0.3, 0.4], key=f"k{i}").model_version for i in range(50)} == {v1}


def test_a_tampered_serving_cache_is_refused_after_a_restart(registry_with_two_versions, tmp_path, caplog):
    import logging

    import serving

    registry, name, (v1, v2) = registry_with_two_versions
    cache = tmp_path / "cache"
    first = alias_resolver(registry, name, CHAMPION, cache)()
    genuine = serving.Predictor.load(first).predict([0.1, 0.2, 0.3, 0.4]).probabilities
    schema = json.loads((first / "schema.json").read_text())
    schema["features"] = schema["features"][::-1]  # someone edits the cached copy on disk
    (first / "schema.json").write_text(json.dumps(schema))
    with pytest.raises(serving.BundleError, match="another order"):
        serving.Predictor.load(first)

    # "restart": a new resolver on the same cache refuses the copy and fetches it again
    with caplog.at_level(logging.WARNING, logger="registry.watch"):
        again = alias_resolver(registry, name, CHAMPION, cache)()
    assert again == first
    assert "serving cache copy of default.direction_h1.WATCH v1 refused" in caplog.text
    restored = serving.Predictor.load(again)
    assert restored.features == ("a", "b", "c", "d")
    np.testing.assert_array_equal(restored.predict([0.1, 0.2, 0.3, 0.4]).probabilities, genuine)

    # a running resolver notices a change of the cached files too (model.onnx replaced)
    resolve = alias_resolver(registry, name, CHAMPION, cache)
    resolve()
    (first / "model.onnx").write_bytes(b"\x08\x01" + (first / "model.onnx").read_bytes())
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="registry.watch"):
        assert resolve() == first
    assert "model.onnx does not match schema.json" in caplog.text
    serving.verify_bundle(first)


def test_canary_watcher_sees_promote_and_rollback(registry_with_two_versions, tmp_path):
    from registry import CHALLENGER
    from registry.watch import canary_watcher

    registry, name, (v1, v2) = registry_with_two_versions
    router, watcher = canary_watcher(registry, name, tmp_path / "cache", share=1.0, interval=3600)
    watcher.stop()
    assert router.champion.version == v1 and router.challenger is None
    registry.set_challenger(name, v2, reason="beats champion")
    assert watcher.poll() is True and router.challenger.version == v2
    assert router.predict([0.1, 0.2, 0.3, 0.4], key="k").model_version == v2
    registry.promote(name, reason="canary won")
    assert watcher.poll() is True
    assert (router.champion.version, router.challenger) == (v2, None)
    registry.rollback(name, reason="live accuracy fell")
    assert registry.alias_version(name, CHALLENGER) is None
    assert watcher.poll() is True and router.champion.version == v1
    assert watcher.stats["errors"] == 0
