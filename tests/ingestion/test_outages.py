"""Ingestion through outages and crashes, on real Postgres (behind a TCP proxy the test cuts), Azurite and Celery:
a database outage is waited out and the job goes on; one that outlasts the attempts ends the CLI with one line and
the job failed with the reason; a killed worker's job is taken up by another worker. Every recording once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.engine import make_url

from ecg_ingestion.upload import upload_dataset
from ecg_shared.db import session_scope
from ecg_shared.jobs.ingestion import IngestionJob, get_ingestion_job, ingestion_job_view, requeue_stale_ingestion_jobs
from tests.ingestion.conftest import connection_source, unique_name, wait_until
from tests.ingestion.test_ingestion_jobs import duplicates, stored
from tests.support.processes import start_process
from tests.support.stack import claim_redis_db, redis_base_url
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

ECG = str(Path(sys.executable).parent / "ecg")
TOTAL = 160
SLOW_JOB = {  # one download at a time, small batches: a job that lasts long enough to be interrupted
    "ECG_INGEST_BATCH_SIZE": "5",
    "ECG_INGEST_CONCURRENCY": "1",
    "ECG_INGEST_DECODE_WORKERS": "1",
    "ECG_INGEST_HEARTBEAT_S": "0.5",
    "ECG_INGEST_STALE_AFTER_S": "8",  # 3 s flaked on a loaded 2-core machine: heartbeats late, a live job requeued
}


@pytest.fixture(scope="module")
def big_container(azurite, data_dir, database_url) -> str:
    container = unique_name("outage")
    upload_dataset(data_dir / "cinc2017", connection_source(azurite, container), "wfdb", limit=TOTAL)
    return container


@pytest.fixture
def database_proxy(database_url):
    url = make_url(database_url)
    proxy = TcpProxy(url.host, url.port or 5432).start()
    yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    proxy.close()


def job_env(azurite, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECG_INGEST_")}
    env.update(
        {
            "ECG_DATABASE_URL": database_url,
            "ECG_INGEST_CONNECTION_STRING": azurite.connection_string,
            "PYTHONUNBUFFERED": "1",
            **SLOW_JOB,
            **extra,
        }
    )
    return env


def job_of(dataset: str) -> IngestionJob:
    with session_scope() as session:
        return session.scalars(select(IngestionJob).where(IngestionJob.dataset == dataset)).one()


def start_cli(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([ECG, "ingest", *args], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def test_a_database_outage_is_waited_out_and_the_job_goes_on(azurite, big_container, database_proxy, tmp_path):
    proxy, proxied_url = database_proxy
    dataset = unique_name("db-outage")
    log = tmp_path / "ingest.log"
    process = start_cli(
        job_env(azurite, proxied_url), log, "-d", dataset, "-c", big_container, "--manifest", "manifest.xlsx", "--json"
    )
    try:
        wait_until(lambda: len(stored(dataset)) >= 15, timeout=90, what="the first batches to be stored")
        proxy.cut()
        # the batch retries (about 15 s) run out: the attempt stops, and the process tries again after a pause
        wait_until(lambda: "try 2 of 5" in log.read_text(), timeout=60, what="the first attempt to stop", interval=0.2)
        assert job_of(dataset).status == "running"
        proxy.restore()
        assert process.wait(timeout=180) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
    output = log.read_text()
    assert "Traceback" not in output and "database unavailable (OperationalError)" in output
    view = json.loads(output.strip().splitlines()[-1])
    assert (view["status"], view["attempts"], view["listed"]) == ("succeeded", 2, TOTAL)
    assert view["stored"] + view["skipped"] == TOTAL and view["error"] is None
    assert len(stored(dataset)) == TOTAL and duplicates(dataset) == 0


def test_an_outage_outlasting_the_attempts_ends_the_cli_with_one_line_and_the_job_failed(
    azurite, big_container, database_proxy, database_url, tmp_path
):
    proxy, proxied_url = database_proxy
    dataset = unique_name("db-gone")
    log = tmp_path / "ingest.log"
    env = job_env(azurite, proxied_url, ECG_INGEST_MAX_ATTEMPTS="2")
    process = start_cli(env, log, "-d", dataset, "-c", big_container, "--manifest", "manifest.xlsx")
    try:
        wait_until(lambda: len(stored(dataset)) >= 15, timeout=90, what="the first batches to be stored")
        proxy.cut()
        assert process.wait(timeout=120) == 1
    finally:
        if process.poll() is None:
            process.kill()
    output = log.read_text()
    assert "Traceback" not in output, output[-3000:]
    job_id = job_of(dataset).id
    assert f"error: ingestion job {job_id} gave up after 2 attempts: database unavailable" in output

    # the database is back: the job, whose process is gone, does not stay running
    proxy.restore()
    assert job_of(dataset).status == "running"
    wait_until(lambda: _reap(3) and job_of(dataset).status == "failed", timeout=30, what="the reaper", interval=0.5)
    job = job_of(dataset)
    assert "it ran in the foreground" in job.error and f"ecg ingest --resume {job_id}" in job.error

    # and goes on where it stopped when resumed with the credential
    result = subprocess.run(
        [ECG, "ingest", "--resume", str(job_id), "--json"],
        env=job_env(azurite, database_url, ECG_INGEST_BATCH_SIZE="50"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout.strip().splitlines()[-1])
    assert view["status"] == "succeeded" and view["skipped"] >= 15
    assert len(stored(dataset)) == TOTAL and duplicates(dataset) == 0


def test_the_cli_without_a_database_prints_one_line(azurite, big_container, database_proxy):
    proxy, proxied_url = database_proxy
    proxy.cut()
    for args in (["-d", unique_name("no-db"), "-c", big_container], ["--resume", "1"]):
        result = subprocess.run(
            [ECG, "ingest", *args], env=job_env(azurite, proxied_url), capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert (
            result.stderr.strip().splitlines()[-1].startswith(f"error: database unavailable at 127.0.0.1:{proxy.port}/")
        ), result.stderr


def _reap(stale_after_s: float) -> bool:
    with session_scope() as session:
        requeue_stale_ingestion_jobs(session, stale_after_s, 5, lambda job_id: None)
    return True


def start_worker(name: str, env: dict[str, str]):
    name = f"{name}-{uuid.uuid4().hex[:8]}"
    argv = ["celery", "-A", "ecg_ingestion.worker", "worker", "-Q", "ingestion", "--concurrency", "1"]
    argv += ["--loglevel", "INFO", "-n", f"{name}@%h", "--without-gossip", "--without-mingle"]
    return start_process(name, argv, env=env)


def test_a_killed_workers_job_is_taken_up_by_another_worker(request, azurite, big_container, database_url):
    claim = claim_redis_db()
    request.addfinalizer(claim.release)
    env = job_env(
        azurite,
        database_url,
        ECG_REDIS_URL=f"{redis_base_url()}/{claim.index}",
        ECG_SECRET_KEY=Fernet.generate_key().decode(),
    )
    dataset = unique_name("worker-killed")
    first = start_worker("ingestion-worker-killed", env)
    try:
        queued = subprocess.run(
            [ECG, "ingest", "--queue", "-d", dataset, "-c", big_container, "--manifest", "manifest.xlsx"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert queued.returncode == 0, queued.stderr
        job_id = int(queued.stdout.strip())
        wait_until(lambda: len(stored(dataset)) >= 15, timeout=90, what="the first batches to be stored")
    finally:
        first.kill()  # the whole worker: main process, pool process and its decoding processes
    before = len(stored(dataset))
    assert before < TOTAL and job_of(dataset).status == "running"

    second = start_worker("ingestion-worker-successor", env)
    try:
        view = wait_until(lambda: _finished(job_id), timeout=180, what=f"job {job_id} to finish", interval=0.5)
    finally:
        second.stop()
    assert view.status == "succeeded", (view.error, second.log()[-3000:])
    assert view.attempts == 2 and view.skipped >= before and view.stored + view.skipped == TOTAL
    assert len(stored(dataset)) == TOTAL and duplicates(dataset) == 0
    assert "queued again to resume" in second.log()


def test_a_killed_pool_process_is_taken_up_again_by_its_worker(request, azurite, big_container, database_url):
    """SIGKILL of the Celery pool process running the job: the worker's reaper queues it again once its heartbeat is
    stale, and Celery hands the task back too; whichever comes first resumes the job, the other finds it taken. The
    killed process's decoding processes die with it (else they kept its connection and row locks alive in Postgres
    and the new attempt waited on the job's row forever: test_decode_pool.py)."""
    from tests.training.test_worker_crash import pool_children

    claim = claim_redis_db()
    request.addfinalizer(claim.release)
    env = job_env(
        azurite,
        database_url,
        ECG_REDIS_URL=f"{redis_base_url()}/{claim.index}",
        ECG_SECRET_KEY=Fernet.generate_key().decode(),
    )
    dataset = unique_name("child-killed")
    worker = start_worker("ingestion-worker-child-killed", env)
    try:
        queued = subprocess.run(
            [ECG, "ingest", "--queue", "-d", dataset, "-c", big_container, "--manifest", "manifest.xlsx"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert queued.returncode == 0, queued.stderr
        job_id = int(queued.stdout.strip())
        wait_until(lambda: len(stored(dataset)) >= 15, timeout=90, what="the first batches to be stored")
        (child,) = pool_children(worker.process.pid)
        os.kill(child, signal.SIGKILL)
        view = wait_until(lambda: _finished(job_id), timeout=180, what=f"job {job_id} to finish", interval=0.5)
        assert view.status == "succeeded", (view.error, worker.log()[-3000:])
        assert view.attempts == 2 and view.stored + view.skipped == TOTAL
        assert len(stored(dataset)) == TOTAL and duplicates(dataset) == 0
        assert f"ingestion job {job_id}: attempt 2 started" in worker.log()
    finally:
        worker.stop()


def _finished(job_id: int):
    with session_scope() as session:
        job = get_ingestion_job(session, job_id)
        return ingestion_job_view(job, session) if job.status in ("succeeded", "failed") else None


def test_a_storage_outage_is_waited_out_and_the_job_goes_on(azurite, big_container, database_url, tmp_path):
    """Azurite behind a proxy that is cut mid-job: the SDK's retries run out (about 40 s), the attempt stops, the
    next one follows after a pause and finishes the job once storage is back."""
    proxy = TcpProxy("127.0.0.1", azurite.port).start()
    try:
        through_proxy = azurite.connection_string.replace(f":{azurite.port}/", f":{proxy.port}/")
        dataset = unique_name("storage-outage")
        log = tmp_path / "ingest.log"
        env = job_env(azurite, database_url, ECG_INGEST_CONNECTION_STRING=through_proxy)
        process = start_cli(env, log, "-d", dataset, "-c", big_container, "--manifest", "manifest.xlsx", "--json")
        try:
            wait_until(lambda: len(stored(dataset)) >= 15, timeout=90, what="the first batches to be stored")
            proxy.cut()
            wait_until(lambda: "try 2 of 5" in log.read_text(), timeout=120, what="the attempt to stop", interval=0.5)
            assert "storage unreachable" in job_of(dataset).error and job_of(dataset).status == "running"
            proxy.restore()
            assert process.wait(timeout=180) == 0, log.read_text()[-3000:]
        finally:
            if process.poll() is None:
                process.kill()
    finally:
        proxy.close()
    output = log.read_text()
    assert "Traceback" not in output
    view = json.loads(output.strip().splitlines()[-1])
    assert (view["status"], view["attempts"], view["failed"]) == ("succeeded", 2, 0)
    assert len(stored(dataset)) == TOTAL and duplicates(dataset) == 0
