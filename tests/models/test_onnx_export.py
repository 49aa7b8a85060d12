"""LightGBM → ONNX splits exactly like LightGBM on float32 inputs that sit on a split."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from models.families.direction import DirectionClassifier
from models.onnx_export import lightgbm_to_onnx


def adjacent_float32_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A feature whose values are consecutive float32 numbers, so splits fall between neighbours."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(0, 6, size=4000)
    x = np.float32(1.0) + steps.astype(np.float32) * np.spacing(np.float32(1.0))
    noise = rng.normal(size=(4000, 3)).astype(np.float32)
    y = (steps >= 3).astype(int) ^ (rng.random(4000) < 0.05)
    return np.column_stack([x, noise]).astype(np.float32), y


def onnx_proba(onnx_model, X: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"input": X})[0]


def test_thresholds_between_adjacent_float32_values_keep_parity():
    X, y = adjacent_float32_data()
    model = DirectionClassifier(n_estimators=30, min_child_samples=5, max_bin=255).fit(X, y)
    native = model.predict_proba(X)
    exported = onnx_proba(model.to_onnx(), X)
    assert np.abs(exported - native).max() < 1e-5


def test_the_plain_converter_would_disagree_on_the_same_data():
    """Guards the test above: without the threshold fix the rounding really flips rows."""
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    X, y = adjacent_float32_data()
    model = DirectionClassifier(n_estimators=30, min_child_samples=5, max_bin=255).fit(X, y)
    plain = onnxmltools.convert_lightgbm(model.model_, initial_types=[("input", FloatTensorType([None, 4]))],
                                         zipmap=False, target_opset=15)
    fixed = lightgbm_to_onnx(model.model_, 4)
    assert np.abs(onnx_proba(plain, X) - model.predict_proba(X)).max() > 1e-3
    assert np.abs(onnx_proba(fixed, X) - model.predict_proba(X)).max() < 1e-5
