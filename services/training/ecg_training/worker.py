"""The training worker: ``celery -A ecg_training.worker worker -Q training --concurrency 1``.

One task, a thin wrapper over :func:`ecg_training.runner.run_training_job`. Scale out by starting workers on more
hosts against the same Redis, Postgres and artifact store (which keeps the jobs' checkpoints). Each worker also runs
the reaper: every few seconds it queues again the running jobs whose heartbeat is older than
``ECG_TRAINING_STALE_AFTER_S`` (their worker is gone), to resume from their checkpoint on whichever worker takes them,
or marks them failed once they used ``ECG_TRAINING_MAX_ATTEMPTS``.
"""

from __future__ import annotations

import logging

from celery.signals import worker_ready, worker_shutdown

from ecg_shared.celery_app import celery_app, reap_periodically, reaper_interval_s
from ecg_shared.db import session_scope
from ecg_shared.jobs.training import TRAINING_TASK, enqueue_training_job, requeue_stale_training_jobs
from ecg_shared.settings import get_settings

log = logging.getLogger(__name__)
app = celery_app
_reaper: list = []


@celery_app.task(name=TRAINING_TASK, acks_late=True, reject_on_worker_lost=True)
def run_training_job_task(job_id: int) -> str:
    from ecg_training.runner import run_training_job

    return run_training_job(int(job_id))


def reap_lost_jobs() -> tuple[list[int], list[int]]:
    """Queue again (or fail) the jobs whose worker stopped sending heartbeats; returns (queued, failed) ids."""
    settings = get_settings()
    with session_scope() as session:
        queued, failed = requeue_stale_training_jobs(
            session, settings.training_stale_after_s, settings.training_max_attempts, enqueue_training_job
        )
    if queued:
        log.warning("training jobs %s lost their worker (no heartbeat): queued again to resume", queued)
    if failed:
        log.warning("training jobs %s lost their worker with no attempts left: marked failed", failed)
    return queued, failed


@worker_ready.connect
def _start_reaper(**_) -> None:
    interval = reaper_interval_s(get_settings().training_stale_after_s)
    _reaper.append(reap_periodically("training-job-reaper", interval, reap_lost_jobs))


@worker_shutdown.connect
def _stop(**_) -> None:
    for stop in _reaper:
        stop.set()
