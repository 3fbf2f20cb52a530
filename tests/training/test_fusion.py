"""A network fused with a feature model in one ONNX graph: the parity gate covers the fusion, the CPU graph pass keeps
its answers, and the inference service serves it with the features and calibration computed as training does."""

from __future__ import annotations

import json
import time

import numpy as np
import onnx
import pytest

from ecg_inference.classify import classify_prepared, prepare_recording
from ecg_inference.graph import optimize_for_cpu
from ecg_inference.models import ModelInputs, ModelLoadError, ModelSet, load_model
from ecg_shared.beats import FeatureSpec, recording_features
from ecg_shared.calibration import calibrate
from ecg_shared.formats import read_ecg
from ecg_shared.model_metadata import FEATURES_INPUT_NAME, INPUT_NAME, ModelMetadata
from ecg_shared.preprocessing import PreprocessingSpec, clean, window_batch
from ecg_training.export import ParityError, check_parity, finish_onnx, network_onnx, onnx_session
from ecg_training.families import build_model
from ecg_training.fusion import feature_reference, fit_feature_model, fused_onnx

SPEC = PreprocessingSpec(sampling_rate=100, window_samples=500, leads=("I", "II", "V1"))
FEATURES = FeatureSpec("II", ("I", "II", "V1"))
CLASSES = ["N", "A", "O", "~"]
WEIGHT = 0.4


@pytest.fixture(scope="module")
def fused():
    """A small ResNet (random weights) and boosted trees on random features, fused as training fuses them."""
    network = build_model("resnet", n_leads=3, n_classes=4, window=500)
    rng = np.random.default_rng(0)
    n_features = len(FEATURES.names)
    x, y = rng.standard_normal((200, n_features)).astype(np.float32), rng.integers(0, 3, 200)  # no '~' in training
    feature_model = fit_feature_model(x, y, n_classes=4, seed=0)
    metadata = ModelMetadata(
        "fused-test",
        "resnet",
        CLASSES,
        ["N"],
        SPEC,
        unreadable_classes=["~"],
        features=FEATURES.to_dict(),
        calibration={"method": "temperature", "temperature": 1.7},
        abnormal_prevalence=0.4,
    )
    proto = fused_onnx(network_onnx(network, SPEC).SerializeToString(), feature_model, WEIGHT, n_features)
    return network, feature_model, metadata, finish_onnx(proto, metadata)


def blend(network, feature_model, ecg: np.ndarray, features: np.ndarray) -> np.ndarray:
    return WEIGHT * network.predict(ecg, verbose=0) + (1 - WEIGHT) * feature_model.predict(features)


def feeds(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        INPUT_NAME: rng.standard_normal((n, 500, 3)).astype(np.float32),
        FEATURES_INPUT_NAME: rng.standard_normal((n, len(FEATURES.names))).astype(np.float32),
    }


def test_the_fused_graph_computes_the_blend_and_the_parity_gate_covers_it(fused):
    network, feature_model, _, onnx_bytes = fused
    session = onnx_session(onnx_bytes)
    assert sorted(i.name for i in session.get_inputs()) == ["ecg", "features"]
    x = feeds(9, 1)
    expected = blend(network, feature_model, x[INPUT_NAME], x[FEATURES_INPUT_NAME])
    assert check_parity(expected, onnx_bytes, x) < 1e-4
    with pytest.raises(ParityError, match="differs from the trained model"):
        check_parity(network.predict(x[INPUT_NAME], verbose=0), onnx_bytes, x)  # the network alone is not it
    with pytest.raises(ParityError, match="inputs/outputs"):
        check_parity(expected, onnx_bytes, {INPUT_NAME: x[INPUT_NAME]})


def test_the_cpu_graph_pass_keeps_the_fused_answers(fused):
    _, _, _, onnx_bytes = fused
    optimized = optimize_for_cpu(onnx_bytes)
    assert optimized != onnx_bytes  # the network's Conv1D chains were rewritten
    x = feeds(5, 2)
    before = onnx_session(onnx_bytes).run(None, x)[0]
    after = onnx_session(optimized).run(None, x)[0]
    assert np.max(np.abs(before - after)) < 1e-5


def test_the_service_path_serves_features_and_calibration_as_training_computes_them(fused, data_dir):
    _, _, metadata, onnx_bytes = fused
    model = load_model(onnx_bytes)
    assert model.metadata.feature_spec == FEATURES
    record = read_ecg(data_dir / "ptbxl" / "00001_lr.hea")
    prepared = prepare_recording(record, ModelSet({model.name: model}), explain=True)
    answer = classify_prepared([prepared], [time.perf_counter()])[0]

    cleaned = clean(record, SPEC)
    windows = window_batch(cleaned, SPEC)
    vector = recording_features(cleaned, SPEC.sampling_rate, list(SPEC.leads), FEATURES)
    raw = model.predict(ModelInputs(windows, np.repeat(vector[None], len(windows), axis=0)))
    expected = calibrate(raw.mean(axis=0, keepdims=True), metadata.calibration)[0]
    got = answer.models[0].probabilities
    assert [got[c] for c in CLASSES] == pytest.approx(expected.tolist(), abs=1e-6)
    assert answer.models[0].p_abnormal == pytest.approx(expected[1] + expected[2], abs=1e-6)
    assert answer.explanation and answer.explanation[0].segments


def test_a_model_whose_graph_lacks_the_features_input_is_refused(fused):
    _, _, metadata, onnx_bytes = fused
    proto = onnx.load_from_string(onnx_bytes)
    network_only = network_onnx(build_model("cnn", n_leads=3, n_classes=4, window=500), SPEC)
    with pytest.raises(ModelLoadError, match="must have inputs"):
        load_model(finish_onnx(network_only, metadata))
    assert len(proto.graph.input) == 2


