"""Keras -> ONNX (tf2onnx, opset 17, dynamic batch axis, input ``ecg``, output ``probabilities``), the model's
metadata written into the file, and the parity check against what training computed that every export must pass
(the network alone, or fused with its feature model: :mod:`ecg_training.fusion`)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from ecg_shared.model_metadata import FEATURES_INPUT_NAME, INPUT_NAME, OUTPUT_NAME, ModelMetadata
from ecg_shared.preprocessing import PreprocessingSpec

OPSET = 17
PARITY_TOLERANCE = 1e-4


class ParityError(RuntimeError):
    """The exported ONNX model does not compute what the Keras model computes."""


def to_onnx(model, metadata: ModelMetadata) -> bytes:
    """Serialised ONNX model of the network ``model`` (float32, fixed window, any batch size) carrying
    ``metadata``."""
    return finish_onnx(network_onnx(model, metadata.preprocessing), metadata)


def network_onnx(model, spec: PreprocessingSpec) -> onnx.ModelProto:
    """The network's graph: input ``ecg`` (batch, window, leads), output ``probabilities``."""
    n_leads = len(spec.leads)
    signature = (tf.TensorSpec((None, spec.window_samples, n_leads), tf.float32, name=INPUT_NAME),)

    @tf.function(input_signature=signature)
    def serve(ecg):
        return {OUTPUT_NAME: model(ecg, training=False)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=OPSET)
    _rename_io(proto)
    return proto


def averaged_onnx(protos: list[onnx.ModelProto]) -> onnx.ModelProto:
    """One graph whose ``probabilities`` are the mean of the networks' (an ensemble over seeds), on one ``ecg``."""
    members = [onnx.compose.add_prefix(p, f"member{i}/", rename_inputs=False) for i, p in enumerate(protos)]
    outputs = [m.graph.output[0].name for m in members]
    graph = onnx.helper.make_graph(
        [node for m in members for node in m.graph.node] + [onnx.helper.make_node("Mean", outputs, [OUTPUT_NAME])],
        "ensemble",
        [protos[0].graph.input[0]],
        [protos[0].graph.output[0]],
        initializer=[t for m in members for t in m.graph.initializer],
    )
    model = onnx.helper.make_model(graph, opset_imports=list(protos[0].opset_import))
    model.ir_version = protos[0].ir_version
    model.producer_name = protos[0].producer_name
    return model


def finish_onnx(proto: onnx.ModelProto, metadata: ModelMetadata) -> bytes:
    """``proto`` with ``metadata`` in its metadata_props, checked, serialised."""
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


def check_parity(
    expected: np.ndarray, onnx_bytes: bytes, feeds: dict[str, np.ndarray], tolerance: float = PARITY_TOLERANCE
) -> float:
    """Max |``expected`` - onnxruntime| over ``feeds`` (``ecg``, and ``features`` for a fused model): ``expected``
    is what training computes for them (Keras, and the feature model). Raises :class:`ParityError` at or above
    ``tolerance``, or when the graph's inputs are not the feeds'."""
    session = onnx_session(onnx_bytes)
    names = (sorted(i.name for i in session.get_inputs()), [o.name for o in session.get_outputs()])
    wanted = (sorted(feeds), [OUTPUT_NAME])
    if names != wanted or INPUT_NAME not in feeds or not set(feeds) <= {INPUT_NAME, FEATURES_INPUT_NAME}:
        raise ParityError(f"ONNX model has inputs/outputs {names}, expected {wanted}")
    feeds = {name: np.asarray(value, dtype=np.float32) for name, value in feeds.items()}
    expected = np.asarray(expected, dtype=np.float64)
    n = len(feeds[INPUT_NAME])
    actual = np.concatenate(
        [
            session.run([OUTPUT_NAME], {name: value[i : i + 64] for name, value in feeds.items()})[0]
            for i in range(0, n, 64)
        ]
    ).astype(np.float64)
    if expected.shape != actual.shape:
        raise ParityError(f"ONNX output shape {actual.shape} differs from Keras {expected.shape}")
    difference = float(np.max(np.abs(expected - actual)))
    if not difference < tolerance:
        raise ParityError(
            f"ONNX output differs from the trained model by up to {difference:.2e} (tolerance {tolerance:.0e})"
        )
    return difference
