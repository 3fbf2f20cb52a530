"""Clinicians' reviews of kept classifications, live agreement of the active models, deleting a recording.

The rules (one review per reviewer, settled labels, what is kept) live in ``ecg_shared.reviews``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, Field

from ecg_gateway.errors import COMMON_ERRORS, INT64_MAX, KEYED_ERRORS, error_responses
from ecg_gateway.security import require_api_key
from ecg_shared import registry, reviews
from ecg_shared.db import session_scope

router = APIRouter(tags=["reviews"])
NOT_FOUND = error_responses(*COMMON_ERRORS, 404)
KEYED_NOT_FOUND = error_responses(*COMMON_ERRORS, *KEYED_ERRORS, 404)
RecordingId = Path(ge=1, le=INT64_MAX, description="the recording's id")


class ReviewedPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[reviews.RecordingReviews]


class AgreementList(BaseModel):
    rule: str = Field(description="how agreement is counted")
    models: list[reviews.ModelAgreement]


class Deleted(BaseModel):
    recordings: int
    classifications: int
    reviews: int


AGREEMENT_RULE = (
    "per active model version: over the kept recordings it classified whose reviewers all gave the same label, "
    "the share where its call (normal, abnormal, unreadable) is that label; recordings whose reviewers disagree are "
    "counted as disputed and left out"
)


def _not_found(exc: reviews.ReviewNotFound) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))


@router.post(
    "/api/recordings/{recording_id}/reviews",
    response_model=reviews.RecordingReviews,
    dependencies=[Depends(require_api_key)],
    summary="Review a recording: confirm or correct its label, or call it unreadable (API key)",
    responses=KEYED_NOT_FOUND,
)
def add_review(request: reviews.ReviewRequest, recording_id: int = RecordingId) -> reviews.RecordingReviews:
    """Stored with the reviewer's name and the time. A reviewer's second review of the same recording replaces
    their first; reviews by other people are kept beside it, and the answer shows whether they disagree."""
    with session_scope() as session:
        try:
            reviews.save_review(session, recording_id, request)
        except reviews.ReviewNotFound as exc:
            raise _not_found(exc) from None
    with session_scope() as session:
        return reviews.recording_reviews(session, recording_id)


@router.get(
    "/api/recordings/{recording_id}/reviews",
    response_model=reviews.RecordingReviews,
    summary="A recording's kept classification, its reviews and whether reviewers disagree",
    responses=NOT_FOUND,
)
def get_reviews(recording_id: int = RecordingId) -> reviews.RecordingReviews:
    with session_scope() as session:
        try:
            return reviews.recording_reviews(session, recording_id)
        except reviews.ReviewNotFound as exc:
            raise _not_found(exc) from None


@router.get(
    "/api/reviews",
    response_model=ReviewedPage,
    summary="Reviewed recordings, most recently reviewed first",
    responses=error_responses(*COMMON_ERRORS),
)
def list_reviews(
    disagreements: bool = Query(False, description="only recordings whose reviewers gave different labels"),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=INT64_MAX),
) -> ReviewedPage:
    with session_scope() as session:
        total, items = reviews.list_reviewed(session, disagreements, limit, offset)
    return ReviewedPage(total=total, limit=limit, offset=offset, items=items)


@router.get(
    "/api/reviews/agreement",
    response_model=AgreementList,
    summary="Live accuracy: how often clinicians agreed with each active model version",
)
def agreement() -> AgreementList:
    with session_scope() as session:
        active = [(row.name, row.version) for row in registry.active_versions(session)]
        return AgreementList(rule=AGREEMENT_RULE, models=reviews.live_agreement(session, active))


@router.delete(
    "/api/recordings/{recording_id}",
    response_model=Deleted,
    dependencies=[Depends(require_api_key)],
    summary="Delete a recording with its kept classifications and reviews (API key)",
    responses=KEYED_NOT_FOUND,
)
def delete_recording(recording_id: int = RecordingId) -> Deleted:
    with session_scope() as session:
        try:
            return Deleted(**reviews.delete_recording(session, recording_id))
        except reviews.ReviewNotFound as exc:
            raise _not_found(exc) from None