def test_a_model_whose_features_version_this_code_cannot_compute_is_refused_at_load(fused):
    """Not at its first request: a newer file's features (another length, other meanings) would be a 500 there."""
    onnx_bytes = fused[-1]
    proto = onnx.load_from_string(onnx_bytes)
    props = {p.key: p.value for p in proto.metadata_props}
    stored = json.loads(props["ecg_model"])
    stored["features"]["version"] = "beats-9"
    for entry in proto.metadata_props:
        if entry.key == "ecg_model":
            entry.value = json.dumps(stored)
    with pytest.raises(ModelLoadError, match="beat features version 'beats-9' is not one this code computes"):
        load_model(proto.SerializeToString())


def test_an_ensemble_over_seeds_is_one_graph_the_parity_gate_covers():
    import keras

    from ecg_training.export import averaged_onnx

    networks = []
    for seed in range(3):  # three fresh initialisations, as three seeds give
        keras.utils.set_random_seed(seed)
        networks.append(build_model("cnn", n_leads=3, n_classes=4, window=500))
    metadata = ModelMetadata("ensemble-test", "cnn", CLASSES, ["N"], SPEC, unreadable_classes=["~"])
    onnx_bytes = finish_onnx(averaged_onnx([network_onnx(n, SPEC) for n in networks]), metadata)
    x = {INPUT_NAME: feeds(6, 3)[INPUT_NAME]}
    members = [n.predict(x[INPUT_NAME], verbose=0) for n in networks]
    assert check_parity(np.mean(members, axis=0), onnx_bytes, x) < 1e-4
    with pytest.raises(ParityError):
        check_parity(members[0], onnx_bytes, x)  # one member is not the ensemble
    model = load_model(onnx_bytes)
    assert model.predict(x[INPUT_NAME]) == pytest.approx(np.mean(members, axis=0), abs=1e-5)


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_a_part_weighted_zero_is_left_out_of_the_graph(fused, weight):
    """Weight 0 (the features alone) or 1 (the network alone): the other part is not in the graph, so it costs
    nothing to run; both inputs stay, and the answer is the remaining part's."""
    network, feature_model, metadata, _ = fused
    n_features = len(FEATURES.names)
    network_bytes = network_onnx(network, SPEC).SerializeToString()
    proto = fused_onnx(network_bytes, feature_model, weight, n_features)
    initializers = {i.name for i in proto.graph.initializer}
    network_weights = {i.name for i in onnx.load_from_string(network_bytes).graph.initializer}
    assert (initializers >= network_weights) == (weight == 1.0)
    tree_nodes = [node for node in proto.graph.node if any(o.startswith("beat_model/") for o in node.output)]
    assert bool(tree_nodes) == (weight == 0.0)
    session = onnx_session(finish_onnx(proto, metadata))
    assert sorted(i.name for i in session.get_inputs()) == ["ecg", "features"]
    x = feeds(7, 2)
    got = session.run(["probabilities"], x)[0]
    if weight == 0.0:
        np.testing.assert_allclose(got, feature_model.predict(x[FEATURES_INPUT_NAME]), atol=1e-5)
    else:
        np.testing.assert_allclose(got, network.predict(x[INPUT_NAME], verbose=0), atol=1e-5)
    np.testing.assert_allclose(optimized_run(finish_onnx(proto, metadata), x), got, atol=1e-6)


def optimized_run(onnx_bytes: bytes, x: dict[str, np.ndarray]) -> np.ndarray:
    return onnx_session(optimize_for_cpu(onnx_bytes)).run(["probabilities"], x)[0]


def test_a_features_only_model_is_served_with_a_true_note_instead_of_shading(fused, data_dir):
    """Weight 0 through the service: no occluded copies, a note in their place, and the note is true (the answer is
    the same with every window blanked)."""
    from dataclasses import replace

    network, feature_model, metadata, _ = fused
    proto = fused_onnx(network_onnx(network, SPEC).SerializeToString(), feature_model, 0.0, len(FEATURES.names))
    model = load_model(finish_onnx(proto, replace(metadata, network_weight=0.0)))
    assert model.metadata.signal_blind
    prepared = prepare_recording(read_ecg(data_dir / "ptbxl" / "00001_lr.hea"), ModelSet({model.name: model}), True)
    answer = classify_prepared([prepared], [time.perf_counter()])[0]
    [explanation] = answer.explanation
    assert explanation.note and not explanation.segments and not explanation.leads
    run = prepared.runs[0]
    features = np.repeat(run.features[None, :], len(run.windows), axis=0)
    blanked = np.zeros_like(run.windows)
    assert np.array_equal(
        model.predict(ModelInputs(blanked, features)), model.predict(ModelInputs(run.windows, features))
    )


def test_the_feature_reference_is_the_median_of_the_normal_recordings_and_must_fit_the_features(fused):
    x = np.array([[1.0, 10.0], [3.0, 30.0], [100.0, -5.0], [2.0, 20.0]])
    y = np.array([0, 0, 1, 0])  # class 0 normal: the abnormal row is not part of the reference
    assert feature_reference(x, y, [0]) == [2.0, 20.0]
    assert feature_reference(x, y, [2]) == [2.5, 15.0]  # no normal recording: all of them
    _, _, metadata, _ = fused
    with pytest.raises(ValueError, match=f"feature_reference holds 2 values for the {len(FEATURES.names)} features"):
        ModelMetadata.from_dict({**metadata.to_dict(), "feature_reference": [0.0, 1.0]})
