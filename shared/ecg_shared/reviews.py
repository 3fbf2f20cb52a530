"""Kept classifications and clinicians' reviews of them: what the gateway stores, what training and the promotion
gate read back.

- :func:`keep_classification` stores an uploaded recording (de-identified: see :data:`KEPT_METADATA_KEYS`) in the
  dataset :data:`REVIEWED_DATASET` with the answer it got (each model's version, probabilities and call, the
  verdict).
- :func:`save_review` stores one reviewer's reading: the right label (normal, abnormal) or unreadable, and a
  comment. Each reviewer has one review per recording; reviews by different people are all kept.
- A recording's **settled label** is the label its reviewers agree on; where they disagree it has none (and is left
  out of training and of every measurement, until they agree). :func:`settled_labels` is that rule in SQL.
- :func:`live_agreement`: per model version, how often its kept calls match the settled labels.

Deleting a recording deletes its classifications and reviews (foreign keys ``ON DELETE CASCADE``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import Select, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ecg_shared.db.models import REVIEW_LABELS, Classification, Recording, Review
from ecg_shared.db.store import StoreItem, content_hash, store_recordings
from ecg_shared.formats.record import Record

REVIEWED_DATASET = "reviewed"
# The only record metadata kept with an upload: how it was recorded and read, nothing about the person. File
# names, record names, paths, ages, sexes, free-text comments and every other header field are dropped.
KEPT_METADATA_KEYS = ("format", "device", "units", "gain_counts_per_mv", "dropped_frames", "trailing_bytes_ignored")
ReviewLabel = Literal["normal", "abnormal", "unreadable"]


class ReviewNotFound(LookupError):
    pass


# --- Keeping -----------------------------------------------------------------------------------------------------


def deidentified(record: Record) -> Record:
    """The same signal with only :data:`KEPT_METADATA_KEYS` (and the label the file carried, if any)."""
    metadata = {key: record.metadata[key] for key in KEPT_METADATA_KEYS if key in record.metadata}
    if record.label is not None:
        metadata["label"] = record.label
    return Record(record.signal, record.sampling_rate, list(record.lead_names), metadata)


def keep_classification(session: Session, record: Record, content: bytes, answer: dict) -> tuple[int, int]:
    """Store ``record`` (once per content) in :data:`REVIEWED_DATASET` and ``answer`` (a ClassifyResponse as JSON)
    as one of its classifications; returns (recording id, classification id). The uploaded file's name is not
    kept: the recording is known by the sha256 of its bytes."""
    digest = content_hash(content)
    uri = f"upload:sha256:{digest}"
    (recording_id,) = store_recordings(
        session, REVIEWED_DATASET, [StoreItem(deidentified(record), uri, digest, digest)]
    )
    if recording_id is None:  # the same bytes were kept before
        recording_id = session.scalar(
            select(Recording.id).where(
                Recording.dataset == REVIEWED_DATASET, Recording.source_uri == uri, Recording.source_version == digest
            )
        )
    verdict = answer["verdict"]
    row = Classification(
        recording_id=recording_id,
        verdict=verdict["label"],
        probability=None if verdict.get("probability") is None else float(verdict["probability"]),
        rule=verdict.get("rule") or "",
        models=[
            {
                key: model.get(key)
                for key in (
                    "name",
                    "version",
                    "family",
                    "predicted_class",
                    "call",
                    "p_abnormal",
                    "threshold",
                    "not_judged",
                    "caveat",
                )
            }
            | {"probabilities": model.get("probabilities", {})}
            for model in answer.get("models", [])
        ],
    )
    session.add(row)
    session.flush()
    return recording_id, row.id


# --- Reviewing ---------------------------------------------------------------------------------------------------


class ReviewRequest(BaseModel):
    reviewer: str = Field(min_length=1, max_length=100, description="who reviews (shown with the review)")
    label: ReviewLabel = Field(description="the right reading: normal, abnormal, or unreadable (too poor to judge)")
    comment: str | None = Field(None, max_length=2000, description="optional remark")

    @field_validator("reviewer")
    @classmethod
    def _reviewer_name(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("reviewer must name the person reviewing")
        if any(ord(c) < 32 for c in value):
            raise ValueError("reviewer contains control characters")
        return value

    @field_validator("comment")
    @classmethod
    def _comment(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if any(ord(c) < 32 and c not in "\n\t" for c in value):
            raise ValueError("comment contains control characters")
        return value.strip() or None


class ReviewView(BaseModel):
    id: int
    reviewer: str
    label: ReviewLabel
    comment: str | None
    classification_id: int | None
    agrees_with_verdict: bool | None = Field(description="whether the label is the kept verdict (null: none kept)")
    created_at: datetime
    updated_at: datetime


class KeptModelCall(BaseModel):
    name: str
    version: int | None
    predicted_class: str
    call: str
    p_abnormal: float
    not_judged: str | None = Field(None, description="why this model's answer was not used (models[].not_judged)")
    caveat: str | None = Field(None, description="what the answer must be read with (models[].caveat)")


class KeptClassification(BaseModel):
    id: int
    verdict: str
    probability: float | None = Field(description="of the verdict; null where a rule decided it")
    rule: str
    models: list[KeptModelCall]
    created_at: datetime


class RecordingReviews(BaseModel):
    recording_id: int
    dataset: str
    file_label: str | None = Field(description="the label the file carried, if any (a settled review overrides it)")
    classification: KeptClassification | None = Field(description="the latest kept classification")
    reviews: list[ReviewView]
    settled_label: ReviewLabel | None = Field(description="the label every reviewer gave; null if none or disputed")
    disagreement: bool = Field(description="true when reviewers gave different labels")


def _latest_classification(session: Session, recording_id: int) -> Classification | None:
    return session.scalar(
        select(Classification)
        .where(Classification.recording_id == recording_id)
        .order_by(Classification.id.desc())
        .limit(1)
    )


def save_review(session: Session, recording_id: int, request: ReviewRequest) -> Review:
    """Add ``request.reviewer``'s review of the recording, or replace their earlier one."""
    if session.get(Recording, recording_id) is None:
        raise ReviewNotFound(f"no recording with id {recording_id}")
    latest = _latest_classification(session, recording_id)
    values = {
        "recording_id": recording_id,
        "classification_id": latest.id if latest else None,
        "reviewer": request.reviewer,
        "label": request.label,
        "comment": request.comment,
    }
    statement = (
        insert(Review)
        .values(**values)
        .on_conflict_do_update(
            constraint="uq_reviews_recording_reviewer",
            set_={k: values[k] for k in ("classification_id", "label", "comment")} | {"updated_at": func.now()},
        )
        .returning(Review.id)
    )
    review_id = session.execute(statement).scalar_one()
    session.expire_all()
    return session.get(Review, review_id)


