"""Back-fill the drift reference of a bundled model trained before drift monitoring existed.

A training run stores how ``p_abnormal`` is distributed on its validation split (``metrics.validation.
p_abnormal_histogram``, see ``ecg_shared.drift``); the `/models` page compares live traffic with it. The bundled
models were trained before that step, so their cards lack it. This recomputes it the way the trainer does, from the
bundled ONNX file itself: the card's recipe selects and splits the same recordings (checked against the card's
validation class counts and validation confusion matrix), onnxruntime runs every validation window with its
recording's features, the windows' mean per recording is calibrated with the file's temperature, and the abnormal
classes' probabilities are summed and bucketed. `make models` writes the histogram itself; this is only for files
made before.

    ECG_DATABASE_URL=... .venv/bin/python services/training/scripts/drift_reference.py models/rhythm-1lead.onnx

The database must hold the card's dataset (``ecg dataset import``), imported in the same order as when it was trained.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ecg_shared.calibration import calibrate
from ecg_shared.db import session_scope
from ecg_shared.drift import bucket_counts
from ecg_shared.evaluation import evaluate
from ecg_shared.jobs.training import TrainingJobRequest
from ecg_shared.model_metadata import ModelMetadata
from ecg_training.data import RecordingWindows, TrainingData, load_training_data, mean_by_recording


def card_request(card: dict, metadata: ModelMetadata) -> TrainingJobRequest:
    """The training request the card records (the fields that choose and split the recordings and clean them)."""
    hyper, spec = card["hyperparameters"], metadata.preprocessing
    return TrainingJobRequest(
        dataset=card["data"]["dataset"],
        classes=list(metadata.classes),
        normal_classes=list(metadata.normal_classes),
        unreadable_classes=list(metadata.unreadable_classes),
        leads=list(spec.leads),
        sampling_rate=spec.sampling_rate,
        window_s=hyper["window_s"],
        normalisation=spec.normalisation,
        highpass_hz=spec.highpass_hz,
        lowpass_hz=spec.lowpass_hz,
        notch_hz=spec.notch_hz,
        seed=hyper["seed"],
        split_seed=hyper.get("split_seed"),
        features=hyper["features"],
        label_mapping=card["data"].get("label_mapping") or {},
    )


def card_data(db, card: dict, metadata: ModelMetadata) -> TrainingData:
    """The recordings the card's job trained, validated and tested on, with the model's own features (its version,
    which may be older than this code's)."""
    return load_training_data(db, card_request(card, metadata), metadata.feature_spec)


def check_card_split(card: dict, data: TrainingData) -> None:
    """Stop unless ``data``'s training and validation splits have the card's class counts (the database holds the
    card's data)."""
    for name, split in (("train", data.train), ("validation", data.validation)):
        counts = {label: int((split.y == i).sum()) for i, label in enumerate(data.classes)}
        if counts != card["data"]["class_counts"][name]:
            raise SystemExit(f"not the card's {name} split: class counts {counts}")


def split_files(model_path: Path, split: str) -> list[str]:
    """The file names (no suffix) of the recordings in a bundled model's ``split`` (train, validation or test),
    rebuilt from its card and checked against it, in the split's order."""
    import onnx
    from sqlalchemy import select

    from ecg_shared.db import Recording

    card = json.loads(model_path.with_name(model_path.name.removesuffix(".onnx") + ".card.json").read_text())
    metadata = ModelMetadata.from_onnx_props({p.key: p.value for p in onnx.load(str(model_path)).metadata_props})
    with session_scope() as db:
        data = card_data(db, card, metadata)
        check_card_split(card, data)
        ids = getattr(data, split).recording_ids
        uris = dict(db.execute(select(Recording.id, Recording.source_uri).where(Recording.id.in_(ids))).all())
    return [uris[i].rsplit("/", 1)[-1].removesuffix(".hea") for i in ids]


def validation_probabilities(model_path: Path, card: dict) -> tuple[np.ndarray, np.ndarray, ModelMetadata]:
    session = ort.InferenceSession(model_path.read_bytes(), providers=["CPUExecutionProvider"])
    metadata = ModelMetadata.from_onnx_props(session.get_modelmeta().custom_metadata_map)
    with session_scope() as db:
        data = card_data(db, card, metadata)
    split = data.validation
    check_card_split(card, data)
    raw = recording_outputs(session, split, data.spec)
    return calibrate(raw, metadata.calibration), split.y, metadata


@dataclass
class NetworkOnValidation:
    """A model file's card, metadata, onnxruntime session (which also exposes the network's own output), the card's
    training data, and ``network``: the network part's mean output per validation recording, before the blend."""

    card: dict
    metadata: ModelMetadata
    session: ort.InferenceSession
    data: TrainingData
    network: np.ndarray | None  # None: the file holds no network (its weight in the blend was 0)


def network_on_validation(model_path: Path) -> NetworkOnValidation:
    """What the experiments compare against: the file's network output (the graph's ``network/probabilities``,
    before the blend with the features) on its card's validation split."""
    import onnx

    from ecg_training.fusion import NETWORK_OUTPUT

    card = json.loads(model_path.with_name(model_path.name.removesuffix(".onnx") + ".card.json").read_text())
    model = onnx.load(str(model_path))
    n_classes = len(card["classes"])
    has_network = any(NETWORK_OUTPUT in node.output for node in model.graph.node)
    if has_network:
        model.graph.output.append(
            onnx.helper.make_tensor_value_info(NETWORK_OUTPUT, onnx.TensorProto.FLOAT, [None, n_classes])
        )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    metadata = ModelMetadata.from_onnx_props(session.get_modelmeta().custom_metadata_map)
    with session_scope() as db:
        data = card_data(db, card, metadata)
    check_card_split(card, data)
    network = recording_outputs(session, data.validation, data.spec, NETWORK_OUTPUT) if has_network else None
    return NetworkOnValidation(card, metadata, session, data, network)


def recording_outputs(session: ort.InferenceSession, split, spec, output: str | None = None) -> np.ndarray:
    """onnxruntime on every window of ``split`` (with its recording's features where the graph takes them), the
    mean of ``output`` (default: the graph's first output) over each recording's windows, before calibration."""
    windows = RecordingWindows(split, spec)
    owners = windows.owners
    names = {i.name for i in session.get_inputs()}
    outputs = []
    for batch in range(len(windows)):
        rows = owners[batch * windows.batch_size : (batch + 1) * windows.batch_size]
        feeds = {"ecg": windows[batch].astype(np.float32)}
        if "features" in names:
            feeds["features"] = split.features[rows].astype(np.float32)
        outputs.append(session.run(None if output is None else [output], feeds)[0])
    return mean_by_recording(np.concatenate(outputs).astype(np.float64), owners, len(split))


def main(model_path: Path) -> None:
    card_path = model_path.with_name(model_path.name.removesuffix(".onnx") + ".card.json")
    card = json.loads(card_path.read_text())
    probabilities, y, metadata = validation_probabilities(model_path, card)
    classes = list(metadata.classes)
    figures = evaluate(
        probabilities, y, classes, list(metadata.normal_classes), list(metadata.unreadable_classes), metadata.threshold
    )
    recorded = card["metrics"]["validation"]["confusion_matrix"]
    if figures["confusion_matrix"] != recorded:
        raise SystemExit(f"validation confusion matrix {figures['confusion_matrix']} is not the card's {recorded}")
    abnormal = [i for i, name in enumerate(classes) if name in metadata.abnormal_classes]
    histogram = bucket_counts(probabilities[:, abnormal].sum(axis=1))
    card["metrics"]["validation"]["p_abnormal_histogram"] = histogram
    card_path.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    print(f"{card_path}: validation p_abnormal histogram {histogram} ({len(y)} recordings)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
