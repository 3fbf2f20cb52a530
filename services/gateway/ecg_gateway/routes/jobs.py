"""Ingestion and training jobs: start (API key), list, one job's progress, cancel a training job.

The job logic lives in ``ecg_shared.jobs`` (shared with ``ecg ingest`` / ``ecg train`` and the workers). A job row
is committed first, then its task is queued; if the queue (Redis) cannot take it, the job is closed with that
reason and the answer is 503, so no job waits forever for a task that was never sent.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel

from ecg_gateway.errors import COMMON_ERRORS, INT64_MAX, KEYED_ERRORS, error_responses
from ecg_gateway.security import require_api_key
from ecg_shared.db import session_scope
from ecg_shared.jobs import ingestion, training

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["jobs"], responses=error_responses(*COMMON_ERRORS))
JobId = Annotated[int, Path(ge=1, le=INT64_MAX, description="the job's id")]

_QUEUE_DOWN = "the job queue (Redis) is unreachable, so the job could not be queued; try again shortly"


class TrainingJobList(BaseModel):
    jobs: list[training.TrainingJobView]


class IngestionJobList(BaseModel):
    jobs: list[ingestion.IngestionJobView]


# --- Training ----------------------------------------------------------------------------------------------------


@router.get("/training-jobs", response_model=TrainingJobList, summary="Training jobs, newest first")
def list_training_jobs(limit: int = Query(50, ge=1, le=500)) -> TrainingJobList:
    with session_scope() as session:
        jobs = training.list_training_jobs(session, limit)
        return TrainingJobList(jobs=[training.training_job_view(job) for job in jobs])


@router.post(
    "/training-jobs",
    response_model=training.TrainingJobView,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(require_api_key)],
    responses=error_responses(*KEYED_ERRORS),
    summary="Start a training job",
)
def start_training_job(request: training.TrainingJobRequest) -> training.TrainingJobView:
    with session_scope() as session:
        job_id = training.create_training_job(session, request).id
    try:
        training.enqueue_training_job(job_id)
    except Exception as exc:
        log.error("training job %s could not be queued: %s", job_id, type(exc).__name__)
        with session_scope() as session:
            job = training.cancel_training_job(session, job_id)
            job.error = "could not be queued: the job queue (Redis) was unreachable"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, _QUEUE_DOWN) from None
    with session_scope() as session:
        return training.training_job_view(training.get_training_job(session, job_id))


def _training_job(session, job_id: int) -> training.TrainingJob:
    job = training.get_training_job(session, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"training job {job_id} not found")
    return job


@router.get(
    "/training-jobs/{job_id}",
    response_model=training.TrainingJobView,
    responses=error_responses(404),
    summary="One training job: status, progress per epoch, metrics and confusion matrix when done",
)
def get_training_job(job_id: JobId) -> training.TrainingJobView:
    with session_scope() as session:
        return training.training_job_view(_training_job(session, job_id))


@router.post(
    "/training-jobs/{job_id}/cancel",
    response_model=training.TrainingJobView,
    dependencies=[Depends(require_api_key)],
    responses=error_responses(*KEYED_ERRORS, 404, 409),
    summary="Cancel a queued job, or ask a running one to stop",
)
def cancel_training_job(job_id: JobId) -> training.TrainingJobView:
    with session_scope() as session:
        try:
            job = training.cancel_training_job(session, job_id)
        except training.TrainingJobNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        except training.TrainingJobStateError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        return training.training_job_view(job)


# --- Ingestion ---------------------------------------------------------------------------------------------------


@router.get("/ingestion-jobs", response_model=IngestionJobList, summary="Ingestion jobs, newest first")
def list_ingestion_jobs(limit: int = Query(50, ge=1, le=500)) -> IngestionJobList:
    with session_scope() as session:
        return IngestionJobList(
            jobs=[ingestion.ingestion_job_view(j, session) for j in ingestion.list_ingestion_jobs(session, limit)]
        )


@router.post(
    "/ingestion-jobs",
    response_model=ingestion.IngestionJobView,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(require_api_key)],
    responses=error_responses(*KEYED_ERRORS),
    summary="Start an ingestion job: read recordings from an Azure Blob container into the database",
)
def start_ingestion_job(request: ingestion.IngestionJobRequest) -> ingestion.IngestionJobView:
    try:
        with session_scope() as session:
            job_id = ingestion.create_ingestion_job(session, request).id
    except ingestion.SecretKeyMissing as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"ingestion jobs are not configured on this server: {exc}"
        ) from None
    try:
        ingestion.enqueue_ingestion_job(job_id)
    except Exception as exc:
        log.error("ingestion job %s could not be queued: %s", job_id, type(exc).__name__)
        with session_scope() as session:
            ingestion.finish_job(
                session,
                ingestion.get_ingestion_job(session, job_id),
                error="could not be queued: the job queue (Redis) was unreachable",
            )
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, _QUEUE_DOWN) from None
    with session_scope() as session:
        return ingestion.ingestion_job_view(ingestion.get_ingestion_job(session, job_id), session)


@router.get(
    "/ingestion-jobs/{job_id}",
    response_model=ingestion.IngestionJobView,
    responses=error_responses(404),
    summary="One ingestion job: status, counts, the first failures",
)
def get_ingestion_job(job_id: JobId) -> ingestion.IngestionJobView:
    with session_scope() as session:
        try:
            job = ingestion.get_ingestion_job(session, job_id)
        except ingestion.IngestionJobNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        return ingestion.ingestion_job_view(job, session)
