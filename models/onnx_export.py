"""ONNX export helpers shared by the model families (onnxmltools, skl2onnx)."""

from __future__ import annotations

import onnx

INPUT_NAME = "input"
LIGHTGBM_OPSET = 15  # onnxmltools' LightGBM converter supports target opset <= 15
SKLEARN_OPSET = {"": 17, "ai.onnx.ml": 3}


def lightgbm_to_onnx(model: object, n_features: int) -> onnx.ModelProto:
    """Convert a fitted LGBMClassifier/LGBMRegressor; classifier outputs are ``label`` and ``probabilities``."""
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    return onnxmltools.convert_lightgbm(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        zipmap=False,
        target_opset=LIGHTGBM_OPSET,
    )


def sklearn_to_onnx(model: object, n_features: int) -> onnx.ModelProto:
    """Convert a fitted scikit-learn estimator or pipeline (classifiers without ZipMap)."""
    from skl2onnx import to_onnx as skl_to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    return skl_to_onnx(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        target_opset=SKLEARN_OPSET,
        options=options,
    )
