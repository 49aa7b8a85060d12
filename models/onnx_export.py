"""ONNX export helpers shared by the model families (onnxmltools, skl2onnx)."""

from __future__ import annotations

from collections.abc import Sequence

import onnx

INPUT_NAME = "input"
LIGHTGBM_OPSET = 15  # onnxmltools' LightGBM converter supports target opset <= 15
SKLEARN_OPSET = {"": 17, "ai.onnx.ml": 3}


def lightgbm_to_onnx(model: object, n_features: int) -> onnx.ModelProto:
    """Convert a fitted LGBMClassifier/LGBMRegressor; classifier outputs are ``label`` and ``probabilities``."""
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    onnx_model = onnxmltools.convert_lightgbm(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        zipmap=False,
        target_opset=LIGHTGBM_OPSET,
    )
    return exact_float32_thresholds(onnx_model, model.booster_)  # type: ignore[attr-defined]


def exact_float32_thresholds(onnx_model: onnx.ModelProto, booster: object) -> onnx.ModelProto:
    """Make the ONNX tree ensemble split exactly like LightGBM on float32 inputs.

    LightGBM compares ``x <= t`` with a double threshold ``t``; the ONNX graph stores ``t`` as
    the *nearest* float32, which can round up past ``t``, so an input equal to that float32
    (common for discrete features: candlestick codes, time encodings) goes left in ONNX and
    right in LightGBM. Storing the largest float32 ``<= t`` instead gives identical decisions
    for every float32 input. Nodes are matched per tree by (feature, float32 threshold).
    """
    import numpy as np

    exact: dict[int, dict[tuple[int, float], float]] = {}

    def walk(node: dict, tree: int) -> None:
        if "split_index" not in node:
            return
        if node.get("decision_type") == "<=":
            t = float(node["threshold"])
            exact.setdefault(tree, {})[(int(node["split_feature"]), float(np.float32(t)))] = t
        walk(node["left_child"], tree)
        walk(node["right_child"], tree)

    for info in booster.dump_model()["tree_info"]:  # type: ignore[attr-defined]
        walk(info["tree_structure"], int(info["tree_index"]))
    for node in onnx_model.graph.node:
        if node.op_type not in ("TreeEnsembleClassifier", "TreeEnsembleRegressor"):
            continue
        attrs = {a.name: a for a in node.attribute}
        values = list(attrs["nodes_values"].floats)
        for i, (mode, tree, feature) in enumerate(zip(attrs["nodes_modes"].strings, attrs["nodes_treeids"].ints,
                                                      attrs["nodes_featureids"].ints)):
            t = exact.get(int(tree), {}).get((int(feature), float(np.float32(values[i]))))
            if mode == b"BRANCH_LEQ" and t is not None:
                down = np.float32(t)
                if float(down) > t:
                    down = np.nextafter(down, np.float32(-np.inf))
                values[i] = float(down)
        del attrs["nodes_values"].floats[:]
        attrs["nodes_values"].floats.extend(values)
    return onnx_model


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


# -- graph surgery shared by the families (additive) --------------------------------------

COMBINE_OPSET = 17


def _opsets(model: onnx.ModelProto) -> dict[str, int]:
    return {(o.domain or ""): int(o.version) for o in model.opset_import}


def upgrade_opset(model: onnx.ModelProto, opset: int = COMBINE_OPSET) -> onnx.ModelProto:
    """The model with its default-domain opset raised to ``opset`` (onnx.version_converter); ml domain untouched."""
    from onnx import version_converter

    if _opsets(model).get("", 0) >= opset:
        return model
    return version_converter.convert_version(model, opset)


def combine_models(parts: list[tuple[str, onnx.ModelProto]], *, nodes: Sequence[onnx.NodeProto] = (),
                   initializers: Sequence[onnx.TensorProto] = (), outputs: Sequence[onnx.ValueInfoProto],
                   name: str = "alphaops", opset: int = COMBINE_OPSET) -> onnx.ModelProto:
    """One graph from several models that share the single input ``input``.

    Every part's internal names (nodes, edges, initializers, outputs) get the prefix
    ``"<prefix>/"``; the input stays ``input``. A part's output ``label`` is therefore
    reachable as ``"<prefix>/label"`` by the extra ``nodes``, which compute the graph's
    ``outputs``. Parts are raised to opset ``opset`` first, so graphs from onnxmltools
    (opset 8-15) and skl2onnx (17) can be merged.
    """
    from onnx import compose, helper

    graph_nodes: list[onnx.NodeProto] = []
    graph_inits: list[onnx.TensorProto] = []
    value_info: list[onnx.ValueInfoProto] = []
    input_info: onnx.ValueInfoProto | None = None
    ml_version = 0
    ir_version = 8
    for prefix, model in parts:
        if len(model.graph.input) != 1 or model.graph.input[0].name != INPUT_NAME:
            raise ValueError(f"part {prefix!r} must have the single input {INPUT_NAME!r}")
        model = upgrade_opset(model, opset)
        ml_version = max(ml_version, _opsets(model).get("ai.onnx.ml", 0))
        ir_version = max(ir_version, int(model.ir_version))
        graph = compose.add_prefix_graph(model.graph, f"{prefix}/", rename_inputs=False)
        if input_info is None:
            input_info = graph.input[0]
        elif graph.input[0].type != input_info.type:
            raise ValueError(f"part {prefix!r} has an input type different from the first part's")
        graph_nodes.extend(graph.node)
        graph_inits.extend(graph.initializer)
        value_info.extend(graph.value_info)
    if input_info is None:
        raise ValueError("combine_models needs at least one part")
    graph = helper.make_graph(graph_nodes + list(nodes), name, [input_info], list(outputs),
                              initializer=graph_inits + list(initializers), value_info=value_info)
    opset_imports = [helper.make_opsetid("", opset)]
    if ml_version:
        opset_imports.append(helper.make_opsetid("ai.onnx.ml", ml_version))
    combined = helper.make_model(graph, opset_imports=opset_imports, producer_name="alphaops")
    combined.ir_version = ir_version
    onnx.checker.check_model(combined)
    return combined


