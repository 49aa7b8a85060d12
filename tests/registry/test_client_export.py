"""Exporting a bundle never destroys what it did not create, and names what is wrong in one line."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from registry import CHAMPION, Registry, RegistryError
from registry.client import _exchange

NAME = "default.direction_h1.EXP"


def _real_bundle(directory: Path, seed: int) -> Path:
    from models.bundle import classifier_schema, write_bundle
    from models.families.direction import DirectionClassifier

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] + rng.normal(size=300) > 0).astype(int)
    model = DirectionClassifier(n_estimators=5 + seed, random_state=seed).fit(X, y)
    schema = classifier_schema(model={"name": "", "version": ""}, feature_set_version="t",
                               features=["a", "b", "c", "d"], class_names=["down", "up"])
    return write_bundle(directory, model.to_onnx(), schema)


def _log_and_register(registry: Registry, tmp_path: Path, bundle: Path) -> str:
    import mlflow

    with mlflow.start_run(experiment_id=registry._test_experiment) as run:
        mlflow.log_artifacts(str(bundle), "bundle")
    version = registry.register(NAME, run.info.run_id, tags={"family": "direction", "spec": "direction_h1",
                                                             "symbol": "EXP", "timeframe": "1m"})
    registry.tag(NAME, version, validation_status="validated")
    return version


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    import mlflow

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    reg = Registry(store, tenant="default")
    reg._test_experiment = mlflow.create_experiment("export", artifact_location=(tmp_path / "art").as_uri())
    return reg


@pytest.fixture()
def two_versions(registry: Registry, tmp_path: Path) -> tuple[Registry, str, str]:
    v1 = _log_and_register(registry, tmp_path, _real_bundle(tmp_path / "b1", 1))
    v2 = _log_and_register(registry, tmp_path, _real_bundle(tmp_path / "b2", 2))
    registry.set_challenger(NAME, v1, reason="first")
    registry.promote(NAME, reason="first")
    return registry, v1, v2


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name != name and name in p.name)


def test_export_refuses_a_folder_holding_other_files(two_versions, tmp_path: Path) -> None:
    registry, v1, _ = two_versions
    target = tmp_path / "notes"
    target.mkdir()
    (target / "notes.txt").write_text("my research notes")
    with pytest.raises(RegistryError, match=r"is not empty and is not a bundle \(it holds notes.txt\).*--force"):
        registry.load_bundle(NAME, CHAMPION, target)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert (target / "notes.txt").read_text() == "my research notes"
    assert _leftovers(tmp_path, "notes") == []
    registry.load_bundle(NAME, CHAMPION, target, force=True)  # asked for: replaced whole
    assert sorted(p.name for p in target.iterdir()) == ["model.onnx", "schema.json"]


def test_export_refuses_a_file_and_leaves_no_partial_folder(two_versions, tmp_path: Path) -> None:
    registry, _, _ = two_versions
    target = tmp_path / "a.csv"
    target.write_text("ts,close\n")
    for force in (False, True):
        with pytest.raises(RegistryError, match="a.csv is a file, not a directory"):
            registry.load_bundle(NAME, CHAMPION, target, force=force)
    assert target.read_text() == "ts,close\n"
    assert _leftovers(tmp_path, "a.csv") == []


def test_export_into_new_empty_and_existing_bundle_dirs(two_versions, tmp_path: Path) -> None:
    registry, v1, v2 = two_versions
    new = registry.load_bundle(NAME, v1, tmp_path / "deep" / "new")
    assert json.loads((new / "schema.json").read_text())["model"]["version"] == v1
    empty = tmp_path / "empty"
    empty.mkdir()
    registry.load_bundle(NAME, v2, empty)
    registry.load_bundle(NAME, v1, empty)  # an earlier bundle is replaced
    schema = json.loads((empty / "schema.json").read_text())
    assert (schema["model"]["name"], schema["model"]["version"]) == (NAME, v1)
    assert schema["integrity"]["sealed_by"] == "train"
    assert _leftovers(tmp_path, "empty") == [] and _leftovers(tmp_path / "deep", "new") == []


def test_re_export_swaps_in_one_step_so_readers_always_find_a_bundle(two_versions, tmp_path: Path) -> None:
    registry, v1, v2 = two_versions
    target = registry.load_bundle(NAME, v1, tmp_path / "live")
    probe_a, probe_b = tmp_path / "xa", tmp_path / "xb"
    probe_a.mkdir()
    probe_b.mkdir()
    if not _exchange(probe_a, probe_b):
        pytest.skip("this file system cannot swap two paths atomically (renameat2 RENAME_EXCHANGE)")
    missing: list[int] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            if not (target / "schema.json").is_file():
                missing.append(1)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(10):
            registry.load_bundle(NAME, v2 if i % 2 == 0 else v1, target)
    finally:
        stop.set()
        reader.join()
    assert missing == []
    assert json.loads((target / "schema.json").read_text())["model"]["version"] == v1
    assert _leftovers(tmp_path, "live") == []


def test_a_failed_export_leaves_the_target_untouched_and_nothing_behind(registry: Registry, tmp_path: Path) -> None:
    import mlflow

    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "model.onnx").write_bytes(b"onnx")
    version = _log_and_register(registry, tmp_path, incomplete)
    target = tmp_path / "out"
    with pytest.raises(RegistryError, match=f"v{version} has no complete bundle"):
        registry.load_bundle(NAME, version, target)
    assert not target.exists() and _leftovers(tmp_path, "out") == []
    # a registered bundle whose files were changed in the artifact store is refused too
    bundle = _real_bundle(tmp_path / "b3", 3)
    schema = json.loads((bundle / "schema.json").read_text())
    schema["features"] = schema["features"][::-1]
    (bundle / "schema.json").write_text(json.dumps(schema))
    tampered = _log_and_register(registry, tmp_path, bundle)
    with pytest.raises(RegistryError, match="'features' are in another order"):
        registry.load_bundle(NAME, tampered, target)
    assert not target.exists() and _leftovers(tmp_path, "out") == []
    mlflow.end_run()


def test_a_bundle_registered_before_sealing_is_sealed_at_export(registry: Registry, tmp_path: Path) -> None:
    import serving

    legacy = _real_bundle(tmp_path / "legacy", 4)
    schema = json.loads((legacy / "schema.json").read_text())
    del schema["integrity"]
    (legacy / "schema.json").write_text(json.dumps(schema))
    version = _log_and_register(registry, tmp_path, legacy)
    out = registry.load_bundle(NAME, version, tmp_path / "out")
    predictor = serving.Predictor.load(out)
    assert predictor.sealed_by == "export" and predictor.version == version


def test_unknown_versions_aliases_and_models_are_one_line_errors(two_versions, tmp_path: Path) -> None:
    registry, v1, v2 = two_versions
    with pytest.raises(RegistryError, match=rf"^{NAME} has no version 99 \(versions: {v1}, {v2}\)$"):
        registry.load_bundle(NAME, "99", tmp_path / "x")
    with pytest.raises(RegistryError, match=r"no version with alias 'nosuch' \(aliases: champion\)"):
        registry.load_bundle(NAME, "nosuch", tmp_path / "x")
    for verb in (registry.rollback, registry.promote):
        with pytest.raises(RegistryError, match=r"^no registered model 'default.nosuch.SYN1' \(`alphaops models`"):
            verb("default.nosuch.SYN1", reason="test")
    with pytest.raises(RegistryError, match="no registered model"):
        registry.load_bundle("default.nosuch.SYN1", CHAMPION, tmp_path / "x")
    assert not (tmp_path / "x").exists()
