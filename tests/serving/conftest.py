"""Fixtures for the serving tests: bundles built once per session in a temp dir.

- ``clf_bundle``: LightGBM classifier, 300 trees, 60 features (the benchmark model), v1,
  with a rule-based fallback in its schema.
- ``clf_bundle_v2``: same features, another LightGBM model (60 trees), v2.
- ``reg_bundle``: LightGBM regressor (8 features).
- ``anomaly_bundle``: scikit-learn IsolationForest via skl2onnx (8 features).
- ``multi_bundle``: a hand-built ONNX graph with two named outputs (4 features).
- ``clf``: a predictor of ``clf_bundle`` (one per test module).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

# `tests/serving/` has no __init__.py; when pytest puts `tests/` on sys.path ahead of the
# repository root, `import serving` can resolve to this test folder as a namespace package.
# Make sure the real package (and this folder's helper module) are importable.
_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parents[1]
for _p in (str(_ROOT), str(_HERE)):
    if _p not in sys.path:
        sys.path.append(_p)
if getattr(sys.modules.get("serving"), "__file__", None) is None:
    for _name in [m for m in sys.modules if m == "serving" or m.startswith("serving.")]:
        del sys.modules[_name]

from serving_bundles import (  # noqa: E402
    N_FEATURES,
    SMALL_FEATURES,
    clf_schema,
    lgbm_onnx,
    multi_onnx,
    multi_schema,
    reseal as reseal_bundle,
    schema_for,
    train_clf,
    write_bundle,
)


@pytest.fixture(scope="session")
def bundles_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bundles")


@pytest.fixture(scope="session")
def clf_bundle(bundles_root: Path) -> Path:
    return write_bundle(
        bundles_root / "clf_v1", lgbm_onnx(train_clf(0, 300), N_FEATURES), clf_schema("1")
    )


@pytest.fixture(scope="session")
def clf_bundle_v2(bundles_root: Path) -> Path:
    return write_bundle(
        bundles_root / "clf_v2", lgbm_onnx(train_clf(1, 60), N_FEATURES), clf_schema("2")
    )


@pytest.fixture(scope="session")
def reg_bundle(bundles_root: Path) -> Path:
    import lightgbm as lgb

    rng = np.random.default_rng(2)
    X = rng.normal(size=(500, 8)).astype(np.float32)
    y = X[:, 0] * 0.01 + rng.normal(scale=0.001, size=500)
    model = lgb.LGBMRegressor(n_estimators=20, verbose=-1, n_jobs=1).fit(X, y)
    schema = schema_for(
        "default.return.SPX.1d",
        "7",
        SMALL_FEATURES,
        "regressor",
        [{"name": "variable", "kind": "value", "meaning": "expected_return"}],
        fallback={"kind": "rule", "rules": [], "default": {"value": 0.0}},
    )
    return write_bundle(bundles_root / "reg", lgbm_onnx(model, 8), schema)


@pytest.fixture(scope="session")
def anomaly_bundle(bundles_root: Path) -> Path:
    from skl2onnx import to_onnx
    from sklearn.ensemble import IsolationForest

    rng = np.random.default_rng(3)
    X = rng.normal(size=(500, 8)).astype(np.float32)
    model = IsolationForest(n_estimators=20, random_state=0).fit(X)
    onx = to_onnx(model, X[:1], target_opset={"": 17, "ai.onnx.ml": 3})
    inp = onx.graph.input[0].name
    outs = [o.name for o in onx.graph.output]
    schema = schema_for(
        "default.anomaly.SPX.1d",
        "1",
        SMALL_FEATURES,
        "anomaly",
        [{"name": outs[0], "kind": "label"}, {"name": outs[1], "kind": "score"}],
    )
    schema["input"]["name"] = inp
    return write_bundle(bundles_root / "anomaly", onx.SerializeToString(), schema)


@pytest.fixture(scope="module")
def clf(clf_bundle: Path):
    """A predictor of ``clf_bundle``, shared by the tests of one module."""
    from serving import Predictor

    return Predictor.load(clf_bundle)


@pytest.fixture(scope="session")
def multi_bundle(bundles_root: Path) -> Path:
    return write_bundle(bundles_root / "multi", multi_onnx(), multi_schema())


@pytest.fixture
def bundle_copy(tmp_path: Path) -> Callable[..., Path]:
    """Copy a bundle into tmp_path, optionally editing its schema: copy(src, name, edit=fn).

    An edit stands for a bundle written that way, so the copy is sealed again afterwards;
    ``reseal=False`` keeps the old seal (a schema tampered with after sealing)."""

    def copy(
        src: Path,
        name: str = "copy",
        edit: Callable[[dict], None] | None = None,
        *,
        reseal: bool = True,
    ) -> Path:
        dst = tmp_path / name
        shutil.copytree(src, dst)
        if edit is not None:
            schema = json.loads((dst / "schema.json").read_text())
            edit(schema)
            (dst / "schema.json").write_text(json.dumps(schema))
            if reseal:
                reseal_bundle(dst)
        return dst

    return copy


@pytest.fixture(scope="session")
def rows() -> np.ndarray:
    return np.random.default_rng(42).normal(size=(256, N_FEATURES)).astype(np.float32)
