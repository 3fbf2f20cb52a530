"""The ingestion worker: ``celery -A ecg_ingestion.worker worker -Q ingestion --concurrency 2 --loglevel INFO``.

A thin Celery task over :func:`ecg_ingestion.runner.run_ingestion_job`; a job whose worker dies is redelivered
(``acks_late``) and resumes. Log records pass through :class:`ecg_ingestion.logs.RedactSecrets`.
"""

from __future__ import annotations

import logging

from celery.signals import after_setup_logger, after_setup_task_logger

from ecg_ingestion.logs import install_redaction, quiet_azure_logs
from ecg_shared.celery_app import celery_app
from ecg_shared.db import session_scope
from ecg_shared.jobs.ingestion import INGESTION_TASK, IngestionJobNotFound, get_ingestion_job

log = logging.getLogger(__name__)

app = celery_app


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_logs(logger, **_kwargs) -> None:
    install_redaction(logger)
    quiet_azure_logs()


@celery_app.task(name=INGESTION_TASK)
def run_ingestion_job_task(job_id: int) -> dict:
    """Run or resume the job; a job that already succeeded (a task delivered twice) is left alone."""
    from ecg_ingestion.runner import run_ingestion_job

    with session_scope() as session:
        try:
            status = get_ingestion_job(session, job_id).status
        except IngestionJobNotFound:
            log.error("ingestion job %s not found in the database: task dropped", job_id)
            return {"job_id": job_id, "status": "not found"}
    if status == "succeeded":
        log.info("ingestion job %s already succeeded: nothing to do", job_id)
        return {"job_id": job_id, "status": status}
    view = run_ingestion_job(job_id)
    return {"job_id": view.id, "status": view.status, "stored": view.stored, "failed": view.failed}
