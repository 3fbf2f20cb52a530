"""How much should the rhythm model's evidence count in the verdict of a 12-lead recording? The 12-lead model's
validation split (rebuilt from its card as ``drift_reference.py`` does: never used to train it, and not its test
split) goes through both bundled models as the service runs them; the verdict's combined p_abnormal is recomputed
for weights 0 (the 12-lead model alone), 0.25, 0.5, 0.75 and 1 (Bayes' rule for independent evidence) on the rhythm
model's log-odds against its training prevalence, and scored against the records' Normal / Abnormal labels.

    ECG_DATABASE_URL=... .venv/bin/python services/training/scripts/experiments/verdict_combination.py \\
        models/normal-12lead.onnx

The database must hold PTB-XL (``ecg dataset import ../shared/data/ptbxl --dataset ptbxl``). Paired bootstrap
intervals (2000 resamples) compare weight 1 with the 12-lead model alone.

    ... verdict_combination.py models/normal-12lead.onnx --test

reports, once the weight is chosen, the verdict the service gives (its weight) and the 12-lead model alone on the
12-lead model's test split, each with a 95% bootstrap interval; nothing is chosen there.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import drift_reference  # the script beside this folder: the card's recipe and split
from sqlalchemy import select

from ecg_inference.classify import OTHER_MODEL_WEIGHT, PROBABILITY_FLOOR, classify_prepared, prepare_recording
from ecg_inference.models import load_bundled
from ecg_shared.db import Recording, session_scope
from ecg_shared.formats import read_ecg
from ecg_shared.model_metadata import ModelMetadata
from ecg_training.calibration import expected_calibration_error

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
TEST_FIGURES = (
    ("AUC", roc_auc_score),
    ("Brier", brier_score_loss),
    ("ECE", lambda truth, score: expected_calibration_error(score, truth)),
)


def log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return np.log(p / (1 - p))


def main(model_path: Path, split_name: str = "validation") -> None:
    card = json.loads(model_path.with_name(model_path.name.removesuffix(".onnx") + ".card.json").read_text())
    metadata = ModelMetadata.from_onnx_props({p.key: p.value for p in onnx.load(str(model_path)).metadata_props})
    with session_scope() as db:
        data = drift_reference.card_data(db, card, metadata)
        drift_reference.check_card_split(card, data)
        split = data.test if split_name == "test" else data.validation
        uris = db.scalars(select(Recording.source_uri).where(Recording.id.in_(split.recording_ids))).all()
    models = load_bundled(model_path.parent)
    rhythm = models.models["rhythm-1lead"].metadata
    y, twelve, other, verdict, counted, anchored = [], [], [], [], [], []
    for uri in sorted(uris):
        record = read_ecg(uri.removeprefix("file://") + ".hea")
        (answer,) = classify_prepared([prepare_recording(record, models, explain=False)], [time.perf_counter()])
        by_name = {m.name: m for m in answer.models}
        y.append(record.label != "Normal")
        twelve.append(by_name[metadata.name].p_abnormal)
        other.append(by_name["rhythm-1lead"].p_abnormal)
        verdict.append(np.nan if answer.verdict.p_abnormal is None else answer.verdict.p_abnormal)
        anchored.append(answer.verdict.anchor == metadata.name)
        counted.append(by_name["rhythm-1lead"].call != "unreadable")  # too noisy for it: left out, as the service does
    y, twelve, other = np.array(y), np.array(twelve), np.array(other)
    shift = (log_odds(other) - log_odds(np.array(rhythm.abnormal_prevalence))) * np.array(counted)
    combined = {w: 1 / (1 + np.exp(-(log_odds(twelve) + w * shift))) for w in WEIGHTS}
    verdict, anchored = np.array(verdict), np.array(anchored)
    same = np.allclose(combined[OTHER_MODEL_WEIGHT][anchored], verdict[anchored])
    assert same, "the service's verdict is the weight in classify.py"
    if split_name == "test":
        report_test(y, twelve, verdict)
        return
    assert anchored.all(), "every validation record's verdict starts from the 12-lead model"
    print(
        f"{len(y)} validation records ({int(y.sum())} Abnormal; the rhythm model too noisy to judge on "
        f"{len(y) - sum(counted)}); the service uses weight {OTHER_MODEL_WEIGHT:g}"
    )
    print(f"rhythm model alone: AUC {roc_auc_score(y, other):.3f}, ECE {expected_calibration_error(other, y):.3f}")
    for w, p in combined.items():
        print(
            f"weight {w:g}: AUC {roc_auc_score(y, p):.3f}, Brier {brier_score_loss(y, p):.3f}, "
            f"log-loss {log_loss(y, p):.3f}, ECE {expected_calibration_error(p, y):.3f}"
        )
    rng = np.random.default_rng(0)
    auc, brier = [], []
    for _ in range(2000):
        sample = rng.integers(0, len(y), len(y))
        if y[sample].all() or not y[sample].any():
            continue
        auc.append(roc_auc_score(y[sample], twelve[sample]) - roc_auc_score(y[sample], combined[1.0][sample]))
        brier.append(brier_score_loss(y[sample], combined[1.0][sample]) - brier_score_loss(y[sample], twelve[sample]))
    print(
        "weight 1 against the 12-lead model alone, 95% paired bootstrap: AUC lower by "
        f"{np.percentile(auc, 2.5):+.3f} to {np.percentile(auc, 97.5):+.3f}, Brier higher by "
        f"{np.percentile(brier, 2.5):+.3f} to {np.percentile(brier, 97.5):+.3f}"
    )


def report_test(y: np.ndarray, twelve: np.ndarray, verdict: np.ndarray) -> None:
    """The service's verdict (and the 12-lead model alone) on the records the verdict gives a probability for."""
    answered = ~np.isnan(verdict)
    print(f"{int((~answered).sum())} test records answered unreadable by rule: left out of both rows")
    y, twelve, verdict = y[answered], twelve[answered], verdict[answered]
    rng = np.random.default_rng(0)
    samples = [s for s in (rng.integers(0, len(y), len(y)) for _ in range(2000)) if 0 < y[s].sum() < len(s)]
    print(f"{len(y)} test records ({int(y.sum())} Abnormal); 95% bootstrap intervals over 2000 resamples")
    for name, p in ((f"verdict (weight {OTHER_MODEL_WEIGHT:g})", verdict), ("12-lead model alone", twelve)):
        figures = []
        for metric, fn in TEST_FIGURES:
            low, high = np.percentile([fn(y[s], p[s]) for s in samples], [2.5, 97.5])
            figures.append(f"{metric} {fn(y, p):.3f} [{low:.3f}, {high:.3f}]")
        print(f"{name}: " + ", ".join(figures))


if __name__ == "__main__":
    main(Path(sys.argv[1]), "test" if "--test" in sys.argv[2:] else "validation")
