"""What a person reads instead of the codes the API keeps: clinical names of the class labels and of the calls,
and how strong an explanation's effect must be before the page draws it.

The API answers with the labels as trained (``N``, ``A``, ``O``, ``~``; ``Normal``, ``Abnormal``); the pages get
:func:`page_vocabulary` (embedded in every page by ``ecg_gateway.routes.pages``) and show the names. A label that is
not listed here is shown as it is.
"""

from __future__ import annotations

CLASS_NAMES = {
    # CinC 2017 rhythm classes (rhythm-1lead)
    "N": "normal sinus rhythm",
    "A": "atrial fibrillation",
    "O": "other rhythm",
    "~": "too noisy to classify",
    # normal vs abnormal 12-lead ECG (normal-12lead)
    "Normal": "normal ECG",
    "Abnormal": "abnormal ECG",
    # PTB-XL diagnostic superclasses, for models trained on them
    "NORM": "normal ECG",
    "MI": "myocardial infarction",
    "STTC": "ST/T change",
    "CD": "conduction disturbance",
    "HYP": "hypertrophy",
}

CALL_NAMES = {"normal": "Normal", "abnormal": "Abnormal", "unreadable": "Unreadable"}

# Occlusion importance is a change of probability (0..1). Below EVIDENCE_MIN_IMPORTANCE (one percentage point) a
# segment is not drawn at all; the shading deepens with the magnitude and is full from EVIDENCE_FULL_IMPORTANCE.
EVIDENCE_MIN_IMPORTANCE = 0.01
EVIDENCE_FULL_IMPORTANCE = 0.2


def class_name(label: str) -> str:
    """The clinical name of a class label (the label itself when it has none)."""
    return CLASS_NAMES.get(label, label)


def page_vocabulary() -> dict:
    """Everything above, as the pages' scripts read it (``Vocabulary`` in ``static/api.js``)."""
    return {
        "classes": CLASS_NAMES,
        "calls": CALL_NAMES,
        "evidence": {"min_importance": EVIDENCE_MIN_IMPORTANCE, "full_importance": EVIDENCE_FULL_IMPORTANCE},
    }
