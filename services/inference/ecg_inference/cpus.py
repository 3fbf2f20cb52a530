"""How many CPUs the service may use and how many worker processes share them (no onnxruntime import, so the
launcher's supervisor process stays small)."""

from __future__ import annotations

from ecg_shared.machine import usable_cpus
from ecg_shared.settings import get_settings

__all__ = ["usable_cpus", "worker_processes"]


def worker_processes() -> int:
    """How many processes serve requests (ECG_INFERENCE_WORKERS; 0: one per usable CPU)."""
    return get_settings().inference_workers or usable_cpus()
