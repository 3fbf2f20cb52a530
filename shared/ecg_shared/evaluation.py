"""Evaluation of per-recording class probabilities: per-class and macro precision, recall, F1 and ROC AUC, the
confusion matrix, and the normal/abnormal call (sensitivity and specificity at a threshold chosen on validation).

P(abnormal) of a recording is the sum of the probabilities of its abnormal classes (neither normal nor unreadable);
recordings whose true class is unreadable are left out of the normal/abnormal figures.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score, roc_curve


def abnormal_score(probabilities: np.ndarray, classes: list[str], abnormal_classes: list[str]) -> np.ndarray:
    columns = [classes.index(c) for c in abnormal_classes]
    return probabilities[:, columns].sum(axis=1)


def _readable_abnormal(y: np.ndarray, classes: list[str], normal: list[str], unreadable: list[str]):
    readable = np.array([classes[i] not in unreadable for i in y], dtype=bool)
    is_abnormal = np.array([classes[i] not in normal for i in y], dtype=bool)
    return readable, is_abnormal


def choose_threshold(
    probabilities: np.ndarray, y: np.ndarray, classes: list[str], normal: list[str], unreadable: list[str]
) -> float:
    """The P(abnormal) threshold maximising Youden's J (sensitivity + specificity - 1); 0.5 if undefined."""
    abnormal = [c for c in classes if c not in normal and c not in unreadable]
    readable, is_abnormal = _readable_abnormal(y, classes, normal, unreadable)
    truth = is_abnormal[readable]
    if truth.all() or not truth.any():
        return 0.5
    fpr, tpr, thresholds = roc_curve(truth, abnormal_score(probabilities, classes, abnormal)[readable])
    best = int(np.argmax(tpr - fpr))
    return float(np.clip(thresholds[best], 0.0, 1.0))


def _safe_auc(truth: np.ndarray, score: np.ndarray) -> float | None:
    if truth.all() or not truth.any():
        return None
    return float(roc_auc_score(truth, score))


def evaluate(
    probabilities: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    normal: list[str],
    unreadable: list[str],
    threshold: float,
) -> dict:
    """All figures for one split; ``y`` holds class indices into ``classes``."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = probabilities.argmax(axis=1)
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=labels, zero_division=0)
    per_class = {}
    for i, name in enumerate(classes):
        per_class[name] = {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "auc": _safe_auc(y == i, probabilities[:, i]),
            "support": int(support[i]),
        }
    aucs = [v["auc"] for v in per_class.values() if v["auc"] is not None]
    readable_classes = [c for c in classes if c not in unreadable]
    metrics = {
        "n": len(y),
        "accuracy": float(np.mean(predicted == y)) if len(y) else 0.0,
        "per_class": per_class,
        "macro": {
            "precision": float(np.mean(precision)),
            "recall": float(np.mean(recall)),
            "f1": float(np.mean(f1)),
            "auc": float(np.mean(aucs)) if aucs else None,
        },
        # Mean F1 over the classes that are not "unreadable": the CinC 2017 challenge score for N, A, O, ~.
        "mean_f1_readable": float(np.mean([per_class[c]["f1"] for c in readable_classes])),
        "confusion_matrix": {"classes": classes, "matrix": confusion_matrix(y, predicted, labels=labels).tolist()},
    }
    abnormal = [c for c in classes if c not in normal and c not in unreadable]
    readable, is_abnormal = _readable_abnormal(y, classes, normal, unreadable)
    score = abnormal_score(probabilities, classes, abnormal)[readable]
    truth = is_abnormal[readable]
    called = score >= threshold
    positives, negatives = int(truth.sum()), int((~truth).sum())
    metrics["normal_vs_abnormal"] = {
        "abnormal_classes": abnormal,
        "n": int(readable.sum()),
        "auc": _safe_auc(truth, score),
        "threshold": float(threshold),
        "sensitivity": float((called & truth).sum() / positives) if positives else None,
        "specificity": float((~called & ~truth).sum() / negatives) if negatives else None,
    }
    return metrics


def primary_metric(metrics: dict, n_classes: int) -> tuple[str, float]:
    """The figure a job selects epochs by and auto-promotion compares: mean F1 over readable classes when there are
    more than two classes, else the normal-vs-abnormal ROC AUC."""
    if n_classes > 2:
        return "mean_f1_readable", float(metrics["mean_f1_readable"])
    auc = metrics["normal_vs_abnormal"]["auc"]
    return "auc_abnormal", float(auc if auc is not None else 0.0)