def piecewise_linear_nodes(x: str, out: str, knots_x, knots_y, prefix: str
                           ) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """ONNX ops for :func:`piecewise_linear` on a float32 column ``x`` of shape ``[N, 1]``; ``out`` is ``[N, 1]``."""
    import numpy as np
    from onnx import helper, numpy_helper

    left, width, slope, y0 = _piecewise_params(knots_x, knots_y)
    inits = [
        numpy_helper.from_array(left.reshape(1, -1), f"{prefix}left"),
        numpy_helper.from_array(width.reshape(1, -1), f"{prefix}width"),
        numpy_helper.from_array(slope.reshape(1, -1), f"{prefix}slope"),
        numpy_helper.from_array(np.array([y0], dtype=np.float32), f"{prefix}y0"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), f"{prefix}axis1"),
    ]
    nodes = [
        helper.make_node("Sub", [x, f"{prefix}left"], [f"{prefix}dx"]),
        helper.make_node("Relu", [f"{prefix}dx"], [f"{prefix}dx_pos"]),
        helper.make_node("Min", [f"{prefix}dx_pos", f"{prefix}width"], [f"{prefix}dx_seg"]),
        helper.make_node("Mul", [f"{prefix}dx_seg", f"{prefix}slope"], [f"{prefix}dy"]),
        helper.make_node("ReduceSum", [f"{prefix}dy", f"{prefix}axis1"], [f"{prefix}sum"], keepdims=1),
        helper.make_node("Add", [f"{prefix}sum", f"{prefix}y0"], [out]),
    ]
    return nodes, inits


def _piecewise_params(knots_x, knots_y):
    import numpy as np

    kx = np.asarray(knots_x, dtype=np.float64)
    ky = np.asarray(knots_y, dtype=np.float64)
    if kx.ndim != 1 or kx.shape != ky.shape or len(kx) < 2 or np.any(np.diff(kx) <= 0):
        raise ValueError("knots_x must be strictly increasing with at least two knots, matching knots_y")
    left = kx[:-1].astype(np.float32)
    width = np.diff(kx).astype(np.float32)
    slope = (np.diff(ky) / np.diff(kx)).astype(np.float32)
    return left, width, slope, np.float32(ky[0])


def piecewise_linear(x, knots_x, knots_y):
    """``np.interp(x, knots_x, knots_y)`` (clamped at both ends) as the ONNX graph computes it, in float32.

    Written as ``y0 + Σ_k slope_k · min(relu(x - x_k), x_{k+1} - x_k)`` so the Python and ONNX
    paths run the same arithmetic; :func:`piecewise_linear_nodes` emits it as ONNX ops.
    """
    import numpy as np

    left, width, slope, y0 = _piecewise_params(knots_x, knots_y)
    col = np.asarray(x, dtype=np.float32).reshape(-1, 1)
    seg = np.minimum(np.maximum(col - left[None, :], np.float32(0)), width[None, :])
    return (seg * slope[None, :]).sum(axis=1, dtype=np.float32) + y0


def quantize_uint8(model: onnx.ModelProto) -> onnx.ModelProto:
    """Dynamic UInt8 weight quantization (onnxruntime.quantization.quantize_dynamic) through temp files.

    Only MatMul/Gemm-style weights are quantized; tree-ensemble operators are left as they are,
    so a tree model comes back about the same size.
    """
    import tempfile
    from pathlib import Path

    from onnxruntime.quantization import QuantType, quantize_dynamic

    import logging

    # quantize_dynamic logs a root-logger warning that suggests shape pre-processing; drop just that one.
    def advice(record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(advice)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "model.onnx", Path(tmp) / "model.quant.onnx"
            src.write_bytes(model.SerializeToString())
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QUInt8)
            return onnx.load_model_from_string(dst.read_bytes())
    finally:
        root.removeFilter(advice)


def run_onnx(model: onnx.ModelProto | bytes, X) -> list:
    """Every output of ``model`` on ``X`` (float32) with a one-thread CPU onnxruntime session."""
    import numpy as np
    import onnxruntime as ort

    payload = model if isinstance(model, bytes) else model.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: np.asarray(X, dtype=np.float32)})


def dynamic_batch_outputs(model: onnx.ModelProto, dim_param: str = "N") -> onnx.ModelProto:
    """Mark the first dimension of every graph output as the dynamic batch axis (in place; returned).

    onnxmltools declares LightGBM's ``label`` output as shape ``[1]``, which makes onnxruntime
    warn on every batch of more than one row.
    """
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        if len(dims):
            dims[0].ClearField("dim_value")
            dims[0].dim_param = dim_param
    return model
