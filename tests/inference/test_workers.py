"""``python -m ecg_inference`` with several worker processes: every worker answers, the same way; a killed worker is
replaced and the service keeps answering; ``/metrics`` counts the requests of all of them."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx

from ecg_shared.formats import zip_wfdb_record
from tests.inference.conftest import start_inference


def _workers(supervisor_pid: int) -> set[int]:
    """uvicorn's worker processes: the supervisor's children started by multiprocessing's spawn."""
    children = set()
    for task in Path(f"/proc/{supervisor_pid}/task").iterdir():
        children |= {int(pid) for pid in (task / "children").read_text().split()}
    return {pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()}


def _answering_pids(url: str, wanted: int, tries: int = 200) -> set[int]:
    """The pids of the workers that answer ``/healthz`` on fresh connections, until ``wanted`` have answered."""
    seen: set[int] = set()
    for _ in range(tries):
        seen.add(httpx.get(f"{url}/healthz", timeout=10).json()["pid"])
        if len(seen) >= wanted:
            break
    return seen


def _answer(url: str, upload: tuple[str, bytes]) -> dict:
    response = httpx.post(f"{url}/classify", files={"file": upload}, timeout=60)  # a fresh connection each time
    assert response.status_code == 200, response.text
    body = response.json()
    return {"verdict": body["verdict"], "models": body["models"], "recording": body["recording"]}


def _classified(url: str) -> float:
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    match = re.search(r'^ecg_inference_requests_total\{status="200"\} (\S+)$', metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_two_workers_answer_alike_and_a_killed_one_is_replaced(inference_registry, azurite, data_dir, wellnest_sample):
    uploads = [
        ("wellnest.raw", wellnest_sample.read_bytes()),
        ("A00001.zip", zip_wfdb_record(data_dir / "cinc2017" / "A00001.hea")),
        ("00001_lr.zip", zip_wfdb_record(data_dir / "ptbxl" / "00001_lr.hea")),
    ]
    service = start_inference(
        "inference-workers", inference_registry, azurite.connection_string, ECG_INFERENCE_WORKERS="2"
    )
    try:
        deadline = time.monotonic() + 60
        while len(_workers(service.process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = _workers(service.process.pid)
        assert len(workers) == 2, f"expected 2 worker processes, found {workers}"
        assert _answering_pids(service.url, 2) == workers  # the kernel hands connections to both

        answers = [_answer(service.url, upload) for upload in uploads for _ in range(4)]
        assert all(answer == answers[i // 4 * 4] for i, answer in enumerate(answers)), "workers answered differently"
        assert _classified(service.url) == len(answers)  # summed over both workers' metrics

        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while (killed in _workers(service.process.pid) or len(_workers(service.process.pid)) < 2) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.2)
        replaced = _workers(service.process.pid)
        assert len(replaced) == 2 and killed not in replaced, f"worker {killed} not replaced: {replaced}"
        assert [_answer(service.url, upload) for upload in uploads] == answers[::4]
        assert _classified(service.url) >= len(answers) + len(uploads)  # the dead worker's counts are kept
    finally:
        service.stop()
