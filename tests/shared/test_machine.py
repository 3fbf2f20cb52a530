"""What model cards and benchmark reports say a computation ran on."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest

from ecg_shared.machine import cpu_model


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/cpuinfo is Linux's")
def test_cpu_model_is_the_processor_linux_names():
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    names = {line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")}
    # where Linux names none (some ARM kernels), the platform's own word for it
    assert cpu_model() in names if names else cpu_model() == (platform.processor() or None)
