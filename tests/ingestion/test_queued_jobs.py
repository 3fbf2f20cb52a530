"""Queued ingestion: `ecg ingest --queue` -> Redis -> a real Celery ingestion worker process -> Postgres.

Each run holds its own Redis database (the lock of tests/support/stack.py), so parallel runs do not take each
other's jobs.
The SAS token must appear nowhere: not in the worker's DEBUG log, the CLI's output, the job view or the table.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from ecg_shared.db import Recording, session_scope
from ecg_shared.jobs.ingestion import IngestionJob, get_ingestion_job, ingestion_job_view
from tests.ingestion.conftest import make_sas, unique_name, wait_until
from tests.support.processes import start_process
from tests.support.stack import claim_redis_db, redis_base_url

ECG = str(Path(sys.executable).parent / "ecg")


@pytest.fixture(scope="module")
def queue_env(azurite, database_url) -> Iterator[dict[str, str]]:
    claim = claim_redis_db()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECG_INGEST_")}
    env.update(
        ECG_DATABASE_URL=database_url,
        ECG_REDIS_URL=f"{redis_base_url()}/{claim.index}",
        ECG_SECRET_KEY=Fernet.generate_key().decode(),
        PYTHONUNBUFFERED="1",
    )
    yield env
    claim.release()


@pytest.fixture(scope="module")
def ingestion_worker(queue_env):
    name = f"ingestion-worker-{uuid.uuid4().hex[:8]}"
    worker = start_process(
        name,
        [
            "celery",
            "-A",
            "ecg_ingestion.worker",
            "worker",
            "-Q",
            "ingestion",
            "--concurrency",
            "1",
            "--loglevel",
            "DEBUG",
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        env=queue_env,
    )
    try:
        wait_until(lambda: " ready." in worker.log() or not worker.alive(), timeout=60, what="the worker to start")
        assert worker.alive(), worker.log()[-3000:]
        yield worker
    finally:
        worker.stop()


def enqueue(env: dict[str, str], *args: str) -> int:
    result = subprocess.run([ECG, "ingest", "--queue", *args], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


def finished(job_id: int):
    with session_scope() as session:
        job = get_ingestion_job(session, job_id)
        return ingestion_job_view(job, session) if job.status in ("succeeded", "failed") else None


def test_queued_job_runs_on_the_worker_and_the_sas_token_appears_nowhere(
    azurite, cinc_container, queue_env, ingestion_worker
):
    sas = make_sas(azurite, cinc_container)
    signature = sas.split("sig=")[1].split("&")[0]
    env = {**queue_env, "ECG_INGEST_SAS_TOKEN": sas}
    dataset = unique_name("queued")
    job_id = enqueue(
        env, "-d", dataset, "-c", cinc_container, "--account-url", azurite.account_url, "--manifest", "manifest.xlsx"
    )
    view = wait_until(lambda: finished(job_id), timeout=90, what=f"job {job_id} to finish", interval=0.2)
    assert view.status == "succeeded", (view.error, ingestion_worker.log()[-3000:])
    assert (view.listed, view.stored, view.failed) == (20, 20, 0)
    with session_scope() as session:
        assert len(session.scalars(select(Recording.id).where(Recording.dataset == dataset)).all()) == 20
        assert session.get(IngestionJob, job_id).credential_encrypted is None  # erased once the job succeeded

    bad = make_sas(azurite, cinc_container, key="d3JvbmcgYWNjb3VudCBrZXkgZm9yIHRoZSB0ZXN0cyAxMjM0NTY3ODkwMTI=")
    bad_signature = bad.split("sig=")[1].split("&")[0]
    failed_id = enqueue(
        {**queue_env, "ECG_INGEST_SAS_TOKEN": bad},
        "-d",
        unique_name("queued-bad"),
        "-c",
        cinc_container,
        "--account-url",
        azurite.account_url,
        "--prefix",
        "",
    )
    failed = wait_until(lambda: finished(failed_id), timeout=60, what=f"job {failed_id} to finish", interval=0.2)
    assert failed.status == "failed"
    assert failed.error.startswith("access denied while listing blobs: the SAS token is invalid or expired")

    log = ingestion_worker.log()
    assert f"ingestion job {job_id} succeeded" in log and f"ingestion job {failed_id} failed" in log
    for secret in (signature, bad_signature):
        assert secret not in log
        assert secret not in view.model_dump_json() and secret not in failed.model_dump_json()
