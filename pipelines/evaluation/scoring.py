"""Scoring a registered version: rebuild its dataset, fetch its bundle, run its ONNX graph.

The validate and deploy steps and the monitor share these, so that every place scores a
version the same way: on its own feature list, with its own ONNX bundle.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from models.catalog import spec_by_name
from models.outputs import primary_output_name
from models.specs import ModelSpec
from pipelines.config import Settings
from pipelines.evaluation.datasets import Dataset, load_dataset
from registry import Registry
from warehouse import open_warehouse


def onnx_outputs(onnx_bytes: bytes, X: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of the ONNX graph on ``X``, by name."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3  # LightGBM graphs declare label shape [1]: a harmless warning per batch
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: X.astype(np.float32)})))


def onnx_primary_output(spec: ModelSpec, outputs: dict[str, np.ndarray]) -> np.ndarray:
    if spec.targets:  # multi-output regressors: the named outputs side by side, [n, n_targets]
        missing = [t for t in spec.targets if t not in outputs]
        if missing:
            raise ValueError(f"{spec.name}: the ONNX graph lacks the outputs {missing}")
        return np.column_stack([np.asarray(outputs[t]).reshape(-1) for t in spec.targets])
    out = np.asarray(outputs[primary_output_name(spec)])
    return out if spec.task == "classifier" else out.reshape(-1)


def dataset_for_version(settings: Settings, registry: Registry, name: str, version: str,
                        as_of: pd.Timestamp, holdout_fraction: float) -> tuple[ModelSpec, Dataset, Path]:
    """Rebuild the version's dataset (its own feature list) and fetch its bundle.

    A version's bundle never changes, so it is kept under ``$ALPHAOPS_HOME/cache/versions``
    (one folder per name and version, written atomically) and fetched once, not once per
    validation, deploy comparison and monitor check.
    """
    from pipelines.memory import require_memory

    mv = registry.client.get_model_version(name, version)
    spec = spec_by_name(mv.tags["spec"], mv.tags.get("timeframe"))
    bundle = version_bundle(settings, registry, name, version)
    schema = json.loads((bundle / "schema.json").read_text())
    with open_warehouse(settings) as warehouse:
        require_memory(settings, "validate", rows=warehouse.count_bars(
            tenant=settings.scope, symbol=mv.tags["symbol"], timeframe=mv.tags["timeframe"], end=as_of),
            n_features=len(schema["features"]))
        data = load_dataset(warehouse, spec, tenant=settings.scope, symbol=mv.tags["symbol"],
                            timeframe=mv.tags["timeframe"], feature_set_version=schema["feature_set_version"],
                            as_of=as_of, holdout_fraction=holdout_fraction, feature_names=schema["features"],
                            max_bytes=settings.max_train_bytes)
    return spec, data, bundle


def version_bundle(settings: Settings, registry: Registry, name: str, version: str) -> Path:
    """The cached bundle of ``name`` v``version`` (downloaded on first use)."""
    cached = settings.home_dir / "cache" / "versions" / name / str(version)
    if (cached / "model.onnx").is_file() and (cached / "schema.json").is_file():
        return cached
    return registry.load_bundle(name, version, cached)


def bundle_scores(spec: ModelSpec, bundle: Path, X: np.ndarray) -> np.ndarray:
    """The spec's primary output (probabilities, value or anomaly score) from the bundle's ONNX model."""
    return onnx_primary_output(spec, onnx_outputs((bundle / "model.onnx").read_bytes(), X))
