"""Validation split only, cross-fitted: can the blend of network and trees be beaten by (a) a stacker over the network's
and the trees' log-probabilities (and the features), or (b) per-class multipliers of the calibrated probabilities
chosen for the primary metric? Each is fitted on four fifths of the card's validation split and scored on the fifth
it did not see (5 stratified folds, 3 repetitions), against the trainer's blend with its weight chosen the same
way. Stackers: L2 logistic regression, and scikit-learn's HistGradientBoosting (depth 3, 200 rounds at 0.05, L2 1.0).
Multipliers: classes after the first, each in 0.6-2.5 (7 values), only for more than two classes (with two, the
threshold already is the decision rule). The test split is never read.

    ECG_DATABASE_URL=... .venv/bin/python services/training/scripts/experiments/stacking.py models/rhythm-1lead.onnx
"""

from __future__ import annotations

import itertools
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import drift_reference  # the script beside it: the card's recipe and split

from ecg_shared.calibration import calibrate
from ecg_shared.evaluation import evaluate, primary_metric
from ecg_shared.model_metadata import OUTPUT_NAME
from ecg_training.fusion import choose_blend_weight, fit_feature_model

MULTIPLIERS = (0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5)


def _proba(model, x: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(x), n_classes))
    out[:, model.classes_] = model.predict_proba(x)
    return out


def main(model_path: Path) -> None:
    warnings.filterwarnings("ignore")
    run = drift_reference.network_on_validation(model_path)
    card, metadata, session, data, network = run.card, run.metadata, run.session, run.data, run.network
    k = len(card["classes"])
    validation, y = data.validation, data.validation.y
    exported = calibrate(
        drift_reference.recording_outputs(session, validation, data.spec, OUTPUT_NAME), metadata.calibration
    )
    trees = fit_feature_model(data.train.features, data.train.y, k, 0).predict(validation.features)

    def score(p: np.ndarray, rows: np.ndarray) -> float:
        """The primary metric of ``p``, the probabilities of the validation recordings ``rows``."""
        figures = evaluate(
            p, y[rows], data.classes, list(metadata.normal_classes), list(metadata.unreadable_classes), 0.5
        )
        return primary_metric(figures, k)[1]

    every = np.arange(len(y))
    print(
        f"{model_path.name}: {len(y)} validation recordings; network {score(network, every):.4f}, trees "
        f"{score(trees, every):.4f}, exported model {score(exported, every):.4f} (its blend weight chosen on all)"
    )
    logs = np.hstack([np.log(network + 1e-6), np.log(trees + 1e-6)])
    inputs = {"log-probabilities": logs, "log-probabilities + features": np.hstack([logs, validation.features])}
    combos = list(itertools.product(MULTIPLIERS, repeat=k - 1)) if k > 2 else []

    def best_multipliers(rows: np.ndarray) -> np.ndarray:
        chosen = max(
            combos,
            key=lambda m: (round(score(exported[rows] * np.array((1.0, *m)), rows), 6), -np.abs(np.log(m)).sum()),
        )
        return np.array((1.0, *chosen))

    names = ["blend", *(f"stacker {m} on {n}" for n in inputs for m in ("logistic", "boosted"))]
    names += ["class multipliers"] if combos else []
    results: dict[str, list[float]] = {name: [] for name in names}
    for repetition in range(3):
        out_of_fold = {name: np.zeros_like(network) for name in names}
        for fit_rows, held in StratifiedKFold(5, shuffle=True, random_state=repetition).split(network, y):
            weight, _ = choose_blend_weight(network[fit_rows], trees[fit_rows], lambda p, r=fit_rows: score(p, r))
            out_of_fold["blend"][held] = weight * network[held] + (1 - weight) * trees[held]
            for n, x in inputs.items():
                logistic = LogisticRegression(max_iter=3000).fit(x[fit_rows], y[fit_rows])
                out_of_fold[f"stacker logistic on {n}"][held] = _proba(logistic, x[held], k)
                boosted = HistGradientBoostingClassifier(
                    max_depth=3, learning_rate=0.05, max_iter=200, l2_regularization=1.0, random_state=repetition
                ).fit(x[fit_rows], y[fit_rows])
                out_of_fold[f"stacker boosted on {n}"][held] = _proba(boosted, x[held], k)
            if combos:
                out_of_fold["class multipliers"][held] = exported[held] * best_multipliers(fit_rows)
        for name in names:
            results[name].append(score(out_of_fold[name], every))
    for name, values in results.items():
        print(f"  {name:45s} out of fold {np.mean(values):.4f}  ({' / '.join(f'{v:.4f}' for v in values)})")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
