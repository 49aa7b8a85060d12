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


def write_bundle(directory: Path, onnx_model: onnx.ModelProto, schema: dict[str, Any]) -> Path:
    """Write both files; the ONNX graph is checked first so a broken export never lands."""
    onnx.checker.check_model(onnx_model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(onnx_model.SerializeToString())
    (directory / "schema.json").write_text(json.dumps(schema, indent=2, sort_keys=True))
    return directory
