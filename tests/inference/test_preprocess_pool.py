"""The preprocessing processes: a killed worker is replaced and the service keeps answering, with the same answers."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from ecg_shared.formats import zip_wfdb_record
from tests.inference.conftest import start_inference


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _preprocess_workers(service_pid: int) -> list[int]:
    """The fork server's children: the pool's worker processes."""
    workers = []
    for child in _children(service_pid):
        if b"multiprocessing.forkserver" in Path(f"/proc/{child}/cmdline").read_bytes():
            workers += _children(child)
    return workers


def _answer(client: httpx.Client, upload: tuple[str, bytes]) -> dict:
    response = client.post("/classify", files={"file": upload})
    assert response.status_code == 200, response.text
    body = response.json()
    return {"verdict": body["verdict"], "models": body["models"], "recording": body["recording"]}


def test_killed_preprocessing_worker_is_replaced(inference_registry, azurite, data_dir, wellnest_sample):
    uploads = [
        ("wellnest.raw", wellnest_sample.read_bytes()),
        ("A00001.zip", zip_wfdb_record(data_dir / "cinc2017" / "A00001.hea")),
        ("00001_lr.zip", zip_wfdb_record(data_dir / "ptbxl" / "00001_lr.hea")),
    ]
    service = start_inference(
        "inference-pool", inference_registry, azurite.connection_string, ECG_PREPROCESS_WORKERS="2"
    )
    try:
        with httpx.Client(base_url=service.url, timeout=60) as client:
            before = [_answer(client, upload) for upload in uploads]
            workers = _preprocess_workers(service.process.pid)
            assert len(workers) == 2, f"expected 2 preprocessing processes, found {workers}"

            log_before = len(service.log())
            for pid in workers:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)  # let the executor see its workers gone, so the next request finds the pool broken

            after = [_answer(client, upload) for upload in uploads]
            assert after == before
            replaced = _preprocess_workers(service.process.pid)
            assert replaced and not set(replaced) & set(workers)
            assert "a preprocessing process died; starting a new pool" in service.log()[log_before:]
    finally:
        service.stop()
