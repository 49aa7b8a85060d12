"""Write the serving bundle: ``model.onnx`` + ``schema.json`` (see docs/bundle.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx

from models.onnx_export import INPUT_NAME

SCHEMA_VERSION = 1


def classifier_schema(*, model: dict[str, str], feature_set_version: str, features: list[str],
                      class_names: list[str], thresholds: dict[str, float] | None = None,
                      fallback: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "model": model,
        "feature_set_version": feature_set_version,
        "features": list(features),
        "input": {"name": INPUT_NAME, "dtype": "float32"},
        "task": "classifier",
        "classes": list(range(len(class_names))),
        "class_names": list(class_names),
        "outputs": [{"name": "label", "kind": "label"}, {"name": "probabilities", "kind": "probabilities"}],
        "thresholds": thresholds or {"decision": 0.5},
        "fallback": fallback,
    }


def fallback_for_features(fallback: dict[str, Any], features: list[str]) -> dict[str, Any]:
    """The fallback rule without the rules that test features this model does not have.

    A symbol without microstructure columns has no ``price_dist``; such rules could never
    match, so they are dropped and the rule's ``default`` answers.
    """
    present = set(features)
    rules = [r for r in fallback.get("rules", []) if all(cond[0] in present for cond in r.get("when", []))]
    return {**fallback, "rules": rules}


def spec_schema(spec: Any, *, model: dict[str, str], feature_set_version: str, features: list[str]
                ) -> dict[str, Any]:
    """schema.json for any spec: the classifier layout, or the spec's declared outputs and extras.

    ``spec.schema_extras`` may set ``outputs``, ``thresholds``, ``fallback``, ``window`` (sequence
    models: input ``[N, window, n_features]``) and family-specific keys, which are kept as they are.
    """
    extras = dict(spec.schema_extras)
    if spec.task == "classifier":
        schema = classifier_schema(model=model, feature_set_version=feature_set_version, features=features,
                                   class_names=list(spec.class_names))
    else:
        outputs = extras.get("outputs") or [{"name": "variable", "kind": "value", "meaning": spec.label}]
        values = [o for o in outputs if o["kind"] == "value"]
        task = spec.task if spec.task == "anomaly" or len(values) <= 1 else "multi"
        schema = {
            "schema_version": SCHEMA_VERSION, "model": model, "feature_set_version": feature_set_version,
            "features": list(features), "input": {"name": INPUT_NAME, "dtype": "float32"}, "task": task,
            "outputs": outputs, "thresholds": {}, "fallback": None,
        }
        if spec.class_names:
            schema["class_names"] = list(spec.class_names)
    if extras.get("fallback"):
        extras["fallback"] = fallback_for_features(extras["fallback"], features)
    for key, value in extras.items():
        if key == "thresholds":
            schema["thresholds"] = {**schema.get("thresholds", {}), **value}
        else:
            schema[key] = value
    if spec.window:
        schema["window"] = int(spec.window)
        schema["input"]["shape"] = ["batch", int(spec.window), len(features)]
    schema["label"] = {"name": spec.label, "horizon_bars": int(spec.horizon)}
    return schema


def graph_signature(onnx_model: onnx.ModelProto) -> dict[str, Any]:
    """The graph's input (name, shape; ``None`` for a dynamic axis) and output names, as the
    seal records them and ``serving.Predictor`` compares them with the loaded session."""
    initializers = {i.name for i in onnx_model.graph.initializer}
    inputs = [i for i in onnx_model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ValueError(f"a bundle's model needs exactly one input, this graph has {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
    return {"input": {"name": inputs[0].name, "shape": shape},
            "outputs": [o.name for o in onnx_model.graph.output]}


def write_bundle(directory: Path, onnx_model: onnx.ModelProto, schema: dict[str, Any]) -> Path:
    """Write both files, sealed: schema.json records model.onnx's SHA-256, the graph's
    signature and a digest of its own content (``serving.integrity``). The ONNX graph is
    checked first so a broken export never lands."""
    from serving.integrity import seal

    onnx.checker.check_model(onnx_model)
    data = onnx_model.SerializeToString()
    sealed = seal(schema, data, graph=graph_signature(onnx_model), sealed_by="train")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(data)
    (directory / "schema.json").write_text(json.dumps(sealed, indent=2, sort_keys=True))
    return directory
