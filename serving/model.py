"""One bundle (model.onnx + schema.json), loaded and checked: :class:`LoadedModel`.

Everything that can be checked is checked here, once: the seal (see :mod:`serving.integrity`),
the schema against the ONNX graph, and a probe run of two rows of zeros. The loaded model holds
the onnxruntime session with the model's :class:`~serving.inputs.InputConverter` and its task's
:class:`~serving.decoders.Decoder`, and is immutable afterwards.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from serving.decoders import Decoder, decoder_for
from serving.errors import BundleError, name_list
from serving.inputs import F32, InputConverter
from serving.integrity import UnsealedBundleError, check_graph
from serving.integrity import verify as verify_seal
from serving.schema import Schema

logger = logging.getLogger(__name__)

_PROBE_ROWS = 2


def session_options(intra_op_num_threads: int = 1) -> ort.SessionOptions:
    """The session options every AlphaOps session uses (also used by the benchmark)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = intra_op_num_threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Converters declare some outputs with a static batch of 1 (onnxmltools' `label`);
    # onnxruntime would then warn on every batch call.
    so.log_severity_level = 3
    return so


class LoadedModel:
    """One bundle, loaded and checked. Raises :class:`BundleError` on any problem."""

    __slots__ = (
        "path", "schema", "seal", "session", "run", "input_name", "fetch", "name", "version",
        "inputs", "decoder",
    )

    def __init__(
        self, path: str | Path, intra_op_num_threads: int = 1, allow_unsealed: bool = False
    ):
        self.path = Path(path)
        if not self.path.is_dir():
            raise BundleError(f"bundle directory not found: {self.path}")
        self.schema = s = Schema.read(self.path)
        onnx_path = self.path / "model.onnx"
        if not onnx_path.is_file():
            raise BundleError(f"model.onnx not found in {self.path}")
        try:
            data = onnx_path.read_bytes()  # read once: the bytes checked are the bytes loaded
        except OSError as e:
            raise BundleError(f"model.onnx in {self.path} cannot be read: {e}") from e
        try:
            self.seal: dict[str, Any] | None = verify_seal(s.raw, data, where=str(self.path))
        except UnsealedBundleError:
            if not allow_unsealed:
                raise
            logger.warning("%s: serving an unsealed bundle (allow_unsealed=True)", self.path)
            self.seal = None
        try:
            self.session = ort.InferenceSession(
                data,
                sess_options=session_options(intra_op_num_threads),
                providers=["CPUExecutionProvider"],
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise BundleError(f"model.onnx in {self.path} cannot be loaded: {e}") from e
        if self.seal is not None:
            check_graph(
                self.seal.get("graph"),
                [(i.name, list(i.shape)) for i in self.session.get_inputs()],
                [o.name for o in self.session.get_outputs()],
                where=str(self.path),
            )
        self.name, self.version = s.model_name, s.model_version
        self.inputs = InputConverter(s.features, s.window)
        self.decoder: Decoder = decoder_for(s)
        self._check_graph()
        self.fetch = self.decoder.fetch
        self.input_name = s.input_name
        self.run = self.session.run
        self._probe()

    def _check_graph(self) -> None:
        """The schema's input and outputs against the graph's."""
        s, sess = self.schema, self.session
        n, w = self.inputs.n, self.inputs.window
        inputs = sess.get_inputs()
        if len(inputs) != 1:
            raise BundleError(f"model.onnx must have exactly one input, has {len(inputs)}")
        inp = inputs[0]
        if inp.name != s.input_name:
            raise BundleError(
                f"schema input.name {s.input_name!r} is not the graph's input {inp.name!r}"
            )
        if inp.type != "tensor(float)":
            raise BundleError(f"graph input {inp.name!r} is {inp.type}, expected tensor(float)")
        shape = inp.shape
        expected = f"[N, {w}, {n}]" if w else f"[N, {n}]"
        if len(shape) != (3 if w else 2):
            hint = " (a sequence model needs 'window' in schema.json)" if len(shape) == 3 else ""
            raise BundleError(
                f"graph input {inp.name!r} has shape {shape}, expected {expected}{hint}"
            )
        if isinstance(shape[-1], int) and shape[-1] != n:
            raise BundleError(
                f"schema lists {n} features but the graph input {inp.name!r} takes {shape[-1]}"
            )
        if w and isinstance(shape[1], int) and shape[1] != w:
            raise BundleError(
                f"schema window is {w} time steps but the graph input {inp.name!r} takes {shape[1]}"
            )
        if isinstance(shape[0], int) and shape[0] != 1:
            raise BundleError(f"graph input {inp.name!r} has a fixed batch size {shape[0]}")
        graph_out = {o.name: o for o in sess.get_outputs()}
        for o in s.outputs:
            if o.name not in graph_out:
                raise BundleError(
                    f"schema output {o.name!r} is not a graph output ({name_list(list(graph_out))})"
                )
        self.decoder.check_graph(graph_out)

    def _probe(self) -> None:
        """Run two rows of zeros once: warms the session and checks output shapes."""
        n = _PROBE_ROWS
        try:
            outs = self.run(
                self.fetch, {self.input_name: np.zeros((n, *self.inputs.shape), F32)}
            )
        except Exception as e:
            raise BundleError(f"model.onnx in {self.path} fails on a probe batch: {e}") from e
        for name, arr in zip(self.fetch, outs):
            if not isinstance(arr, np.ndarray) or arr.ndim == 0 or arr.shape[0] != n:
                raise BundleError(
                    f"output {name!r} is not batched along axis 0 (shape "
                    f"{getattr(arr, 'shape', None)} for a batch of {n})"
                )
        self.decoder.check_probe(outs, n)
        try:
            self.decoder.one(outs)
            self.decoder.batch(outs, n)
        except Exception as e:
            raise BundleError(f"outputs of model.onnx in {self.path} cannot be decoded: {e}") from e
