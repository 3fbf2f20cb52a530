"""Stored recordings: a paged list (by dataset and label), one recording's metadata, its trace for plotting."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ecg_gateway.errors import COMMON_ERRORS, INT64_MAX, error_responses
from ecg_gateway.plotting import plot_trace
from ecg_shared.db import Recording, session_scope

router = APIRouter(prefix="/api/recordings", tags=["recordings"], responses=error_responses(*COMMON_ERRORS))
RecordingId = Annotated[int, Path(ge=1, le=INT64_MAX, description="the recording's id")]

_SUMMARY_COLUMNS = (
    Recording.id,
    Recording.dataset,
    Recording.source_uri,
    Recording.format,
    Recording.sampling_rate,
    Recording.lead_names,
    Recording.n_samples,
    Recording.label,
    Recording.created_at,
)


class RecordingSummary(BaseModel):
    id: int
    dataset: str
    source_uri: str
    format: str
    sampling_rate: float
    lead_names: list[str]
    n_samples: int
    duration_s: float
    label: str | None
    created_at: datetime


class RecordingDetail(RecordingSummary):
    source_version: str
    content_sha256: str
    metadata: dict[str, Any]


class RecordingPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[RecordingSummary]


def _summary(row) -> dict:
    data = {column.key: getattr(row, column.key) for column in _SUMMARY_COLUMNS}
    data["duration_s"] = row.n_samples / row.sampling_rate if row.sampling_rate else 0.0
    return data


@router.get("", response_model=RecordingPage, summary="List stored recordings, newest first")
def list_recordings(
    dataset: str | None = Query(None, description="only this data set"),
    label: str | None = Query(None, description="only this label (e.g. N, A, Normal)"),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=INT64_MAX),
) -> RecordingPage:
    filters = []
    if dataset is not None:
        filters.append(Recording.dataset == dataset)
    if label is not None:
        filters.append(Recording.label == label)
    with session_scope() as session:
        total = session.scalar(select(func.count()).select_from(Recording).where(*filters)) or 0
        rows = session.execute(
            select(*_SUMMARY_COLUMNS).where(*filters).order_by(Recording.id.desc()).limit(limit).offset(offset)
        ).all()
    return RecordingPage(total=total, limit=limit, offset=offset, items=[_summary(row) for row in rows])


def _get(session: Session, recording_id: int) -> Recording:
    row = session.get(Recording, recording_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no recording with id {recording_id}")
    return row


@router.get(
    "/{recording_id}",
    response_model=RecordingDetail,
    responses=error_responses(404),
    summary="One recording's metadata",
)
def get_recording(recording_id: RecordingId) -> RecordingDetail:
    with session_scope() as session:
        row = _get(session, recording_id)
        return RecordingDetail(
            **_summary(row),
            source_version=row.source_version,
            content_sha256=row.content_sha256,
            metadata=row.metadata_ or {},
        )


@router.get(
    "/{recording_id}/signal",
    responses=error_responses(404),
    summary="One recording's trace for plotting (filtered, decimated, mV)",
)
def get_recording_signal(
    recording_id: RecordingId,
    max_points: int | None = Query(
        None, ge=100, le=100_000, description="samples per lead at most (default: ECG_PLOT_MAX_POINTS / leads)"
    ),
) -> dict:
    with session_scope() as session:
        record = _get(session, recording_id).to_record()
    return {"id": recording_id, **plot_trace(record, max_points)}
