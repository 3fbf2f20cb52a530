"""What a computation ran on, for the records that depend on it (model cards, benchmark reports)."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), not the host's count that onnxruntime would assume."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_model() -> str | None:
    """The processor's name (Linux's ``/proc/cpuinfo`` model name, else :func:`platform.processor`), or None."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        if found:
            return found.group(1).strip()
    return platform.processor() or None
