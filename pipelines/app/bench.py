"""The serving benchmark behind ``alphaops bench serving``: figures are ratios against a baseline in
the same process. ``bench models`` is in :mod:`pipelines.app.bench_models`, its table in
:mod:`pipelines.app.bench_report`."""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np


def _direction_bundle(directory: Path, n_features: int, n_trees: int, seed: int) -> tuple[Any, Path]:
    """A LightGBM direction model (``n_trees`` trees) on random features, exported as a bundle."""
    from models.bundle import classifier_schema, write_bundle
    from models.families.direction import DirectionClassifier

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(20_000, n_features)).astype(np.float32)
    y = (X[:, :5].sum(axis=1) + rng.normal(scale=2.0, size=len(X)) > 0).astype(int)
    model = DirectionClassifier(n_estimators=n_trees, num_leaves=31, min_child_samples=20,
                                random_state=seed).fit(X, y)
    schema = classifier_schema(
        model={"name": "bench.direction", "version": "1", "family": "direction"},
        feature_set_version="bench", features=[f"f{i}" for i in range(n_features)],
        class_names=["down", "up"])
    return model, write_bundle(directory / "bundle", model.to_onnx(), schema)


def _pyfunc_latency(model: Any, X: np.ndarray, directory: Path, n_calls: int) -> dict[str, float]:
    """One-row latency of MLflow pyfunc ``predict`` on the same LightGBM model (native flavor)."""
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(f"sqlite:///{directory / 'mlflow.db'}")
    experiment = mlflow.create_experiment("bench", artifact_location=(directory / "art").as_uri())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.lightgbm.log_model(model.model_, name="model", pip_requirements=["lightgbm"])
        pyfunc = mlflow.pyfunc.load_model(info.model_uri)
    columns = [f"f{i}" for i in range(X.shape[1])]
    frames = [pd.DataFrame(X[i:i + 1], columns=columns) for i in range(64)]
    for frame in frames:
        pyfunc.predict(frame)
    timings = np.empty(n_calls)
    for i in range(n_calls):
        start = time.perf_counter_ns()
        pyfunc.predict(frames[i % 64])
        timings[i] = (time.perf_counter_ns() - start) / 1e3
    return {"pyfunc_p50_us": float(np.median(timings)), "pyfunc_p99_us": float(np.quantile(timings, 0.99))}


def serving_bench(*, n_features: int = 64, n_trees: int = 300, n_calls: int = 20_000, seed: int = 0
                  ) -> dict[str, Any]:
    """Predictor vs raw onnxruntime vs MLflow pyfunc, on one LightGBM direction model."""
    from serving._bench_core import run_benchmark

    with tempfile.TemporaryDirectory() as tmp:
        model, bundle = _direction_bundle(Path(tmp), n_features, n_trees, seed)
        figures = run_benchmark(bundle, n_calls=n_calls)
        X = np.random.default_rng(seed + 1).normal(size=(64, n_features)).astype(np.float32)
        figures.update(_pyfunc_latency(model, X, Path(tmp), n_calls=min(n_calls, 2_000)))
    figures["n_trees"] = n_trees
    figures["pyfunc_over_predict_p50"] = figures["pyfunc_p50_us"] / figures["predict_p50_us"]
    return figures


# -- the model benchmark: every family on the real samples and the synthetic market ------------------------

def machine_description() -> str:
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"this project's machine ({cpu}, {cores} cores, {platform.system()}, Python {platform.python_version()})"