def _review_view(review: Review, verdicts: dict[int, str]) -> ReviewView:
    verdict = verdicts.get(review.classification_id) if review.classification_id else None
    return ReviewView(
        id=review.id,
        reviewer=review.reviewer,
        label=review.label,
        comment=review.comment,
        classification_id=review.classification_id,
        agrees_with_verdict=None if verdict is None else verdict == review.label,
        created_at=review.created_at,
        updated_at=review.updated_at,
    )


def recording_reviews(session: Session, recording_id: int) -> RecordingReviews:
    recording = session.get(Recording, recording_id)
    if recording is None:
        raise ReviewNotFound(f"no recording with id {recording_id}")
    return _summaries(session, [recording])[0]


def _summaries(session: Session, recordings: list[Recording]) -> list[RecordingReviews]:
    ids = [r.id for r in recordings]
    reviews: dict[int, list[Review]] = {i: [] for i in ids}
    for review in session.scalars(select(Review).where(Review.recording_id.in_(ids)).order_by(Review.created_at)):
        reviews[review.recording_id].append(review)
    classifications = {
        c.recording_id: c
        for c in session.scalars(
            select(Classification).where(Classification.recording_id.in_(ids)).order_by(Classification.id)
        )
    }  # the last one per recording wins: the latest
    reviewed_ids = {r.classification_id for rs in reviews.values() for r in rs if r.classification_id}
    verdicts = dict(
        session.execute(select(Classification.id, Classification.verdict).where(Classification.id.in_(reviewed_ids)))
        .tuples()
        .all()
    )
    summaries = []
    for recording in recordings:
        own = reviews[recording.id]
        labels = {r.label for r in own}
        kept = classifications.get(recording.id)
        summaries.append(
            RecordingReviews(
                recording_id=recording.id,
                dataset=recording.dataset,
                file_label=recording.label,
                classification=None
                if kept is None
                else KeptClassification(
                    id=kept.id,
                    verdict=kept.verdict,
                    probability=kept.probability,
                    rule=kept.rule,
                    models=[
                        KeptModelCall(**{k: m.get(k) for k in KeptModelCall.model_fields}) for m in kept.models or []
                    ],
                    created_at=kept.created_at,
                ),
                reviews=[_review_view(r, verdicts) for r in own],
                settled_label=next(iter(labels)) if len(labels) == 1 else None,
                disagreement=len(labels) > 1,
            )
        )
    return summaries


