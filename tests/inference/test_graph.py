"""The CPU graph pass (ecg_inference.graph): on every model family's real tf2onnx export and on the bundled models it
computes the same probabilities with the Conv1D chains kept 4-D; a graph without the pattern comes back unchanged;
the service's sessions use the optimized graph, and the graph as exported when the pass fails or changes the answer.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ecg_inference import models
from ecg_inference.graph import PASS_NOTE, optimize_for_cpu
from ecg_inference.models import create_session
from ecg_shared.jobs.training import MODEL_FAMILIES
from ecg_shared.model_metadata import OUTPUT_NAME, ModelMetadata
from ecg_shared.preprocessing import PreprocessingSpec
from ecg_shared.settings import REPO_ROOT
from tests.inference.onnx_models import rhythm_metadata, tiny_model

FAMILY_NAMES = MODEL_FAMILIES  # every family a training request may name
BUNDLED = {
    name: REPO_ROOT / "models" / f"{name}.onnx"
    for name in ("rhythm-1lead", "normal-12lead")
    if (REPO_ROOT / "models" / f"{name}.onnx").exists()
}
# Bundled models whose graph holds a network (one fused at network weight 0 is its trees alone: nothing to lift)
BUNDLED_NETWORKS = {
    name: path
    for name, path in BUNDLED.items()
    if any(node.op_type == "Conv" for node in onnx.load(str(path), load_external_data=False).graph.node)
}
TOLERANCE = 1e-5


def random_weights(model, seed: int) -> None:
    """Random weights everywhere, batch-norm statistics included (fresh ones make batch norm nearly the identity,
    which would hide a wrong rewrite of it); variances positive."""
    rng = np.random.default_rng(seed)
    model.set_weights(
        [
            (rng.uniform(0.5, 1.5, w.shape) if "variance" in v.path else rng.standard_normal(w.shape) * 0.2).astype(
                np.float32
            )
            for v, w in zip(model.weights, model.get_weights(), strict=True)
        ]
    )


@pytest.fixture(scope="module")
def family_exports() -> dict[str, bytes]:
    """Each family built small (3 leads, 600 samples, 4 classes) with random weights, exported as training does."""
    from ecg_training.export import to_onnx
    from ecg_training.families import FAMILIES, build_model

    assert set(FAMILIES) == set(FAMILY_NAMES), "every family a request may name is one training builds"
    spec = PreprocessingSpec(sampling_rate=100, window_samples=600, leads=("I", "II", "V1"))
    exports = {}
    for seed, family in enumerate(FAMILY_NAMES):
        model = build_model(family, n_leads=3, n_classes=4, window=600)
        random_weights(model, seed)
        metadata = ModelMetadata(f"test-{family}", family, ["N", "A", "O", "~"], ["N"], spec, threshold=0.5)
        exports[family] = to_onnx(model, metadata)
    return exports


@pytest.fixture(params=[*FAMILY_NAMES, *BUNDLED_NETWORKS])
def exported(request, family_exports) -> bytes:
    name = request.param
    return family_exports[name] if name in family_exports else BUNDLED[name].read_bytes()


def cpu_session(onnx_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def random_inputs(session: ort.InferenceSession, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Random feeds for every input: the windows (``ecg``) and, for a model fused with beat features, ``features``."""
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal((batch, *i.shape[1:])).astype(np.float32) for i in session.get_inputs()}


def squeeze_unsqueeze_around_convs(model: onnx.ModelProto) -> int:
    """How many Conv nodes read an Unsqueeze's output or have theirs read by a Squeeze."""
    producers = {name: node.op_type for node in model.graph.node for name in node.output}
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    read_by_squeeze = {node.input[0] for node in model.graph.node if node.op_type == "Squeeze"}
    return sum(producers.get(conv.input[0]) == "Unsqueeze" or conv.output[0] in read_by_squeeze for conv in convs)


def test_optimized_graph_gives_the_same_probabilities(exported):
    original, optimized = cpu_session(exported), cpu_session(optimize_for_cpu(exported))
    for batch in (1, 5):
        x = random_inputs(original, batch, seed=batch)
        (expected,) = original.run([OUTPUT_NAME], x)
        (actual,) = optimized.run([OUTPUT_NAME], x)
        assert actual.shape == expected.shape == (batch, expected.shape[1])
        assert np.max(np.abs(actual - expected)) <= TOLERANCE
        assert expected.std() > 0.01  # the comparison means something: not every window gets the same answer


