"""Which lead of a 12-lead recording should the single-lead rhythm model read? It learned from CinC 2017's AliveCor
recordings (lead I: the device's electrodes lie under the fingers of each hand). Every PTB-XL record (12-lead, 100
Hz, labelled Normal or Abnormal), the Wellnest sample and every 12-lead clinical sample file go through the bundled
rhythm model twice, as a single-lead recording of its lead I and of its lead II; the model's file is used as it is
(a single-lead recording serves a single-lead model whatever the lead's name). One hypothesis, tested once: nothing
is tuned.

    .venv/bin/python services/training/scripts/experiments/rhythm_lead_on_ptbxl.py models/rhythm-1lead.onnx
    ECG_DATABASE_URL=... .venv/bin/python services/training/scripts/experiments/rhythm_lead_on_ptbxl.py \
        models/rhythm-1lead.onnx --without-test-split-of models/normal-12lead.onnx

The second form leaves out the 12-lead model's test split (rebuilt from its card as ``drift_reference.py`` does,
from a database holding PTB-XL), so that the combined verdict could still be measured there without bias.

PTB-XL's Normal records are normal ECGs in sinus rhythm: a rhythm model calling one abnormal raises a false alarm.
Its Abnormal records include rhythm disorders among many others, so the share called abnormal there is no
sensitivity, only a check that the model does not go quiet.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from ecg_inference.classify import classify_prepared, prepare_recording
from ecg_inference.models import ModelSet, load_model
from ecg_shared.formats import EcgFormatError, Record, read_ecg
from ecg_shared.settings import get_settings


def as_single_lead(record: Record, lead: str) -> Record:
    return Record(record.signal[:, [record.lead_names.index(lead)]], record.sampling_rate, ["ECG"], {})


def answer(models: ModelSet, record: Record):
    (result,) = classify_prepared([prepare_recording(record, models, explain=False)], [time.perf_counter()])
    return result.models[0]


def test_split_files(model_path: Path) -> set[str]:
    """The file names (without suffix) of a bundled model's test split, rebuilt from its card."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import drift_reference  # the script beside this folder: the card's recipe and split

    return set(drift_reference.split_files(model_path, "test"))


def main(model_path: Path, leave_out: set[str] = frozenset()) -> None:
    model = load_model(model_path.read_bytes(), expected_name=model_path.stem)
    models = ModelSet({model.name: model})
    data = get_settings().data_dir
    labels, calls, p = [], {"I": [], "II": []}, {"I": [], "II": []}
    headers = [h for h in sorted((data / "ptbxl").glob("*.hea")) if h.stem not in leave_out]
    print(f"{len(headers)} PTB-XL records" + (f" ({len(leave_out)} of a test split left out)" if leave_out else ""))
    for header in headers:
        record = read_ecg(header)
        labels.append(record.label != "Normal")
        for lead in calls:
            result = answer(models, as_single_lead(record, lead))
            calls[lead].append(result.call == "abnormal")
            p[lead].append(result.p_abnormal)
    abnormal = np.array(labels)
    normal = ~abnormal
    flagged = {lead: np.array(values) for lead, values in calls.items()}
    for lead in calls:
        print(
            f"lead {lead}: AUC Normal vs Abnormal {roc_auc_score(abnormal, p[lead]):.3f}; called abnormal: "
            f"{flagged[lead][normal].mean():.3f} of {normal.sum()} Normal records (false alarms), "
            f"{flagged[lead][abnormal].mean():.3f} of {abnormal.sum()} Abnormal ones"
        )
    only_i = int((flagged["I"] & ~flagged["II"] & normal).sum())
    only_ii = int((flagged["II"] & ~flagged["I"] & normal).sum())
    rng = np.random.default_rng(0)
    rows = np.flatnonzero(normal)
    differences = []
    for _ in range(2000):
        sample = rng.choice(rows, len(rows))
        differences.append(flagged["II"][sample].mean() - flagged["I"][sample].mean())
    low, high = np.percentile(differences, [2.5, 97.5])
    print(
        f"false alarms, lead II minus lead I: {flagged['II'][normal].mean() - flagged['I'][normal].mean():+.3f} "
        f"(95% bootstrap {low:+.3f} to {high:+.3f}); Normal records flagged by I only {only_i}, by II only "
        f"{only_ii}, exact McNemar p = {binomtest(only_i, only_i + only_ii).pvalue:.1e}"
    )
    for path in [*sorted((data / "wellnest").glob("*.raw")), *sorted((data / "formats").glob("*/*"))]:
        try:
            record = read_ecg(path)
        except EcgFormatError:
            continue
        if {"I", "II"} <= set(record.lead_names):
            by_lead = {lead: answer(models, as_single_lead(record, lead)) for lead in ("I", "II")}
            print(
                f"  {path.name[:40]:40s} "
                + "  ".join(f"{lead}: {r.predicted_class} {r.p_abnormal:.2f}" for lead, r in by_lead.items())
            )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--without-test-split-of":
        main(Path(sys.argv[1]), test_split_files(Path(sys.argv[3])))
    else:
        main(Path(sys.argv[1]))
