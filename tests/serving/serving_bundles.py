"""Builders for the serving test bundles (used by conftest.py fixtures and by tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

N_FEATURES = 60
FEATURES = [f"f{i:02d}" for i in range(N_FEATURES)]
SMALL_FEATURES = [f"x{i}" for i in range(8)]
FALLBACK = {
    "kind": "rule",
    "rules": [{"when": [["f00", "<", -2.0]], "output": {"label": 1, "confidence": 0.5}}],
    "default": {"label": 0, "confidence": 0.0},
}


def feature_row(**overrides: object) -> dict:
    """A valid row of the 60-feature classifier by name (0.1 each), with ``overrides``."""
    d = {f: 0.1 for f in FEATURES}
    d.update(overrides)
    return d


def graph_of(onnx_bytes: bytes) -> dict[str, Any] | None:
    """The graph signature of ONNX bytes (None when they are not a readable model)."""
    import onnx

    from models.bundle import graph_signature

    try:
        return graph_signature(onnx.load_from_string(onnx_bytes))
    except Exception:
        return None


def write_bundle(path: Path, onnx_bytes: bytes, schema: dict[str, Any], *, sealed: bool = True) -> Path:
    """Write a bundle, sealed as training seals it (``sealed=False``: as before sealing existed)."""
    from serving.integrity import seal

    path.mkdir(parents=True, exist_ok=True)
    (path / "model.onnx").write_bytes(onnx_bytes)
    if sealed:
        schema = seal(schema, onnx_bytes, graph=graph_of(onnx_bytes), sealed_by="train")
    (path / "schema.json").write_text(json.dumps(schema, indent=2))
    return path


def reseal(path: Path) -> Path:
    """Seal a bundle directory again after a deliberate edit of its files."""
    from serving.integrity import seal_bundle

    seal_bundle(path, graph=graph_of((path / "model.onnx").read_bytes()), sealed_by="train")
    return path


def schema_for(
    name: str, version: str, features: list[str], task: str, outputs: list[dict], **extra: Any
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "model": {
            "name": name,
            "version": version,
            "family": "test",
            "tenant": "default",
            "symbol": "SPX",
            "timeframe": "1d",
            "run_id": "test",
        },
        "feature_set_version": "fs-test-1",
        "features": features,
        "input": {"name": "input", "dtype": "float32"},
        "task": task,
        "outputs": outputs,
        "thresholds": {},
        "fallback": None,
        **extra,
    }


def lgbm_onnx(model: Any, n_features: int) -> bytes:
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    onx = onnxmltools.convert_lightgbm(
        model,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        zipmap=False,
        target_opset=15,
    )
    return onx.SerializeToString()


def train_clf(seed: int, n_estimators: int) -> Any:
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2000, N_FEATURES)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] - 0.3 * X[:, 2] + rng.normal(size=len(X)) > 0).astype(int)
    return lgb.LGBMClassifier(
        n_estimators=n_estimators, verbose=-1, random_state=seed, n_jobs=1
    ).fit(X, y)


def clf_schema(version: str) -> dict[str, Any]:
    return schema_for(
        "default.direction.SPX.1d",
        version,
        FEATURES,
        "classifier",
        [{"name": "label", "kind": "label"}, {"name": "probabilities", "kind": "probabilities"}],
        classes=[0, 1],
        class_names=["down", "up"],
        thresholds={"decision": 0.5},
        fallback=FALLBACK,
    )


MULTI_W = np.array(
    [[0.5, 0.01], [-0.25, 0.02], [1.0, -0.01], [0.0, 0.03]], dtype=np.float32
)  # input [N,4] -> logits/returns


def multi_onnx() -> bytes:
    """input [N,4] -> direction_prob = sigmoid(x @ W[:,0]) [N,1],
    expected_return = x @ W[:,1] [N,1]."""
    from onnx import TensorProto, helper, numpy_helper

    w1 = numpy_helper.from_array(MULTI_W[:, :1], "w1")
    w2 = numpy_helper.from_array(MULTI_W[:, 1:], "w2")
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["prob"]),
        helper.make_node("MatMul", ["input", "w2"], ["ret"]),
    ]
    graph = helper.make_graph(
        nodes,
        "multi",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
        [
            helper.make_tensor_value_info("prob", TensorProto.FLOAT, [None, 1]),
            helper.make_tensor_value_info("ret", TensorProto.FLOAT, [None, 1]),
        ],
        initializer=[w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def multi_schema(version: str = "1") -> dict[str, Any]:
    return schema_for(
        "default.multi.SPX.1d",
        version,
        ["a", "b", "c", "d"],
        "multi",
        [
            {"name": "prob", "kind": "value", "meaning": "direction_prob"},
            {"name": "ret", "kind": "value", "meaning": "expected_return"},
        ],
        fallback={
            "kind": "rule",
            "rules": [
                {
                    "when": [["a", ">", 1.0]],
                    "output": {"direction_prob": 0.9, "expected_return": 0.01},
                }
            ],
            "default": {"direction_prob": 0.5, "expected_return": 0.0},
        },
    )