def test_optimized_graph_keeps_conv_chains_4d(exported):
    before = onnx.load_from_string(exported)
    after = onnx.load_from_string(optimize_for_cpu(exported))
    ops_before = Counter(node.op_type for node in before.graph.node)
    ops_after = Counter(node.op_type for node in after.graph.node)
    assert squeeze_unsqueeze_around_convs(before) >= ops_before["Conv"] // 2  # tf2onnx's pattern is there ...
    assert squeeze_unsqueeze_around_convs(after) == 0  # ... and gone
    # What remains, per chain of convolutions (one per network; tf2onnx unrolls leadwise's encoder once per lead): the
    # input's Unsqueeze (window, leads -> channels, 1, window) and the two Squeezes after pooling; leadwise adds, per
    # lead, the Squeeze of its slice of the input and the Unsqueeze that stacks its embedding with the others.
    chains = ops_after["GlobalAveragePool"]
    per_lead = chains if chains > 1 else 0
    assert ops_after["Unsqueeze"] <= chains + per_lead and ops_after["Squeeze"] <= 2 * chains + per_lead
    assert ops_after["Transpose"] <= chains  # tf2onnx's Transpose/Unsqueeze/Transpose chains went with them
    assert ops_after["Conv"] >= ops_before["Conv"]  # nothing computed dropped
    assert PASS_NOTE in after.graph.doc_string
    onnx.checker.check_model(after, full_check=True)


def test_a_model_without_the_pattern_comes_back_unchanged():
    linear = tiny_model(rhythm_metadata())  # Reshape -> MatMul -> Add -> Softmax
    assert optimize_for_cpu(linear) == linear
    for name in set(BUNDLED) - set(BUNDLED_NETWORKS):  # a bundled model that is its features' trees alone
        trees = BUNDLED[name].read_bytes()
        assert optimize_for_cpu(trees) == trees, name
    # A 2-D conv net already 4-D throughout: nothing to lift either.
    conv_net = helper.make_model(
        helper.make_graph(
            [
                helper.make_node("Conv", ["x", "w"], ["conv"], pads=[1, 1, 1, 1]),
                helper.make_node("Relu", ["conv"], ["relu"]),
                helper.make_node("GlobalAveragePool", ["relu"], ["y"]),
            ],
            "conv-2d",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 1, 1])],
            [numpy_helper.from_array(np.ones((4, 2, 3, 3), np.float32), "w")],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    ).SerializeToString()
    assert optimize_for_cpu(conv_net) == conv_net


