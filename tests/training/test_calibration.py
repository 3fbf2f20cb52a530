"""Calibration: temperature scaling fitted on one split holds on another; ECE and Brier measure it."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_shared.calibration import calibrate, temperature_scale
from ecg_training.calibration import (
    brier_score,
    ece_if_calibrated,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)


def overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from calibrated probabilities, then the probabilities sharpened (temperature 0.5)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.0, (n, 3))
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in truth])
    return temperature_scale(truth, 0.5), y


def test_temperature_fitted_on_one_split_recovers_the_sharpening_and_calibrates_another():
    p_fit, y_fit = overconfident(4000, 0)
    calibration = fit_temperature(p_fit, y_fit)
    assert calibration["method"] == "temperature" and calibration["temperature"] == pytest.approx(2.0, rel=0.1)
    p, y = overconfident(4000, 1)
    calibrated = calibrate(p, calibration)
    assert np.allclose(calibrated.sum(axis=1), 1) and (calibrated.argmax(axis=1) == p.argmax(axis=1)).all()
    for k in range(3):
        before = expected_calibration_error(p[:, k], y == k)
        after = expected_calibration_error(calibrated[:, k], y == k)
        assert after < 0.03 < before
        assert brier_score(calibrated[:, k], y == k) < brier_score(p[:, k], y == k)


def test_no_calibration_leaves_probabilities_alone_and_unknown_methods_are_refused():
    p = np.array([[0.2, 0.8]])
    assert np.array_equal(calibrate(p, None), p)
    with pytest.raises(ValueError, match="unknown calibration method"):
        calibrate(p, {"method": "isotonic"})


def test_reliability_bins_and_the_noise_floor():
    score = np.array([0.05, 0.05, 0.95, 0.95, 0.5, 0.5])
    truth = np.array([0, 0, 1, 1, 1, 0])
    bins = reliability_bins(score, truth, n_bins=10)
    assert sum(b["count"] for b in bins) == 6 and bins[0]["observed"] == 0.0 and bins[9]["observed"] == 1.0
    assert expected_calibration_error(score, truth, n_bins=10) == pytest.approx(0.05 * 4 / 6)
    # a perfectly calibrated model still shows an ECE on few recordings, less on many
    rng = np.random.default_rng(0)
    assert ece_if_calibrated(rng.random(100)) > ece_if_calibrated(rng.random(5000))
