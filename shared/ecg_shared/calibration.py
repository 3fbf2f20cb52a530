"""Calibration of a model's class probabilities, as the model stores it (``ModelMetadata.calibration``).

Training fits it on the validation split (``ecg_training.calibration``); the service, ``ecg classify`` and the
trainer's own evaluation apply it with :func:`calibrate` to a recording's probabilities (the mean over its windows),
so every probability the platform shows is the calibrated one.

Methods:
- ``temperature``: ``softmax(log(p) / T)`` (Guo et al. 2017); one parameter, the most likely class unchanged.

>>> import numpy as np
>>> calibrate(np.array([[0.9, 0.1]]), {"method": "temperature", "temperature": 2.0}).round(3)
array([[0.75, 0.25]])
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-7  # probabilities are clipped here before the logarithm


def calibrate(probabilities: np.ndarray, calibration: dict | None) -> np.ndarray:
    """Calibrated copies of ``probabilities`` (n, n_classes); unchanged when ``calibration`` is None."""
    p = np.asarray(probabilities, dtype=np.float64)
    if not calibration:
        return p
    method = calibration.get("method")
    if method == "temperature":
        return temperature_scale(p, float(calibration["temperature"]))
    raise ValueError(f"unknown calibration method {method!r}")


def temperature_scale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(np.clip(probabilities, EPSILON, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=-1, keepdims=True)
