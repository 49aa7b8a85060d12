"""Hot reload under load, refusal of bad bundles, and the alias watcher."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from serving_bundles import FEATURES, reseal

from serving import AliasWatcher, BundleError, Predictor


def _wait_for(cond, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_reload_swaps_version(clf_bundle: Path, clf_bundle_v2: Path, rows) -> None:
    p = Predictor.load(clf_bundle)
    before = p.predict(rows[0])
    p.reload(clf_bundle_v2)
    after = p.predict(rows[0])
    assert (before.model_version, after.model_version, p.version) == ("1", "2", "2")
    assert not np.allclose(before.probabilities, after.probabilities)
    assert p.stats["reloads"] == 1


def test_many_threads_predict_while_reloading(clf_bundle: Path, clf_bundle_v2: Path, rows) -> None:
    x = rows[7]
    expected = {
        v: Predictor.load(b).predict(x).probabilities
        for v, b in (("1", clf_bundle), ("2", clf_bundle_v2))
    }
    assert not np.allclose(expected["1"], expected["2"])
    p = Predictor.load(clf_bundle)
    stop = threading.Event()
    failures: list[BaseException] = []
    seen: dict[str, int] = {"1": 0, "2": 0}
    lock = threading.Lock()

    def worker(i: int) -> None:
        local = {"1": 0, "2": 0}
        try:
            while not stop.is_set():
                res = p.predict(x) if i % 2 else p.predict(x.reshape(1, -1))
                probs = res.probabilities if not res.is_batch else res.probabilities[0]
                # the answer must come from the model its version names
                if res.model_version not in expected or not np.array_equal(
                    probs, expected[res.model_version]
                ):
                    raise AssertionError(f"inconsistent result {res}")
                local[res.model_version] += 1
        except BaseException as e:  # noqa: BLE001 - collect everything
            failures.append(e)
        with lock:
            for k, v in local.items():
                seen[k] += v

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for i in range(50):
        p.reload(clf_bundle_v2 if i % 2 == 0 else clf_bundle)
        time.sleep(0.002)
    stop.set()
    for t in threads:
        t.join(30)
    assert failures == []
    assert p.stats["errors"] == 0 and p.stats["reloads"] == 50
    assert seen["1"] > 0 and seen["2"] > 0
    assert p.stats["calls"] == seen["1"] + seen["2"]


def test_corrupt_bundle_is_refused_and_old_model_keeps_serving(
    clf_bundle: Path, bundle_copy, rows
) -> None:
    p = Predictor.load(clf_bundle)
    good = p.predict(rows[0])
    corrupt = bundle_copy(clf_bundle, "corrupt")
    (corrupt / "model.onnx").write_bytes(b"\x08\x01garbage")
    with pytest.raises(BundleError, match="model.onnx does not match schema.json"):
        p.reload(corrupt)
    with pytest.raises(BundleError, match="cannot be loaded"):
        p.reload(reseal(corrupt))
    truncated = bundle_copy(clf_bundle, "truncated")
    data = (clf_bundle / "model.onnx").read_bytes()
    (truncated / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError):
        p.reload(truncated)
    with pytest.raises(BundleError, match="not found"):
        p.reload(corrupt.parent / "missing")
    assert p.version == "1" and p.path == clf_bundle
    again = p.predict(rows[0])
    np.testing.assert_array_equal(again.probabilities, good.probabilities)
    assert p.stats["reload_errors"] == 4 and p.stats["reloads"] == 0


def test_schema_incompatible_bundle_is_refused_unless_allowed(
    clf_bundle, multi_bundle, bundle_copy, rows
) -> None:
    p = Predictor.load(clf_bundle)
    renamed = bundle_copy(
        clf_bundle, "renamed", edit=lambda s: s.update(features=FEATURES[:-1] + ["g59"])
    )
    with pytest.raises(BundleError, match=r"features added 'g59', removed 'f59'"):
        p.reload(renamed)
    with pytest.raises(BundleError, match="task 'classifier' -> 'multi'"):
        p.reload(multi_bundle)
    assert p.version == "1" and p.features == tuple(FEATURES)
    p.reload(renamed, allow_schema_change=True)
    assert p.features[-1] == "g59" and p.predict(rows[0]).label in (0, 1)


def test_alias_watcher_follows_resolver(clf_bundle, clf_bundle_v2, bundle_copy, rows) -> None:
    p = Predictor.load(clf_bundle)
    broken = bundle_copy(clf_bundle, "broken")
    (broken / "schema.json").write_text("not json")
    target: dict[str, object] = {"path": clf_bundle}

    def resolve():
        t = target["path"]
        if isinstance(t, Exception):
            raise t
        return t

    w = AliasWatcher(resolve, p, interval=0.01)
    try:
        assert w.running
        assert _wait_for(lambda: w.stats["checks"] >= 3)
        assert w.stats["reloads"] == 0 and p.version == "1"  # same path + version: no reload
        target["path"] = clf_bundle_v2
        assert _wait_for(lambda: p.version == "2")
        target["path"] = broken  # refused: logged and counted, v2 keeps serving
        assert _wait_for(lambda: w.stats["errors"] >= 2)
        target["path"] = RuntimeError("registry down")
        assert _wait_for(lambda: "registry down" in (w.stats["last_error"] or ""))
        target["path"] = None  # alias unset: keep serving
        assert p.predict(rows[0]).model_version == "2"
    finally:
        w.stop()
    assert not w.running
    assert w.stats["reloads"] == 1 and p.stats["reloads"] == 1


def test_alias_watcher_reloads_same_dir_with_new_version(
    clf_bundle, clf_bundle_v2, tmp_path
) -> None:
    live = tmp_path / "live"
    shutil.copytree(clf_bundle, live)
    p = Predictor.load(live)
    w = AliasWatcher(lambda: live, p, interval=3600, start=False)
    assert w.poll() is False
    shutil.rmtree(live)
    shutil.copytree(clf_bundle_v2, live)
    assert w.poll() is True and p.version == "2"
    assert w.stats == {"checks": 2, "reloads": 1, "errors": 0, "last_error": None}
