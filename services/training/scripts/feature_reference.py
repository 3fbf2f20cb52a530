"""Back-fill the feature reference of a bundled model trained before explanations by measurement existed.

A model fused with beat features stores each feature's median over its training split's normal recordings
(``ModelMetadata.feature_reference``, :func:`ecg_training.fusion.feature_reference`): the explanation sets one
measurement at a time to it and reports how much the answer moves (``ecg_inference.explain``). The bundled models
were trained before that, so their files lack it. This recomputes it the way the trainer does: the card's recipe
selects and splits the same recordings (checked against the card's training and validation class counts), each
training recording's features are computed at the model's own features version, and the medians are written into the
ONNX file's metadata; nothing else in the file changes. `make models` writes the reference itself; this is only for
files made before.

    ECG_DATABASE_URL=... .venv/bin/python services/training/scripts/feature_reference.py models/normal-12lead.onnx

The database must hold the card's dataset (``ecg dataset import``), imported in the same order as when it was trained.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import drift_reference  # the script beside it: the card's recipe and split
import onnx

from ecg_shared.db import session_scope
from ecg_shared.model_metadata import ModelMetadata
from ecg_training.fusion import feature_reference


def main(model_path: Path) -> None:
    card = json.loads(model_path.with_name(model_path.name.removesuffix(".onnx") + ".card.json").read_text())
    model = onnx.load(str(model_path))
    props = {p.key: p.value for p in model.metadata_props}
    metadata = ModelMetadata.from_onnx_props(props)
    if metadata.features is None:
        raise SystemExit(f"{model_path} takes no features: nothing to back-fill")
    with session_scope() as db:
        data = drift_reference.card_data(db, card, metadata)
    drift_reference.check_card_split(card, data)
    normal = [data.classes.index(c) for c in metadata.normal_classes]
    metadata.feature_reference = feature_reference(data.train.features, data.train.y, normal)
    props.update(metadata.to_onnx_props())
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(model_path))
    n_normal = int(sum((data.train.y == i).sum() for i in normal))
    named = dict(zip(metadata.feature_spec.names, metadata.feature_reference, strict=True))
    print(f"{model_path}: the reference of {len(named)} features from {n_normal} normal training recordings")
    print(f"  e.g. {dict(list(named.items())[:3])}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
