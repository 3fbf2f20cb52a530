"""Evaluation of per-recording class probabilities: per-class and macro precision, recall, F1 and ROC AUC, the
confusion matrix, and the normal/abnormal call (sensitivity and specificity at a threshold chosen on validation).

P(abnormal) of a recording is the sum of the probabilities of its abnormal classes (neither normal nor unreadable);
recordings whose true class is unreadable are left out of the normal/abnormal figures.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score


def abnormal_score(probabilities: np.ndarray, classes: list[str], abnormal_classes: list[str]) -> np.ndarray:
    columns = [classes.index(c) for c in abnormal_classes]
    return probabilities[:, columns].sum(axis=1)


def _readable_abnormal(y: np.ndarray, classes: list[str], normal: list[str], unreadable: list[str]):
    readable = np.array([classes[i] not in unreadable for i in y], dtype=bool)
    is_abnormal = np.array([classes[i] not in normal for i in y], dtype=bool)
    return readable, is_abnormal


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


# --- The operating point, intervals and subgroups: what the model card reports --------------------------------------

BOOTSTRAP_SAMPLES = 1000
FIXED_SPECIFICITIES = (0.90, 0.95)


def threshold_for_sensitivity(
    probabilities: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    normal: list[str],
    unreadable: list[str],
    sensitivity: float,
) -> float:
    """The highest P(abnormal) threshold whose sensitivity for abnormal reaches ``sensitivity`` (chosen on the
    validation split: the stated operating goal); 0.5 where the split has no abnormal or no normal recording."""
    abnormal = [c for c in classes if c not in normal and c not in unreadable]
    readable, is_abnormal = _readable_abnormal(y, classes, normal, unreadable)
    truth = is_abnormal[readable]
    if truth.all() or not truth.any():
        return 0.5
    scores = np.sort(abnormal_score(probabilities, classes, abnormal)[readable][truth])[::-1]
    needed = int(np.ceil(sensitivity * len(scores)))  # abnormal recordings that must score at or above it
    return float(np.clip(scores[max(needed, 1) - 1], 0.0, 1.0))


def sensitivity_at_specificity(score: np.ndarray, truth: np.ndarray, specificity: float) -> tuple[float, float]:
    """(sensitivity, threshold) at the lowest threshold whose specificity is at least ``specificity``."""
    negatives = np.sort(score[~truth])
    if not negatives.size or not truth.any():
        return float("nan"), float("nan")
    threshold = negatives[min(int(np.ceil(specificity * negatives.size)), negatives.size - 1)]
    if np.mean(negatives < threshold) < specificity:
        threshold = np.nextafter(threshold, np.inf)
    return float(np.mean(score[truth] >= threshold)), float(threshold)


def _point_figures(p: np.ndarray, y: np.ndarray, classes: list[str], normal, unreadable, threshold: float) -> dict:
    """The figures that get intervals, as plain floats (NaN where undefined), fast enough to bootstrap."""
    n_classes = len(classes)
    predicted = p.argmax(axis=1)
    matrix = np.bincount(y * n_classes + predicted, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    true_positive = np.diag(matrix).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(true_positive / matrix.sum(axis=0))
        recall = np.nan_to_num(true_positive / matrix.sum(axis=1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    figures = {}
    for i, name in enumerate(classes):
        figures[f"{name}.precision"], figures[f"{name}.recall"], figures[f"{name}.f1"] = precision[i], recall[i], f1[i]
    readable_classes = [i for i, c in enumerate(classes) if c not in unreadable]
    figures["mean_f1_readable"] = float(np.mean(f1[readable_classes]))
    abnormal = [c for c in classes if c not in normal and c not in unreadable]
    readable, is_abnormal = _readable_abnormal(y, classes, normal, unreadable)
    score, truth = abnormal_score(p, classes, abnormal)[readable], is_abnormal[readable]
    figures["auc_abnormal"] = _safe_auc(truth, score) if truth.size else None
    figures["auc_abnormal"] = np.nan if figures["auc_abnormal"] is None else figures["auc_abnormal"]
    called = score >= threshold
    figures["sensitivity"] = float(np.mean(called[truth])) if truth.any() else np.nan
    figures["specificity"] = float(np.mean(~called[~truth])) if (~truth).any() else np.nan
    for level in FIXED_SPECIFICITIES:
        figures[f"sensitivity_at_specificity_{level:.2f}"] = sensitivity_at_specificity(score, truth, level)[0]
    return figures


def with_intervals(
    probabilities: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    normal: list[str],
    unreadable: list[str],
    threshold: float,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> dict[str, dict]:
    """Each figure of :func:`_point_figures` with its 95% percentile bootstrap interval (recordings resampled with
    replacement, ``samples`` times, seeded): ``{"value": x, "ci": [low, high]}``."""
    p, y = np.asarray(probabilities, dtype=np.float64), np.asarray(y)
    point = _point_figures(p, y, classes, normal, unreadable, threshold)
    rng = np.random.default_rng(seed)
    draws = {name: [] for name in point}
    for _ in range(samples):
        pick = rng.integers(0, len(y), len(y))
        for name, value in _point_figures(p[pick], y[pick], classes, normal, unreadable, threshold).items():
            draws[name].append(value)
    out = {}
    for name, value in point.items():
        values = np.asarray(draws[name], dtype=np.float64)
        values = values[np.isfinite(values)]
        finite = value is not None and np.isfinite(value)
        out[name] = {
            "value": round(float(value), 4) if finite else None,
            "ci": [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)]
            if finite and values.size
            else None,
        }
    return out


SUBGROUPS = {
    "sex": lambda info: info.get("sex"),
    "age": lambda info: (
        None if info.get("age") is None else ("<40" if info["age"] < 40 else "40-64" if info["age"] < 65 else ">=65")
    ),
    "duration": lambda info: (
        "<30 s" if info["duration_s"] < 29.5 else "30 s" if info["duration_s"] <= 30.5 else ">30 s"
    ),
}


def subgroup_figures(
    probabilities: np.ndarray,
    y: np.ndarray,
    info: list[dict],
    classes: list[str],
    normal: list[str],
    unreadable: list[str],
    threshold: float,
) -> list[dict]:
    """The headline figures within each subgroup the data carries (sex, age band, recording length), with intervals;
    groups of fewer than 20 recordings are listed without figures."""
    rows = []
    for attribute, group_of in SUBGROUPS.items():
        groups = [group_of(i) for i in info]
        present = sorted({g for g in groups if g is not None})
        if len(present) < 2:
            continue
        for group in present:
            members = np.array([g == group for g in groups])
            row = {"attribute": attribute, "group": group, "n": int(members.sum())}
            if members.sum() >= 20:
                figures = with_intervals(
                    probabilities[members], y[members], classes, normal, unreadable, threshold, samples=300
                )
                keep = ("auc_abnormal", "sensitivity", "specificity") + (
                    ("mean_f1_readable",) if len(classes) > 2 else ()
                )
                row.update({name: figures[name] for name in keep})
            rows.append(row)
    return rows
