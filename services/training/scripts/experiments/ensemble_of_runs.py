"""Validation split only: would averaging the networks of several runs of one recipe on one split (``ecg train ...
--seed N --split-seed S --output DIR``) pay? Each file's own network output (the graph's ``network/probabilities``)
on the validation split, every pair and the whole group averaged, then blended with boosted trees (seed 0) on the
training split's features as the trainer blends, the weight chosen on validation. Beside them, each run's own card
figures. The test split is never read.

    ECG_DATABASE_URL=... .venv/bin/python services/training/scripts/experiments/ensemble_of_runs.py \\
        runs/seed0/rhythm-seed0.onnx runs/seed1/rhythm-seed1.onnx runs/seed2/rhythm-seed2.onnx
"""

from __future__ import annotations

import json
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import drift_reference  # the script beside it: the card's recipe and split

from ecg_shared.db import session_scope
from ecg_shared.evaluation import evaluate
from ecg_shared.model_metadata import ModelMetadata
from ecg_training.fusion import NETWORK_OUTPUT, choose_blend_weight, fit_feature_model


def network_output(path: Path, n_classes: int) -> tuple[ort.InferenceSession, ModelMetadata]:
    model = onnx.load(str(path))
    model.graph.output.append(
        onnx.helper.make_tensor_value_info(NETWORK_OUTPUT, onnx.TensorProto.FLOAT, [None, n_classes])
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session, ModelMetadata.from_onnx_props(session.get_modelmeta().custom_metadata_map)


def main(paths: list[Path]) -> None:
    cards = {p: json.loads(p.with_name(p.name.removesuffix(".onnx") + ".card.json").read_text()) for p in paths}
    splits = {json.dumps(c["data"]["class_counts"], sort_keys=True) for c in cards.values()}
    if len(splits) != 1:
        raise SystemExit("the runs were not trained on one split (their cards' class counts differ)")
    data, networks = None, {}
    for path, card in cards.items():
        session, metadata = network_output(path, len(card["classes"]))
        if data is None:
            with session_scope() as db:
                data = drift_reference.card_data(db, card, metadata)
        networks[path] = drift_reference.recording_outputs(session, data.validation, data.spec, NETWORK_OUTPUT)

    def score(p: np.ndarray) -> float:
        figures = evaluate(
            p,
            data.validation.y,
            data.classes,
            list(metadata.normal_classes),
            list(metadata.unreadable_classes),
            metadata.threshold,
        )
        return figures["mean_f1_readable" if len(data.classes) > 2 else "auc_abnormal"]

    trees = fit_feature_model(data.train.features, data.train.y, len(data.classes), 0).predict(data.validation.features)
    for path, card in cards.items():
        v = card["evaluation"]["validation"]
        print(f"{path.stem}: network alone {v['network_alone']:.4f}, exported {v['exported']:.4f} ({v['metric']})")
    for k in range(2, len(paths) + 1):
        for group in combinations(paths, k):
            averaged = np.mean([networks[p] for p in group], axis=0)
            weight, scores = choose_blend_weight(averaged, trees, score)
            names = " + ".join(p.stem for p in group)
            print(f"average of {names}: network {score(averaged):.4f}, fused {scores[weight]:.4f} (weight {weight})")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