def list_reviewed(
    session: Session, disagreements_only: bool = False, limit: int = 50, offset: int = 0
) -> tuple[int, list[RecordingReviews]]:
    """Reviewed recordings, most recently reviewed first (only those whose reviewers disagree, if asked)."""
    grouped = (
        select(Review.recording_id)
        .group_by(Review.recording_id)
        .having(func.count(func.distinct(Review.label)) > 1 if disagreements_only else func.count() > 0)
    )
    total = session.scalar(select(func.count()).select_from(grouped.subquery())) or 0
    ordered = grouped.order_by(func.max(Review.updated_at).desc(), Review.recording_id.desc()).limit(limit)
    ids = list(session.scalars(ordered.offset(offset)))
    by_id = {r.id: r for r in session.scalars(select(Recording).where(Recording.id.in_(ids)))}
    return total, _summaries(session, [by_id[i] for i in ids])


# --- Reading reviews back: training, measurement ------------------------------------------------------------------


def settled_labels() -> Select:
    """``(recording_id, label)`` of every recording whose reviewers all gave the same label."""
    return (
        select(Review.recording_id.label("recording_id"), func.min(Review.label).label("label"))
        .group_by(Review.recording_id)
        .having(func.count(func.distinct(Review.label)) == 1)
    )


class ModelAgreement(BaseModel):
    name: str
    version: int
    reviewed: int = Field(description="kept recordings this version classified that have a settled review label")
    agreed: int = Field(description="of those, how many it called as the reviewers did")
    rate: float | None = Field(description="agreed / reviewed (null when nothing was reviewed yet)")
    disputed: int = Field(description="recordings it classified whose reviewers disagree (left out of the rate)")


def live_agreement(session: Session, versions: list[tuple[str, int]]) -> list[ModelAgreement]:
    """For each (model, version): its calls in the latest kept classification of each reviewed recording, against
    the recording's settled label."""
    settled = settled_labels().subquery()
    latest = select(func.max(Classification.id)).group_by(Classification.recording_id).scalar_subquery()
    rows = session.execute(
        select(Classification.models, settled.c.label)
        .outerjoin(settled, settled.c.recording_id == Classification.recording_id)
        .where(Classification.id.in_(latest), Classification.recording_id.in_(select(Review.recording_id)))
    ).all()
    tallies = {key: [0, 0, 0] for key in versions}  # reviewed, agreed, disputed
    for models, label in rows:
        for model in models or []:
            tally = tallies.get((model.get("name"), model.get("version")))
            if tally is None or model.get("not_judged"):  # not judged: it read leads with no signal, said nothing
                continue
            if label is None:
                tally[2] += 1
                continue
            tally[0] += 1
            tally[1] += model.get("call") == label
    return [
        ModelAgreement(
            name=name,
            version=version,
            reviewed=reviewed,
            agreed=agreed,
            rate=agreed / reviewed if reviewed else None,
            disputed=disputed,
        )
        for (name, version), (reviewed, agreed, disputed) in tallies.items()
    ]


def delete_recording(session: Session, recording_id: int) -> dict[str, int]:
    """Delete a recording with its classifications and reviews; returns how many of each went."""
    recording = session.get(Recording, recording_id)
    if recording is None:
        raise ReviewNotFound(f"no recording with id {recording_id}")
    counts = {
        "classifications": session.scalar(
            select(func.count()).select_from(Classification).where(Classification.recording_id == recording_id)
        ),
        "reviews": session.scalar(select(func.count()).select_from(Review).where(Review.recording_id == recording_id)),
    }
    session.delete(recording)
    session.flush()
    return {"recordings": 1, **counts}


__all__ = [
    "KEPT_METADATA_KEYS",
    "REVIEWED_DATASET",
    "REVIEW_LABELS",
    "ModelAgreement",
    "RecordingReviews",
    "ReviewNotFound",
    "ReviewRequest",
    "ReviewView",
    "delete_recording",
    "keep_classification",
    "list_reviewed",
    "live_agreement",
    "recording_reviews",
    "save_review",
    "settled_labels",
]
