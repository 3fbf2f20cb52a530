"""The ingestion worker: ``celery -A ecg_ingestion.worker worker -Q ingestion --concurrency 2 --loglevel INFO``.

A thin Celery task over :func:`ecg_ingestion.runner.run_ingestion_job`, which rides out outages itself. Each worker
also runs the reaper: every few seconds it queues again the running jobs whose heartbeat is older than
``ECG_INGEST_STALE_AFTER_S`` (their worker is gone), to resume on whichever worker takes them, or fails them with the
reason. Log records pass through :class:`ecg_ingestion.logs.RedactSecrets`.
"""

from __future__ import annotations

import logging

from celery.signals import after_setup_logger, after_setup_task_logger, worker_ready, worker_shutdown

from ecg_ingestion.logs import install_redaction, quiet_azure_logs
from ecg_shared.celery_app import celery_app, reap_periodically, reaper_interval_s
from ecg_shared.db import session_scope
from ecg_shared.jobs.ingestion import (
    INGESTION_TASK,
    IngestionJobNotFound,
    enqueue_ingestion_job,
    requeue_stale_ingestion_jobs,
)
from ecg_shared.settings import get_settings

log = logging.getLogger(__name__)

app = celery_app
_reaper: list = []


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_logs(logger, **_kwargs) -> None:
    install_redaction(logger)
    quiet_azure_logs()


@celery_app.task(name=INGESTION_TASK, acks_late=True, reject_on_worker_lost=True)
def run_ingestion_job_task(job_id: int) -> dict:
    """Run or resume the job; one that is finished, or that a live worker runs (a task delivered twice), is left
    alone."""
    from ecg_ingestion.runner import IngestionUnavailable, run_ingestion_job

    try:
        view = run_ingestion_job(int(job_id))
    except IngestionJobNotFound:
        log.error("ingestion job %s not found in the database: task dropped", job_id)
        return {"job_id": job_id, "status": "not found"}
    except IngestionUnavailable as exc:  # the reaper takes the job up once the database is back
        log.error("%s", exc)
        return {"job_id": job_id, "status": "unavailable"}
    return {"job_id": view.id, "status": view.status, "stored": view.stored, "failed": view.failed}


def reap_lost_jobs() -> tuple[list[int], list[int]]:
    """Queue again (or fail) the jobs whose worker stopped sending heartbeats; returns (queued, failed) ids."""
    settings = get_settings()
    with session_scope() as session:
        queued, failed = requeue_stale_ingestion_jobs(
            session, settings.ingest_stale_after_s, settings.ingest_max_attempts, enqueue_ingestion_job
        )
    if queued:
        log.warning("ingestion jobs %s lost their worker (no heartbeat): queued again to resume", queued)
    if failed:
        log.warning("ingestion jobs %s lost their worker and cannot go on: marked failed", failed)
    return queued, failed


@worker_ready.connect
def _start_reaper(**_) -> None:
    interval = reaper_interval_s(get_settings().ingest_stale_after_s)
    _reaper.append(reap_periodically("ingestion-job-reaper", interval, reap_lost_jobs))


@worker_shutdown.connect
def _stop(**_) -> None:
    for stop in _reaper:
        stop.set()
