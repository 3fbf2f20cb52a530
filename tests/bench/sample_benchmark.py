"""A small real benchmark for the runner's tests: summing n floats in Python (baseline) against numpy."""

from __future__ import annotations

import time

import numpy as np


def _rate(function, values, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function(values)
        best = min(best, time.perf_counter() - started)
    return len(values) / best


def run(n: int = 100_000) -> dict:
    values = np.random.default_rng(0).random(n)
    as_list = values.tolist()
    python = _rate(sum, as_list)
    vectorised = _rate(np.sum, values)
    return {
        "name": "sample",
        "rows": [
            {"method": "python sum (baseline)", "n": n, "values_per_s": python},
            {"method": "numpy sum", "n": n, "values_per_s": vectorised},
        ],
        "ratios": {"numpy / python": vectorised / python},
        "targets": {
            "numpy >= 2x python": {"target": 2, "measured": vectorised / python, "met": vectorised > 2 * python}
        },
        "notes": "best of 5 runs each",
        "profile": "sum: 100%",
    }
