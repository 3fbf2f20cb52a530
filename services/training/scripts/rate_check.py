"""Does a 12-lead model depend on the rate it was trained at? The card's test split, each recording read back from
Postgres, classified through the service's own path (``ecg_inference.classify``: checks, cleaning at the recording's
rate, resampling to the model's, windows, features, onnxruntime, calibration) as stored and upsampled to 500 Hz
(``ecg_shared.preprocessing.resample``: scipy's polyphase resampling), with the AUC of ``p_abnormal`` for both and
the largest change of ``p_abnormal`` between them. The split is the one the card reports its test figures on;
nothing here selects or fits anything.

    ECG_DATABASE_URL=... .venv/bin/python services/training/scripts/rate_check.py models/normal-12lead.onnx [RATE]

The database must hold the card's dataset (``ecg dataset import``), imported as when the model was trained.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))

import drift_reference  # the script beside it: the card's recipe and split

from ecg_inference.classify import classify_prepared, prepare_recording
from ecg_inference.models import load_bundled
from ecg_shared.db import Recording, session_scope
from ecg_shared.formats.record import Record
from ecg_shared.preprocessing import resample


def at_rate(record: Record, rate: float) -> Record:
    signal = resample(record.signal, record.sampling_rate, rate)
    return Record(signal, rate, list(record.lead_names), dict(record.metadata))


def p_abnormal(record: Record, models, name: str) -> float:
    prepared = prepare_recording(record, models, explain=False, only=name)
    answer = classify_prepared([prepared], [time.perf_counter()])[0]
    return next(result.p_abnormal for result in answer.models if result.name == name)


def main(model_path: Path, rate: float = 500.0) -> None:
    name = model_path.stem
    card = json.loads(model_path.with_name(f"{name}.card.json").read_text())
    models = load_bundled(model_path.parent, [name])
    metadata = models.models[name].metadata
    with session_scope() as db:
        data = drift_reference.card_data(db, card, metadata)
        test = data.test
        counts = {c: int((test.y == i).sum()) for i, c in enumerate(data.classes)}
        if counts != card["data"]["class_counts"]["test"]:
            raise SystemExit(f"not the card's test split: class counts {counts}")
        rows = {r.id: r.to_record() for r in db.query(Recording).filter(Recording.id.in_(test.recording_ids))}
    abnormal = [i for i, c in enumerate(data.classes) if c in metadata.abnormal_classes]
    truth = np.isin(test.y, abnormal)
    stored = np.array([p_abnormal(rows[rid], models, name) for rid in test.recording_ids])
    upsampled = np.array([p_abnormal(at_rate(rows[rid], rate), models, name) for rid in test.recording_ids])
    native = rows[test.recording_ids[0]].sampling_rate
    print(f"{name}: {len(truth)} test recordings")
    print(f"  as stored ({native:g} Hz): AUC {roc_auc_score(truth, stored):.4f}")
    print(f"  upsampled to {rate:g} Hz: AUC {roc_auc_score(truth, upsampled):.4f}")
    change = np.abs(upsampled - stored)
    print(f"  p_abnormal change: median {np.median(change):.4f}, max {change.max():.4f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), *(float(v) for v in sys.argv[2:3]))
