"""Validation split only: would a binary recalibration of ``p_abnormal`` after the model's temperature (Platt scaling,
or isotonic regression) make it better calibrated? Each of 20 random halvings of the card's validation split fits on
one half and measures the ECE (15 bins) on the other, both ways round; the noise floor is the ECE a perfectly
calibrated model would show on a half. The test split is never read.

    ECG_DATABASE_URL=... .venv/bin/python services/training/scripts/experiments/p_abnormal_recalibration.py \\
        models/rhythm-1lead.onnx

The database must hold the card's dataset, imported as for ``drift_reference.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import drift_reference  # the script beside it: the card's validation split, scored by the file

from ecg_shared.calibration import temperature_scale
from ecg_training.calibration import ece_if_calibrated, expected_calibration_error, fit_temperature


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))[:, None]


def main(model_path: Path, halvings: int = 20) -> None:
    card = json.loads(model_path.with_name(model_path.name.removesuffix(".onnx") + ".card.json").read_text())
    calibrated, y, metadata = drift_reference.validation_probabilities(model_path, card)
    raw = temperature_scale(calibrated, 1.0 / metadata.calibration["temperature"])  # the file's temperature undone
    classes = list(metadata.classes)
    abnormal = [i for i, c in enumerate(classes) if c in metadata.abnormal_classes]
    readable = ~np.isin(y, [i for i, c in enumerate(classes) if c in metadata.unreadable_classes])
    truth = np.isin(y, abnormal).astype(float)
    methods = ("none", "temperature", "temperature + Platt", "temperature + isotonic")
    ece: dict[str, list[float]] = {method: [] for method in methods}
    floors = []
    rng = np.random.default_rng(0)
    for _ in range(halvings):
        order = rng.permutation(len(y))
        halves = order[: len(y) // 2], order[len(y) // 2 :]
        for fit, held in (halves, halves[::-1]):
            t = fit_temperature(raw[fit], y[fit])["temperature"]
            fit, held = fit[readable[fit]], held[readable[held]]
            score_fit = temperature_scale(raw[fit], t)[:, abnormal].sum(axis=1)
            score_held = temperature_scale(raw[held], t)[:, abnormal].sum(axis=1)
            platt = LogisticRegression(C=1e6).fit(_logit(score_fit), truth[fit])
            isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(score_fit, truth[fit])
            ece["none"].append(expected_calibration_error(raw[held][:, abnormal].sum(axis=1), truth[held]))
            ece["temperature"].append(expected_calibration_error(score_held, truth[held]))
            ece["temperature + Platt"].append(
                expected_calibration_error(platt.predict_proba(_logit(score_held))[:, 1], truth[held])
            )
            ece["temperature + isotonic"].append(expected_calibration_error(isotonic.predict(score_held), truth[held]))
            floors.append(ece_if_calibrated(score_held))
    print(f"{model_path.name}: {len(y)} validation recordings, {2 * halvings} fits on a half, ECE on the other half")
    for method, values in ece.items():
        print(f"  {method:24s} p_abnormal ECE {np.mean(values):.4f} (sd {np.std(values):.4f})")
    print(f"  noise floor on a half     {np.mean(floors):.4f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
