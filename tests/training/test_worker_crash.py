"""Training workers killed mid-job (SIGKILL): the job is queued again by a live worker's reaper and resumes from its
last checkpoint, until its attempts run out; then it fails with the reason. Nothing is ever half-registered."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from sqlalchemy import select

from ecg_shared.db import session_scope
from ecg_shared.db.models import ModelVersion
from ecg_shared.jobs.training import cancel_training_job
from tests.support.stack import claim_redis_db, redis_base_url
from tests.training.conftest import start_training_worker, unique_name
from tests.training.test_worker import SMALL_JOB, enqueue, wait_for

pytestmark = pytest.mark.slow

# The reaper queues a job again once its heartbeat (every 0.5 s here) is 3 s old.
FAST_REAPER = {"ECG_TRAINING_STALE_AFTER_S": "3", "ECG_TRAINING_MAX_ATTEMPTS": "2"}


@pytest.fixture
def own_env(request, training_env):
    """A Redis database of the test's own, so that no other worker can take its jobs."""
    claim = claim_redis_db()
    request.addfinalizer(claim.release)
    return {**training_env, "ECG_REDIS_URL": f"{redis_base_url()}/{claim.index}", **FAST_REAPER}


def pool_children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def assert_resumed(progress, before: list) -> None:
    """Epochs run on without a restart: those of attempt 1 (at least the ones seen before the kill, unchanged), then
    those of attempt 2."""
    assert [p.epoch for p in progress] == list(range(1, len(progress) + 1))
    attempts = [p.attempt for p in progress]
    first = attempts.count(1)
    assert first >= len(before) and attempts == [1] * first + [2] * (len(progress) - first), attempts
    assert progress[: len(before)] == before


def test_a_killed_pool_process_is_resumed_by_its_worker_from_the_last_epoch(own_env, ptbxl_slice):
    worker = start_training_worker("training-worker-child-killed", own_env)
    name = unique_name("ptbxl-child-killed")
    try:
        job_id = enqueue(own_env, "-d", ptbxl_slice, "--name", name, "--epochs", "400", *SMALL_JOB)
        before = wait_for(job_id, lambda v: v.status == "running" and v.epoch >= 2, worker)
        (child,) = pool_children(worker.process.pid)
        os.kill(child, signal.SIGKILL)
        resumed = wait_for(job_id, lambda v: v.attempts == 2 and v.epoch > before.epoch + 1, worker, timeout=120)
        assert resumed.status == "running"
        assert_resumed(resumed.progress, before.progress)
        assert "resuming from epoch" in worker.log()
        with session_scope() as session:
            cancel_training_job(session, job_id)
        view = wait_for(job_id, lambda v: v.status != "running", worker, timeout=30)
    finally:
        worker.stop()
    assert view.status == "cancelled" and view.attempts == 2


def test_killed_workers_jobs_resume_elsewhere_until_the_attempts_run_out(own_env, ptbxl_slice):
    """SIGKILL of the whole worker: another worker resumes the job (attempt 2); kill that one too and the third marks
    the job failed with the reason. Nothing is registered."""
    name = unique_name("ptbxl-killed")
    first = start_training_worker("training-worker-killed", own_env)
    try:
        job_id = enqueue(own_env, "-d", ptbxl_slice, "--name", name, "--epochs", "400", *SMALL_JOB)
        before = wait_for(job_id, lambda v: v.status == "running" and v.epoch >= 1, first)
    finally:
        first.kill()

    second = start_training_worker("training-worker-successor", own_env)
    try:
        resumed = wait_for(job_id, lambda v: v.attempts == 2 and v.epoch > before.epoch + 1, second, timeout=120)
        assert resumed.status == "running" and resumed.worker_hostname
        assert_resumed(resumed.progress, before.progress)
    finally:
        second.kill()

    third = start_training_worker("training-worker-last", own_env)
    try:
        view = wait_for(job_id, lambda v: v.status != "running" and v.status != "queued", third, timeout=120)
    finally:
        third.stop()
    assert view.status == "failed" and view.attempts == 2
    assert "lost during attempt 2" in view.error and "gave up after 2 attempts" in view.error
    with session_scope() as session:
        assert session.scalars(select(ModelVersion).where(ModelVersion.name == name)).all() == []
