"""Keras -> ONNX (tf2onnx, opset 17, dynamic batch axis, input ``ecg``, output ``probabilities``), the model's
metadata written into the file, and the parity check against Keras that every export must pass."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from ecg_shared.model_metadata import INPUT_NAME, OUTPUT_NAME, ModelMetadata

OPSET = 17
PARITY_TOLERANCE = 1e-4


class ParityError(RuntimeError):
    """The exported ONNX model does not compute what the Keras model computes."""


def to_onnx(model, metadata: ModelMetadata) -> bytes:
    """Serialised ONNX model of ``model`` (float32, fixed window, any batch size) carrying ``metadata``."""
    spec = metadata.preprocessing
    n_leads = len(spec.leads)
    signature = (tf.TensorSpec((None, spec.window_samples, n_leads), tf.float32, name=INPUT_NAME),)

    @tf.function(input_signature=signature)
    def serve(ecg):
        return {OUTPUT_NAME: model(ecg, training=False)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=OPSET)
    _rename_io(proto)
    del proto.metadata_props[:]
    for key, value in metadata.to_onnx_props().items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"{metadata.name} ({metadata.family}): classes {', '.join(metadata.classes)}"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _rename_io(proto: onnx.ModelProto) -> None:
    """Name the graph's one input ``ecg`` and one output ``probabilities`` whatever tf2onnx called them."""
    graph = proto.graph
    renames = {}
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ParityError(f"expected one input and one output, got {len(graph.input)} and {len(graph.output)}")
    for value, wanted in ((graph.input[0], INPUT_NAME), (graph.output[0], OUTPUT_NAME)):
        if value.name != wanted:
            renames[value.name] = wanted
            value.name = wanted
    if renames:
        for node in graph.node:
            node.input[:] = [renames.get(name, name) for name in node.input]
            node.output[:] = [renames.get(name, name) for name in node.output]


def onnx_session(onnx_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def check_parity(model, onnx_bytes: bytes, inputs: np.ndarray, tolerance: float = PARITY_TOLERANCE) -> float:
    """Max |Keras - onnxruntime| over ``inputs``; raises :class:`ParityError` at or above ``tolerance``."""
    session = onnx_session(onnx_bytes)
    names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise ParityError(f"ONNX model has inputs/outputs {names}, expected ([{INPUT_NAME!r}], [{OUTPUT_NAME!r}])")
    inputs = np.asarray(inputs, dtype=np.float32)
    expected = np.asarray(model.predict(inputs, batch_size=64, verbose=0), dtype=np.float64)
    actual = np.concatenate(
        [session.run([OUTPUT_NAME], {INPUT_NAME: inputs[i : i + 64]})[0] for i in range(0, len(inputs), 64)]
    ).astype(np.float64)
    if expected.shape != actual.shape:
        raise ParityError(f"ONNX output shape {actual.shape} differs from Keras {expected.shape}")
    difference = float(np.max(np.abs(expected - actual)))
    if not difference < tolerance:
        raise ParityError(f"ONNX output differs from Keras by up to {difference:.2e} (tolerance {tolerance:.0e})")
    return difference
