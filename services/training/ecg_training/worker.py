"""The training worker: ``celery -A ecg_training.worker worker -Q training --concurrency 1``.

One task, a thin wrapper over :func:`ecg_training.runner.run_training_job`. Scale out by starting workers on more
hosts against the same Redis and Postgres. Each worker also marks jobs failed whose worker is gone for good
(heartbeat older than ``ECG_TRAINING_JOB_LOST_AFTER_S``), at start and every few minutes.
"""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutdown

from ecg_shared.celery_app import celery_app
from ecg_shared.db import session_scope
from ecg_shared.jobs.training import TRAINING_TASK, fail_stale_training_jobs
from ecg_shared.settings import get_settings

log = logging.getLogger(__name__)
app = celery_app
_stop_reaper = threading.Event()


@celery_app.task(name=TRAINING_TASK, acks_late=True, reject_on_worker_lost=True)
def run_training_job_task(job_id: int) -> str:
    from ecg_training.runner import run_training_job

    return run_training_job(int(job_id))


def reap_lost_jobs() -> list[int]:
    with session_scope() as session:
        failed = fail_stale_training_jobs(session, get_settings().training_job_lost_after_s)
    if failed:
        log.warning("marked training jobs %s failed: their worker stopped sending heartbeats", failed)
    return failed


def _reaper_loop() -> None:
    interval = min(300.0, max(1.0, get_settings().training_job_lost_after_s / 3))
    while True:
        try:
            reap_lost_jobs()
        except Exception:
            log.warning("could not check for lost training jobs", exc_info=True)
        if _stop_reaper.wait(interval):
            return


@worker_ready.connect
def _start_reaper(**_) -> None:
    threading.Thread(target=_reaper_loop, name="training-job-reaper", daemon=True).start()


@worker_shutdown.connect
def _stop(**_) -> None:
    _stop_reaper.set()
