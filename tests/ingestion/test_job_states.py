"""Ingestion job states on the real database: claims that tell duplicates from lost workers, heartbeats, and the
reaper that queues lost jobs again or fails them with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet

from ecg_shared.jobs.ingestion import (
    IngestionJobRequest,
    JobRunningElsewhere,
    claim_ingestion_job,
    create_ingestion_job,
    finish_job,
    heartbeat_ingestion_job,
    requeue_stale_ingestion_jobs,
)
from tests.ingestion.test_requests_and_manifests import AZURITE, SAS


def request() -> IngestionJobRequest:
    return IngestionJobRequest(dataset="d", container="ecgs", account_url=AZURITE, sas_token=SAS, prefix="")


def test_claims_leave_live_and_finished_jobs_alone_and_take_over_lost_ones(db_session, ingest_settings):
    ingest_settings(SECRET_KEY=Fernet.generate_key().decode())
    job = create_ingestion_job(db_session, request())
    first = claim_ingestion_job(db_session, job.id, "worker-a", 45)
    assert (first.status, first.attempts, first.worker_hostname) == ("running", 1, "worker-a")
    assert heartbeat_ingestion_job(db_session, job.id, 1)
    # a duplicate delivery while worker-a is alive is left alone; an explicit rerun says who runs it
    assert claim_ingestion_job(db_session, job.id, "worker-b", 45) is None
    with pytest.raises(JobRunningElsewhere, match="running on worker-a"):
        claim_ingestion_job(db_session, job.id, "cli", 45, rerun_finished=True)
    # the same process going on after an outage continues its own job
    assert claim_ingestion_job(db_session, job.id, "worker-a", 45, continuing=1).attempts == 2
    # worker-a dies: its heartbeat goes stale, and the next delivery takes the job over
    job.heartbeat_at = datetime.now(UTC) - timedelta(minutes=5)
    db_session.flush()
    taken = claim_ingestion_job(db_session, job.id, "worker-b", 45)
    assert (taken.attempts, taken.worker_hostname) == (3, "worker-b")
    assert not heartbeat_ingestion_job(db_session, job.id, 2)  # the lost attempt no longer owns it
    finish_job(db_session, job)
    assert claim_ingestion_job(db_session, job.id, "worker-c", 45) is None  # finished: a redelivery does nothing
    assert claim_ingestion_job(db_session, job.id, "cli", 45, rerun_finished=True).attempts == 4
    finish_job(db_session, job, "test over")  # no job of this test is left for another test's reaper


def test_the_reaper_queues_lost_jobs_until_their_attempts_run_out(db_session, ingest_settings):
    ingest_settings(SECRET_KEY=Fernet.generate_key().decode())
    queued = create_ingestion_job(db_session, request())
    foreground = create_ingestion_job(db_session, request(), keep_credential=False)
    alive = create_ingestion_job(db_session, request())
    for job in (queued, foreground, alive):
        claim_ingestion_job(db_session, job.id, "gone", 45)
    for job in (queued, foreground):
        job.heartbeat_at = datetime.now(UTC) - timedelta(minutes=2)
    db_session.flush()
    sent: list[int] = []
    requeued, failed = requeue_stale_ingestion_jobs(db_session, 45, 2, sent.append)
    assert requeued == sent == [queued.id] and failed == [foreground.id] and alive.status == "running"
    assert queued.status == "queued" and "queued again" in queued.error
    assert foreground.status == "failed" and f"ecg ingest --resume {foreground.id}" in foreground.error
    # attempt 2 loses its worker too: no attempts left
    claim_ingestion_job(db_session, queued.id, "gone-too", 45)
    queued.heartbeat_at = datetime.now(UTC) - timedelta(minutes=2)
    db_session.flush()
    assert requeue_stale_ingestion_jobs(db_session, 45, 2, sent.append) == ([], [queued.id])
    assert queued.status == "failed" and "worker gone-too lost during attempt 2" in queued.error
    assert "gave up after 2 attempts" in queued.error and sent == [queued.id]
    finish_job(db_session, alive, "test over")  # no job of this test is left for another test's reaper