def squeeze_graph(opset: int) -> bytes:
    """Conv1D the tf2onnx way, its batch-normalised ReLU read by a graph output and a Transpose (which need the 3-D
    tensor) and by a second Conv1D (which does not), then constants over time; Squeeze/Unsqueeze take their axes as
    an attribute before opset 13, as an input since."""
    rng = np.random.default_rng(opset)
    initializers = [
        numpy_helper.from_array(rng.standard_normal((4, 2, 1, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((4, 4, 1, 3)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.standard_normal((1, 4, 1)).astype(np.float32), "scale"),
        numpy_helper.from_array(rng.standard_normal((4, 16)).astype(np.float32), "shift"),  # per channel and time
        numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "gain"),  # per time step
    ]

    def axis_2(op: str, source: str, output: str) -> onnx.NodeProto:
        if opset < 13:
            return helper.make_node(op, [source], [output], axes=[2])
        return helper.make_node(op, [source, "axis_2"], [output])

    if opset >= 13:
        initializers.append(numpy_helper.from_array(np.array([2], np.int64), "axis_2"))
    nodes = [
        axis_2("Unsqueeze", "x", "x4"),
        helper.make_node("Conv", ["x4", "w1"], ["conv1"], pads=[0, 1, 0, 1]),
        axis_2("Squeeze", "conv1", "c1"),
        helper.make_node("Mul", ["c1", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "shift"], ["shifted"]),
        helper.make_node("Relu", ["shifted"], ["relu"]),
        helper.make_node("Transpose", ["relu"], ["channels_last"], perm=[0, 2, 1]),
        axis_2("Unsqueeze", "relu", "relu4"),
        helper.make_node("Conv", ["relu4", "w2"], ["conv2"], pads=[0, 1, 0, 1]),
        axis_2("Squeeze", "conv2", "c2"),
        helper.make_node("Sigmoid", ["c2"], ["sigmoid"]),
        helper.make_node("Mul", ["sigmoid", "gain"], ["gained"]),  # not per channel: no depthwise conv
        helper.make_node("Add", ["gained", "shift"], ["y"]),
    ]
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
        for name, shape in (("relu", ["n", 4, 16]), ("channels_last", ["n", 16, 4]), ("y", ["n", 4, 16]))
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 16])]
    model = helper.make_model(
        helper.make_graph(nodes, "conv1d", inputs, outputs, initializers),
        opset_imports=[helper.make_opsetid("", opset)],
    )
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize("opset", [11, 17])
def test_three_dimensional_readers_still_get_their_tensors(opset):
    exported = squeeze_graph(opset)
    optimized = optimize_for_cpu(exported)
    ops = Counter(node.op_type for node in onnx.load_from_string(optimized).graph.node)
    # Mul, Add, Relu, Sigmoid run 4-D; Squeezes only where 3-D is read: relu (output, Transpose) and y (output).
    assert ops == Counter(
        {"Conv": 2, "Squeeze": 2, "Unsqueeze": 1, "Mul": 2, "Add": 2, "Relu": 1, "Sigmoid": 1, "Transpose": 1}
    )
    lifted_shift = next(i for i in onnx.load_from_string(optimized).graph.initializer if i.name.startswith("shift"))
    assert list(lifted_shift.dims) == [1, 4, 1, 16]
    x = {"x": np.random.default_rng(0).standard_normal((3, 2, 16)).astype(np.float32)}
    expected, actual = cpu_session(exported).run(None, x), cpu_session(optimized).run(None, x)
    for want, got in zip(expected, actual, strict=True):
        assert got.shape == want.shape and np.max(np.abs(got - want)) <= TOLERANCE


@pytest.fixture()
def resnet_export(family_exports) -> bytes:
    return family_exports["resnet"]


def test_service_sessions_run_the_optimized_graph(resnet_export):
    session = create_session(resnet_export)
    assert PASS_NOTE in session.get_modelmeta().graph_description
    original = cpu_session(resnet_export)
    x = random_inputs(original, 8, seed=3)
    expected = original.run([OUTPUT_NAME], x)[0]
    assert np.max(np.abs(session.run([OUTPUT_NAME], x)[0] - expected)) <= TOLERANCE


def off_by_a_little(onnx_bytes: bytes) -> bytes:
    """The model with 1e-3 added to its probabilities: what a wrong rewrite could produce."""
    model = onnx.load_from_string(onnx_bytes)
    producer = next(node for node in model.graph.node if OUTPUT_NAME in node.output)
    producer.output[list(producer.output).index(OUTPUT_NAME)] = "raw_probabilities"
    model.graph.initializer.append(numpy_helper.from_array(np.array(1e-3, np.float32), "offset"))
    model.graph.node.append(helper.make_node("Add", ["raw_probabilities", "offset"], [OUTPUT_NAME]))
    return model.SerializeToString()


def failing_pass(onnx_bytes: bytes) -> bytes:
    raise ValueError("unsupported graph")


@pytest.mark.parametrize(
    ("broken_pass", "warning"), [(off_by_a_little, "changed its outputs"), (failing_pass, "failed")]
)
def test_service_sessions_fall_back_to_the_exported_graph(resnet_export, monkeypatch, caplog, broken_pass, warning):
    # The real pass replaced by one that changes the answer, or raises: the session must run the exported graph.
    monkeypatch.setattr(models, "optimize_for_cpu", broken_pass)
    with caplog.at_level(logging.WARNING, logger="ecg_inference.models"):
        session = create_session(resnet_export)
    assert PASS_NOTE not in session.get_modelmeta().graph_description
    assert f"the CPU graph pass {warning}" in caplog.text
    x = random_inputs(session, 2, seed=4)
    expected = cpu_session(resnet_export).run([OUTPUT_NAME], x)[0]
    assert np.max(np.abs(session.run([OUTPUT_NAME], x)[0] - expected)) <= 1e-6
