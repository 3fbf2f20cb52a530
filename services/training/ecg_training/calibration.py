"""Fitting calibration on the validation split, and measuring it: reliability bins, expected calibration error
(ECE, 15 equal-width bins) and the Brier score. Applying it is ``ecg_shared.calibration.calibrate``."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from ecg_shared.calibration import EPSILON, temperature_scale

ECE_BINS = 15


def fit_temperature(probabilities: np.ndarray, y: np.ndarray) -> dict:
    """The temperature minimising the negative log-likelihood of the true classes ``y`` (class indices)."""
    p = np.asarray(probabilities, dtype=np.float64)
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-np.mean(np.log(np.clip(temperature_scale(p, np.exp(log_t))[rows, y], EPSILON, 1.0))))

    best = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return {"method": "temperature", "temperature": round(float(np.exp(best.x)), 6), "fitted_on": "validation"}


def reliability_bins(score: np.ndarray, truth: np.ndarray, n_bins: int = ECE_BINS) -> list[dict]:
    """Equal-width bins of a predicted probability: its mean, the observed frequency, and the count in each."""
    score, truth = np.asarray(score, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(score, edges[1:-1], right=True), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        members = which == b
        count = int(members.sum())
        bins.append(
            {
                "lower": round(float(edges[b]), 4),
                "upper": round(float(edges[b + 1]), 4),
                "count": count,
                "mean_predicted": round(float(score[members].mean()), 4) if count else None,
                "observed": round(float(truth[members].mean()), 4) if count else None,
            }
        )
    return bins


def expected_calibration_error(score: np.ndarray, truth: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Sum over bins of |mean predicted - observed| weighted by the bin's share of the recordings."""
    bins = reliability_bins(score, truth, n_bins)
    n = sum(b["count"] for b in bins)
    if not n:
        return 0.0
    return float(sum(b["count"] * abs(b["mean_predicted"] - b["observed"]) for b in bins if b["count"]) / n)


def ece_if_calibrated(score: np.ndarray, n_bins: int = ECE_BINS, draws: int = 200, seed: int = 0) -> float:
    """The ECE a perfectly calibrated model would still show on this many recordings with these predictions (the
    mean over ``draws`` outcome sets drawn from the predicted probabilities): the noise floor of the estimate."""
    rng = np.random.default_rng(seed)
    score = np.asarray(score, dtype=np.float64)
    return float(
        np.mean([expected_calibration_error(score, rng.random(score.size) < score, n_bins) for _ in range(draws)])
    )


def brier_score(score: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean((np.asarray(score, dtype=np.float64) - np.asarray(truth, dtype=np.float64)) ** 2))


def calibration_report(
    raw: np.ndarray, calibrated: np.ndarray, y: np.ndarray, classes: list[str], abnormal: np.ndarray, readable
) -> dict:
    """ECE and Brier of P(abnormal) and of each class's probability, before and after calibration; the reliability
    bins of calibrated P(abnormal). ``abnormal``: column indices of the abnormal classes; ``readable``: mask of the
    recordings whose true class is not unreadable (the normal/abnormal figures leave the others out)."""
    truth_abnormal = np.isin(y, abnormal)[readable]

    def p_abnormal(p: np.ndarray) -> np.ndarray:
        return p[:, abnormal].sum(axis=1)[readable]

    report = {
        "ece_bins": ECE_BINS,
        "p_abnormal": {
            "ece_before": expected_calibration_error(p_abnormal(raw), truth_abnormal),
            "ece_after": expected_calibration_error(p_abnormal(calibrated), truth_abnormal),
            "brier_before": brier_score(p_abnormal(raw), truth_abnormal),
            "brier_after": brier_score(p_abnormal(calibrated), truth_abnormal),
            "ece_if_perfectly_calibrated": ece_if_calibrated(p_abnormal(calibrated)),
            "bins": reliability_bins(p_abnormal(calibrated), truth_abnormal),
        },
        "classes": {},
    }
    for i, name in enumerate(classes):
        truth = y == i
        report["classes"][name] = {
            "ece_before": expected_calibration_error(raw[:, i], truth),
            "ece_after": expected_calibration_error(calibrated[:, i], truth),
            "brier_before": brier_score(raw[:, i], truth),
            "brier_after": brier_score(calibrated[:, i], truth),
        }
    return report
