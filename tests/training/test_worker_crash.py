"""A training worker killed mid-job (SIGKILL) registers nothing, and the next worker marks the job failed."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from ecg_shared.db import session_scope
from ecg_shared.db.models import ModelVersion
from ecg_shared.jobs.training import TRAINING_TASK, get_training_job
from tests.support.stack import claim_redis_db, redis_base_url
from tests.training.conftest import start_training_worker, unique_name
from tests.training.test_worker import SMALL_JOB, enqueue, wait_for

pytestmark = pytest.mark.slow


def forget_unacked_task(redis_url: str, job_id: int) -> int:
    """Drop the killed worker's unacknowledged task from Redis, so that no later test run sharing this Redis database
    gets it redelivered (after the visibility timeout). Returns how many entries were removed."""
    import base64
    import json

    import redis

    client = redis.Redis.from_url(redis_url)
    removed = 0
    for tag, payload in client.hgetall("unacked").items():
        message = json.loads(payload)[0]
        args = json.loads(base64.b64decode(message["body"]))[0] if message.get("body") else None
        if message.get("headers", {}).get("task") == TRAINING_TASK and args == [job_id]:
            removed += client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
    return removed


def test_a_killed_worker_leaves_no_model_and_the_job_is_marked_failed(request, training_env, ptbxl_slice):
    """SIGKILL mid-job: nothing is registered; the next worker finds the stale job and marks it failed."""
    # a Redis database of its own, so that no other worker can take the job
    claim = claim_redis_db()
    request.addfinalizer(claim.release)
    own_redis = {**training_env, "ECG_REDIS_URL": f"{redis_base_url()}/{claim.index}"}
    env = {**own_redis, "ECG_TRAINING_JOB_LOST_AFTER_S": "3"}
    doomed = start_training_worker("training-worker-killed", own_redis)
    name = unique_name("ptbxl-killed")
    try:
        job_id = enqueue(own_redis, "-d", ptbxl_slice, "--name", name, "--epochs", "400", *SMALL_JOB)
        wait_for(job_id, lambda v: v.status == "running" and v.epoch >= 1, doomed)
    finally:
        doomed.kill()
    assert forget_unacked_task(own_redis["ECG_REDIS_URL"], job_id) == 1  # the task was taken and never acknowledged
    with session_scope() as session:
        assert get_training_job(session, job_id).status == "running"
    successor = start_training_worker("training-worker-successor", env)
    try:
        view = wait_for(job_id, lambda v: v.status != "running", successor, timeout=60)
    finally:
        successor.stop()
    assert view.status == "failed" and "no heartbeat" in view.error
    with session_scope() as session:
        assert session.scalars(select(ModelVersion).where(ModelVersion.name == name)).all() == []
