"""Logging: the Azure SDK's per-request header dumps stay out of the workers' INFO logs (a real Azurite upload)."""

from __future__ import annotations

import subprocess
import sys

UPLOAD = """
import logging, sys
logging.basicConfig(level="INFO", stream=sys.stdout)
if sys.argv[1] == "worker":
    import ecg_shared.celery_app  # what every Celery worker (ingestion, training) imports first
from ecg_shared.artifacts import ArtifactStore
ArtifactStore().put("logs-test/probe.bin", b"probe")
print("uploaded")
"""


def _log_of(kind: str) -> str:
    result = subprocess.run([sys.executable, "-c", UPLOAD, kind], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "uploaded" in result.stdout, result.stderr
    return result.stdout


def test_workers_do_not_log_the_azure_sdk_s_request_headers(azurite):
    assert "Request headers:" in _log_of("plain"), "the SDK logs headers at INFO unless quieted"
    worker = _log_of("worker")
    assert "Request headers:" not in worker and "Response headers:" not in worker
