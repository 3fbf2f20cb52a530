"""The model families accept any lead count and window; the ONNX export carries its metadata and the parity check
fails an export that does not compute what Keras computes."""

from __future__ import annotations

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from ecg_shared.model_metadata import ModelMetadata
from ecg_shared.preprocessing import PreprocessingSpec
from ecg_training.export import ParityError, check_parity, to_onnx
from ecg_training.families import FAMILIES, build_model, encoder_weights, float32_copy, load_encoder


def metadata(leads: tuple[str, ...], window: int, family: str = "cnn") -> ModelMetadata:
    spec = PreprocessingSpec(sampling_rate=100, window_samples=window, leads=leads, normalisation="minmax")
    return ModelMetadata(
        "test-model", family, ["Normal", "Abnormal"], ["Normal"], spec, threshold=0.42, dataset_fingerprint="f" * 64
    )


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize(("n_leads", "window"), [(1, 300), (12, 1000), (3, 777)])
def test_every_family_takes_any_leads_and_window(family, n_leads, window):
    model = build_model(family, n_leads, 3, window if family == "leadwise" else None)  # leadwise: built per window
    probabilities = np.asarray(model(np.random.default_rng(0).standard_normal((2, window, n_leads)), training=False))
    assert probabilities.shape == (2, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert model.layers[-1].name == "probabilities"


def test_leadwise_needs_a_window_and_shares_one_encoder_across_leads():
    with pytest.raises(ValueError, match="needs a fixed window"):
        build_model("leadwise", 12, 2)
    one_lead = build_model("leadwise", 1, 4, 300)
    twelve = build_model("leadwise", 12, 2, 300)
    assert len(encoder_weights(one_lead)) == len(encoder_weights(twelve))  # the same encoder, whatever the leads
    load_encoder(twelve, encoder_weights(one_lead))
    assert all(np.array_equal(a, b) for a, b in zip(encoder_weights(one_lead), encoder_weights(twelve), strict=True))
    # each lead goes through the encoder on its own: lead 3 alone changing moves only its part of the embeddings
    embeddings = keras.Model(twelve.input, twelve.get_layer("each_lead").output)
    x = np.random.default_rng(0).standard_normal((1, 300, 12)).astype(np.float32)
    changed = x.copy()
    changed[0, :, 3] += 1.0
    a, b = np.asarray(embeddings(x)), np.asarray(embeddings(changed))
    assert not np.allclose(a[0, 3], b[0, 3]) and np.allclose(np.delete(a, 3, axis=1), np.delete(b, 3, axis=1))
    lone = keras.Model(one_lead.input, one_lead.get_layer("each_lead").output)
    assert np.allclose(np.asarray(lone(x[:, :, 5:6]))[0, 0], a[0, 5], atol=1e-5)  # the pretrained encoder itself


def test_mixed_precision_training_copy_exports_float32_with_the_same_weights():
    mixed = build_model("resnet", 2, 2, mixed_precision=True)
    assert mixed.layers[2].compute_dtype == "bfloat16" and mixed.layers[-1].compute_dtype == "float32"
    exported = float32_copy(mixed, "resnet", 2, 2, window=400)
    assert exported.layers[2].compute_dtype == "float32"
    assert all(np.array_equal(a, b) for a, b in zip(mixed.get_weights(), exported.get_weights(), strict=True))


@pytest.fixture(scope="module")
def exported():
    model = float32_copy(build_model("cnn", 12, 2), "cnn", 12, 2, window=500)
    leads = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    return model, to_onnx(model, metadata(leads, 500))


def test_onnx_has_named_io_dynamic_batch_opset_and_metadata(exported):
    model, onnx_bytes = exported
    proto = onnx.load_from_string(onnx_bytes)
    assert any(o.domain in ("", "ai.onnx") and o.version == 17 for o in proto.opset_import)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.name == "ecg" and inp.shape[1:] == [500, 12] and not isinstance(inp.shape[0], int)
    assert out.name == "probabilities"
    for batch in (1, 7):
        x = np.random.default_rng(batch).random((batch, 500, 12), dtype=np.float32)
        assert session.run(["probabilities"], {"ecg": x})[0].shape == (batch, 2)
    meta = ModelMetadata.from_onnx_props(session.get_modelmeta().custom_metadata_map)
    assert meta.threshold == 0.42 and meta.preprocessing.normalisation == "minmax"
    assert meta.preprocessing.leads[3] == "aVR" and meta.classes == ["Normal", "Abnormal"]
    x = np.random.default_rng(1).random((20, 500, 12), dtype=np.float32)
    assert check_parity(model.predict(x, verbose=0), onnx_bytes, {"ecg": x}) < 1e-4


def test_parity_check_fails_an_export_that_differs_from_keras(exported):
    model, onnx_bytes = exported
    proto = onnx.load_from_string(onnx_bytes)
    # append "+ 0.001" after the softmax: a graph that is almost, but not quite, the Keras model
    producer = next(node for node in proto.graph.node if "probabilities" in node.output)
    producer.output[list(producer.output).index("probabilities")] = "raw_probabilities"
    proto.graph.initializer.append(numpy_helper.from_array(np.array(1e-3, dtype=np.float32), "offset"))
    proto.graph.node.append(onnx.helper.make_node("Add", ["raw_probabilities", "offset"], ["probabilities"]))
    x = np.random.default_rng(2).random((8, 500, 12), dtype=np.float32)
    with pytest.raises(ParityError, match="differs from the trained model by up to"):
        check_parity(model.predict(x, verbose=0), proto.SerializeToString(), {"ecg": x})
