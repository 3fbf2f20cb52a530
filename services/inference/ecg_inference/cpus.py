"""How many CPUs the service may use and how many worker processes share them (no onnxruntime import, so the
launcher's supervisor process stays small)."""

from __future__ import annotations

import os

from ecg_shared.settings import get_settings


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), not the host's count that onnxruntime would assume."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_processes() -> int:
    """How many processes serve requests (ECG_INFERENCE_WORKERS; 0: one per usable CPU)."""
    return get_settings().inference_workers or usable_cpus()
