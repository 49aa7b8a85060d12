"""Registry verbs on a real MLflow (SQLite) store: aliases, lifecycle tags, history, tenants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry import CHALLENGER, CHAMPION, Registry, RegistryError, model_name


@pytest.fixture()
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def logged_run(store: str, tmp_path: Path, tag: str) -> str:
    import mlflow

    mlflow.set_tracking_uri(store)
    name = f"exp-{tmp_path.name}"
    exp = mlflow.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp else mlflow.create_experiment(name, artifact_location=(tmp_path / "art").as_uri())
    bundle = tmp_path / f"bundle-{tag}"
    bundle.mkdir()
    (bundle / "model.onnx").write_bytes(b"onnx-" + tag.encode())
    (bundle / "schema.json").write_text(json.dumps({"tag": tag}))
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_artifacts(str(bundle), "bundle")
    return run.info.run_id


def registered(registry: Registry, store: str, tmp_path: Path, name: str, n: int) -> list[str]:
    versions = []
    for i in range(n):
        run_id = logged_run(store, tmp_path, f"{name}-{i}")
        version = registry.register(name, run_id, tags={"family": "direction", "spec": "direction_h1",
                                                        "symbol": "SYN1", "timeframe": "1m"})
        registry.tag(name, version, validation_status="validated")
        versions.append(version)
    return versions


def test_first_deploy_then_canary_promote_and_rollback(store, tmp_path):
    registry = Registry(store, tenant="default")
    name = model_name("default", "direction_h1", "SYN1")
    v1, v2, v3 = registered(registry, store, tmp_path, name, 3)

    registry.set_challenger(name, v1, reason="first deploy")
    assert registry.promote(name, reason="first deploy") == v1
    assert registry.alias_version(name, CHAMPION) == v1
    assert registry.alias_version(name, CHALLENGER) is None

    registry.set_challenger(name, v2, reason="beats champion")
    assert registry.client.get_model_version(name, v2).tags["lifecycle"] == "challenger"
    assert registry.rollback(name, reason="canary lost") == v1
    assert registry.alias_version(name, CHALLENGER) is None
    assert registry.client.get_model_version(name, v2).tags["lifecycle"] == "archived"

    registry.set_challenger(name, v3, reason="beats champion")
    registry.promote(name, reason="canary won", run_id="run-42")
    assert registry.alias_version(name, CHAMPION) == v3
    assert registry.client.get_model_version(name, v1).tags["lifecycle"] == "archived"

    # With no challenger, rollback restores the previous champion.
    assert registry.rollback(name, reason="live accuracy fell") == v1
    assert registry.alias_version(name, CHAMPION) == v1

    history = registry.history(name)
    assert [(e["alias"], e["action"], e["version"]) for e in history][:3] == [
        (CHALLENGER, "set", v1), (CHAMPION, "set", v1), (CHALLENGER, "delete", v1)]
    promoted = [e for e in history if e["alias"] == CHAMPION and e["version"] == v3]
    assert promoted[0]["reason"] == "canary won" and promoted[0]["run_id"] == "run-42" and promoted[0]["at"]


def test_rejected_versions_never_deploy(store, tmp_path):
    registry = Registry(store, tenant="default")
    name = model_name("default", "direction_h1", "SYN2")
    (version,) = registered(registry, store, tmp_path, name, 1)
    registry.tag(name, version, validation_status="rejected")
    with pytest.raises(RegistryError, match="rejected"):
        registry.set_challenger(name, version, reason="try")
    assert registry.alias_version(name, CHALLENGER) is None


def test_legacy_stage_transition_maps_to_champion(store, tmp_path):
    registry = Registry(store, tenant="default")
    name = model_name("default", "direction_h1", "SYN3")
    v1, v2 = registered(registry, store, tmp_path, name, 2)
    registry.set_challenger(name, v1, reason="first")
    registry.promote(name, reason="first")
    with pytest.warns(FutureWarning):
        registry.client.transition_model_version_stage(name, v2, "Production")
    assert registry.sync_legacy_stages(name) == v2
    assert registry.alias_version(name, CHAMPION) == v2


def test_tenants_do_not_see_each_other(store, tmp_path):
    alpha, beta = Registry(store, tenant="alpha"), Registry(store, tenant="beta")
    registered(alpha, store, tmp_path, model_name("alpha", "direction_h1", "SYN1"), 1)
    registered(beta, store, tmp_path, model_name("beta", "direction_h1", "SYN1"), 1)
    assert alpha.model_names() == ["alpha.direction_h1.SYN1"]
    assert beta.model_names() == ["beta.direction_h1.SYN1"]
    with pytest.raises(RegistryError, match="tenant"):
        alpha.promote("beta.direction_h1.SYN1", reason="cross-tenant")
    with pytest.raises(RegistryError, match="tenant"):
        alpha.load_bundle("beta.direction_h1.SYN1", "1", tmp_path / "x")


def test_load_bundle_writes_both_files(store, tmp_path):
    registry = Registry(store, tenant="default")
    name = model_name("default", "direction_h5", "SYN1")
    (version,) = registered(registry, store, tmp_path, name, 1)
    registry.set_challenger(name, version, reason="first")
    registry.promote(name, reason="first")
    path = registry.load_bundle(name, CHAMPION, tmp_path / "out" / "bundle")
    assert (path / "model.onnx").read_bytes().startswith(b"onnx-")
    assert json.loads((path / "schema.json").read_text())["tag"].endswith("-0")
    with pytest.raises(RegistryError, match="no version with alias"):
        registry.load_bundle(name, CHALLENGER, tmp_path / "none")
