"""Drift: the distribution of a model version's ``p_abnormal`` on live requests against the one on its validation
split, compared by the population stability index (PSI).

Both distributions are counts over the same ten buckets of ``p_abnormal`` (0-0.1, ..., 0.9-1.0): the inference
service keeps the live ones as the Prometheus histogram ``ecg_inference_p_abnormal{model, version}``, training
stores the validation split's in the version's metrics (``validation.p_abnormal_histogram``).

PSI = sum over buckets of (live share - reference share) x ln(live share / reference share), shares floored at
0.0001 so empty buckets count without dividing by zero. The usual reading: below 0.1 stable, 0.1 to 0.25 a moderate
shift worth a look, above 0.25 a significant shift (the model sees other patients, devices or lead placements than
it was validated on).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

BUCKET_EDGES = tuple(round(0.1 * i, 1) for i in range(1, 11))  # upper edges; 1.0 is the last
SHARE_FLOOR = 1e-4
STABLE, MODERATE = 0.1, 0.25


def bucket_counts(p_abnormal: Iterable[float]) -> list[int]:
    """How many values fall into each of the ten buckets (a value on an edge goes to the lower bucket, as in
    Prometheus's ``le`` buckets)."""
    values = np.clip(np.asarray(list(p_abnormal), dtype=np.float64), 0.0, 1.0)
    indices = np.searchsorted(np.asarray(BUCKET_EDGES), values, side="left")
    return np.bincount(np.minimum(indices, len(BUCKET_EDGES) - 1), minlength=len(BUCKET_EDGES)).astype(int).tolist()


def psi(reference: Sequence[float], live: Sequence[float]) -> float | None:
    """Population stability index of ``live`` counts against ``reference`` counts; None when either is empty."""
    if len(reference) != len(live):
        raise ValueError(f"bucket counts differ in length: {len(reference)} and {len(live)}")
    total_reference, total_live = sum(reference), sum(live)
    if total_reference <= 0 or total_live <= 0:
        return None
    value = 0.0
    for expected, actual in zip(reference, live, strict=True):
        e = max(expected / total_reference, SHARE_FLOOR)
        a = max(actual / total_live, SHARE_FLOOR)
        value += (a - e) * math.log(a / e)
    return value


def reading(value: float | None) -> str:
    if value is None:
        return "no data"
    if value < STABLE:
        return "stable"
    return "moderate shift" if value < MODERATE else "significant shift"
