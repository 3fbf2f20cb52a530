"""Small deterministic ONNX models with the project's metadata, for tests that must not wait for trained ones.

``ecg`` (batch, window, leads) -> flatten -> MatMul -> Add -> Softmax -> ``probabilities``: every sample of every
lead counts, so occlusion and lead selection change the answer, and a different ``seed`` gives a different model.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ecg_shared.formats import STANDARD_12_LEADS
from ecg_shared.model_metadata import INPUT_NAME, OUTPUT_NAME, ModelMetadata
from ecg_shared.preprocessing import PreprocessingSpec

RHYTHM_SPEC = PreprocessingSpec(sampling_rate=300, window_samples=9000, leads=("II",))
TWELVE_LEAD_SPEC = PreprocessingSpec(sampling_rate=100, window_samples=1000, leads=STANDARD_12_LEADS)


def tiny_model(metadata: ModelMetadata, seed: int = 0, scale: float = 0.02, bias: list[float] | None = None) -> bytes:
    """``bias`` with ``scale=0`` gives a model whose answer is always softmax(bias), whatever the input."""
    spec = metadata.preprocessing
    features = spec.window_samples * len(spec.leads)
    rng = np.random.default_rng(seed)
    weights = (rng.standard_normal((features, len(metadata.classes))) * scale).astype(np.float32)
    bias = np.asarray(bias if bias is not None else rng.standard_normal(len(metadata.classes)), dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", [INPUT_NAME, "flat_shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "weights"], ["logits_raw"]),
            helper.make_node("Add", ["logits_raw", "bias"], ["logits"]),
            helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=-1),
        ],
        f"tiny-{metadata.name}",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", spec.window_samples, len(spec.leads)])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", len(metadata.classes)])],
        initializer=[
            numpy_helper.from_array(np.array([-1, features], dtype=np.int64), "flat_shape"),
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="ecg-tests")
    model.ir_version = 9
    helper.set_model_props(model, metadata.to_onnx_props())
    onnx.checker.check_model(model)
    return model.SerializeToString()


def rhythm_metadata(**overrides) -> ModelMetadata:
    fields = dict(
        name="rhythm-1lead",
        family="test-linear",
        classes=["N", "A", "O", "~"],
        normal_classes=["N"],
        unreadable_classes=["~"],
        preprocessing=RHYTHM_SPEC,
        threshold=0.5,
    )
    return ModelMetadata(**{**fields, **overrides})


def twelve_lead_metadata(**overrides) -> ModelMetadata:
    fields = dict(
        name="normal-12lead",
        family="test-linear",
        classes=["Normal", "Abnormal"],
        normal_classes=["Normal"],
        preprocessing=TWELVE_LEAD_SPEC,
        threshold=0.5,
    )
    return ModelMetadata(**{**fields, **overrides})


def write_models_dir(path, seed: int = 0):
    """A models folder like the repository's: ``<name>.onnx`` for both tiny models."""
    path.mkdir(parents=True, exist_ok=True)
    for metadata in (rhythm_metadata(), twelve_lead_metadata()):
        (path / f"{metadata.name}.onnx").write_bytes(tiny_model(metadata, seed))
    return path
