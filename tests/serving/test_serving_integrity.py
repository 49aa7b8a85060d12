"""The seal binds schema.json to model.onnx: tampered bundles are refused, naming the mismatch."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import pytest
from serving_bundles import FEATURES, graph_of, reseal

from serving import (
    AliasWatcher,
    BundleError,
    CanaryRouter,
    CanaryWatcher,
    Predictor,
    UnsealedBundleError,
    verify_bundle,
)
from serving.integrity import seal


def _schema(bundle: Path) -> dict:
    return json.loads((bundle / "schema.json").read_text())


def _write_schema(bundle: Path, schema: dict) -> None:
    (bundle / "schema.json").write_text(json.dumps(schema))


def test_a_sealed_bundle_loads_and_says_who_sealed_it(clf_bundle: Path, rows) -> None:
    p = Predictor.load(clf_bundle)
    block = _schema(clf_bundle)["integrity"]
    assert p.sealed_by == "train" and block["n_features"] == len(FEATURES)
    assert block["graph"] == {"input": {"name": "input", "shape": [None, 60]},
                              "outputs": ["label", "probabilities"]}
    assert verify_bundle(clf_bundle)["model_sha256"] == block["model_sha256"]
    assert p.predict(rows[0]).label in (0, 1)


def test_reversed_feature_order_is_refused(clf_bundle: Path, bundle_copy, rows) -> None:
    # The attack: the same row flips from up to down once the schema's order is
    # reversed. The seal's digest of the features no longer matches.
    reversed_ = bundle_copy(clf_bundle, "reversed", lambda s: s.update(features=FEATURES[::-1]),
                            reseal=False)
    with pytest.raises(BundleError, match="'features' are in another order than the model was trained on"):
        Predictor.load(reversed_)
    renamed = bundle_copy(clf_bundle, "renamed", lambda s: s.update(features=FEATURES[:-1] + ["g59"]),
                          reseal=False)
    with pytest.raises(BundleError, match="'features' names differ"):
        Predictor.load(renamed)


def test_another_models_onnx_is_refused(clf_bundle: Path, clf_bundle_v2: Path, reg_bundle: Path,
                                        tmp_path: Path) -> None:
    for i, foreign in enumerate((clf_bundle_v2, reg_bundle)):
        swapped = tmp_path / f"swapped{i}"
        shutil.copytree(clf_bundle, swapped)
        shutil.copy(foreign / "model.onnx", swapped / "model.onnx")
        with pytest.raises(BundleError, match="model.onnx does not match schema.json: its sha256 is"):
            Predictor.load(swapped)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.update(feature_set_version="fs-other"), "'feature_set_version' differs from the sealed value"),
    (lambda s: s.update(class_names=["up", "down"]), "'class_names' differs from the sealed value"),
    (lambda s: s["thresholds"].update(decision=0.01), "'thresholds' differs"),
    (lambda s: s["outputs"].reverse(), "'outputs' differs"),
    (lambda s: s.pop("fallback"), "'fallback' was removed"),
    (lambda s: s["model"].update(run_id="another"), "'model' differs"),
])
def test_edited_schema_is_refused_naming_the_field(clf_bundle: Path, bundle_copy, edit, message) -> None:
    with pytest.raises(BundleError, match=message):
        Predictor.load(bundle_copy(clf_bundle, "edited", edit, reseal=False))


def test_model_name_and_version_may_be_set_after_sealing(clf_bundle: Path, bundle_copy) -> None:
    """The registry writes them when a version is exported; they are not part of the seal."""
    named = bundle_copy(clf_bundle, "named", lambda s: s["model"].update(name="default.x.Y", version="9"),
                        reseal=False)
    p = Predictor.load(named)
    assert (p.name, p.version) == ("default.x.Y", "9")


def test_edited_digest_is_caught_by_the_schema_digest(clf_bundle: Path, tmp_path: Path) -> None:
    """Editing the features and their digest in the block still breaks schema_sha256."""
    forged = tmp_path / "forged"
    shutil.copytree(clf_bundle, forged)
    schema = _schema(forged)
    schema["features"] = FEATURES[::-1]
    honest = seal(schema, (forged / "model.onnx").read_bytes())["integrity"]
    schema["integrity"]["fields"]["features"] = honest["fields"]["features"]
    schema["integrity"]["features_sorted_sha256"] = honest["features_sorted_sha256"]
    _write_schema(forged, schema)
    with pytest.raises(BundleError, match="integrity block was edited"):
        Predictor.load(forged)


def test_a_seal_whose_graph_disagrees_with_the_model_is_refused(clf_bundle: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_graph"
    shutil.copytree(clf_bundle, wrong)
    doc = _schema(wrong)
    graph = graph_of((wrong / "model.onnx").read_bytes())
    graph["input"]["shape"] = [None, 59]
    _write_schema(wrong, seal(doc, (wrong / "model.onnx").read_bytes(), graph=graph))
    with pytest.raises(BundleError, match=r"graph does not match its seal: input 'input' \[N, 60\], sealed 'input' \[N, 59\]"):
        Predictor.load(wrong)


def test_unsealed_bundles_are_refused_unless_allowed(clf_bundle: Path, tmp_path: Path, caplog) -> None:
    legacy = tmp_path / "legacy"
    shutil.copytree(clf_bundle, legacy)
    doc = _schema(legacy)
    del doc["integrity"]
    _write_schema(legacy, doc)
    with pytest.raises(UnsealedBundleError, match="not sealed.*re-export it with `alphaops export"):
        Predictor.load(legacy)
    with caplog.at_level(logging.WARNING, logger="serving.model"):
        p = Predictor.load(legacy, allow_unsealed=True)
    assert p.sealed_by is None and "unsealed bundle" in caplog.text
    # allow_unsealed never excuses a seal that does not match
    tampered = tmp_path / "tampered"
    shutil.copytree(clf_bundle, tampered)
    shutil.copy(tmp_path / "legacy" / "model.onnx", tampered / "model.onnx.orig")
    (tampered / "model.onnx").write_bytes(b"\x08" + (tampered / "model.onnx.orig").read_bytes())
    with pytest.raises(BundleError, match="model.onnx does not match"):
        Predictor.load(tampered, allow_unsealed=True)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.update(features=FEATURES[::-1]), "features reordered"),
    (lambda s: s.update(feature_set_version="fs-test-2"), "feature_set_version 'fs-test-1' -> 'fs-test-2'"),
    (lambda s: s.update(class_names=["up", "down"]), "class_names"),
])
def test_reload_refuses_a_sealed_bundle_with_another_contract(clf_bundle: Path, bundle_copy, edit,
                                                              message, rows) -> None:
    p = Predictor.load(clf_bundle)
    other = bundle_copy(clf_bundle, "other", lambda s: (edit(s), s["model"].update(version="2")))
    with pytest.raises(BundleError, match=message):
        p.reload(other)
    assert p.version == "1" and p.predict(rows[0]).model_version == "1"
    p.reload(other, allow_schema_change=True)
    assert p.version == "2"


def test_alias_watcher_refuses_a_tampered_bundle_once_and_keeps_serving(
        clf_bundle: Path, clf_bundle_v2: Path, tmp_path: Path, caplog, rows) -> None:
    tampered = tmp_path / "v2"
    shutil.copytree(clf_bundle_v2, tampered)
    schema = _schema(tampered)
    schema["features"] = FEATURES[::-1]
    _write_schema(tampered, schema)
    p = Predictor.load(clf_bundle)
    w = AliasWatcher(lambda: tampered, p, interval=3600, start=False)
    with caplog.at_level(logging.WARNING):
        assert w.poll() is False
        assert w.poll() is False  # the same refused files: not loaded again, still counted
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1
    assert "still serving default.direction.SPX.1d@1" in refusals[0].getMessage()
    assert "another order" in refusals[0].getMessage()
    assert w.stats["errors"] == 2 and p.stats["reload_errors"] == 1
    assert p.version == "1" and p.predict(rows[0]).model_version == "1"
    reseal(tampered)  # fixed (here: sealed as it is) -> tried again, and now refused for its contract
    assert w.poll() is False and "features reordered" in w.stats["last_error"]


def _wait(cond, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_canary_watcher_follows_both_aliases(clf_bundle: Path, clf_bundle_v2: Path, bundle_copy,
                                             caplog, rows) -> None:
    aliases: dict[str, Path | None] = {"champion": clf_bundle, "challenger": None}
    router = CanaryRouter(Predictor.load(clf_bundle), None, share=1.0)
    loaded: list[Path] = []

    def load(path: Path) -> Predictor:
        loaded.append(path)
        return Predictor.load(path)

    w = CanaryWatcher(router, lambda: aliases["champion"], lambda: aliases["challenger"],
                      interval=3600, load=load, start=False)
    assert w.poll() is False and router.challenger is None
    aliases["challenger"] = clf_bundle_v2  # set_challenger
    assert w.poll() is True and router.challenger.version == "2"
    assert router.predict(rows[0], key="k").routed_to == "challenger"
    assert w.poll() is False and loaded == [clf_bundle_v2]
    aliases.update(champion=clf_bundle_v2, challenger=None)  # promote
    assert w.poll() is True
    assert router.champion.version == "2" and router.challenger is None
    # a challenger with another contract is refused with one log line; none is served
    other = bundle_copy(clf_bundle, "fs2", lambda s: (s.update(feature_set_version="fs-test-2"),
                                                      s["model"].update(version="3")))
    aliases["challenger"] = other
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="serving.watcher"):
        assert w.poll() is False
        assert w.poll() is False
    lines = [r.getMessage() for r in caplog.records if r.name == "serving.watcher"]
    assert len(lines) == 1 and "challenger bundle" in lines[0] and "feature_set_version" in lines[0]
    assert router.challenger is None and w.stats["errors"] == 2
    aliases.update(champion=clf_bundle, challenger=None)  # rollback to v1, seen by the thread
    w.interval = 0.01
    with w:
        assert _wait(lambda: router.champion.version == "1")
        assert router.predict(rows[0], key="k").model_version == "1"
    assert not w.running
