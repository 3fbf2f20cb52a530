"""Tables. Each change goes through an Alembic migration in ``migrations/versions``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ecg_shared.formats.record import Record


class Base(DeclarativeBase):
    pass


def encode_signal(signal: np.ndarray) -> bytes:
    """float32 little-endian, (n_samples, n_leads) row-major: 4 bytes a sample, readable without the record."""
    return np.ascontiguousarray(signal, dtype="<f4").tobytes()


def decode_signal(data: bytes, n_samples: int, n_leads: int) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").reshape(n_samples, n_leads).astype(np.float32)


class Recording(Base):
    """One stored ECG. ``(dataset, source_uri, source_version)`` is unique, so storing it again is a no-op."""

    __tablename__ = "recordings"
    __table_args__ = (
        UniqueConstraint("dataset", "source_uri", "source_version", name="uq_recordings_source"),
        Index("ix_recordings_dataset_label", "dataset", "label"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(200))
    source_uri: Mapped[str] = mapped_column(Text)  # blob URL (without any SAS token), file path or upload name
    source_version: Mapped[str] = mapped_column(String(200))  # etag, or sha256 of the content
    content_sha256: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(32))
    sampling_rate: Mapped[float] = mapped_column(Float)
    lead_names: Mapped[list[str]] = mapped_column(ARRAY(String(32)))
    n_samples: Mapped[int] = mapped_column(Integer)
    signal: Mapped[bytes] = mapped_column(LargeBinary)  # see encode_signal
    label: Mapped[str | None] = mapped_column(String(100))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    @classmethod
    def from_record(
        cls,
        record: Record,
        dataset: str,
        source_uri: str,
        source_version: str,
        content_sha256: str,
        label: str | None = None,
    ) -> Recording:
        return cls(
            dataset=dataset,
            source_uri=source_uri,
            source_version=source_version,
            content_sha256=content_sha256,
            format=record.format or "unknown",
            sampling_rate=record.sampling_rate,
            lead_names=record.lead_names,
            n_samples=record.n_samples,
            signal=encode_signal(record.signal),
            label=label or record.label,
            metadata_=json_safe(record.metadata),
        )

    def to_record(self) -> Record:
        metadata = dict(self.metadata_ or {})
        metadata.update(format=self.format, label=self.label, recording_id=self.id, dataset=self.dataset)
        return Record(
            decode_signal(self.signal, self.n_samples, len(self.lead_names)),
            self.sampling_rate,
            list(self.lead_names),
            metadata,
        )


def json_safe(metadata: dict[str, Any]) -> dict[str, Any]:
    safe = {}
    for key, value in metadata.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            safe[key] = value
        elif isinstance(value, (list, tuple)):
            safe[key] = [v if isinstance(v, (str, int, float, bool)) else str(v) for v in value]
        else:
            safe[key] = str(value)
    return safe


MODEL_STAGES = ("candidate", "active", "archived")


class ModelVersion(Base):
    """A registered model version (MLflow vocabulary: model name, version, stage, promote)."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
        Index("uq_model_versions_one_active", "name", unique=True, postgresql_where=text("stage = 'active'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    family: Mapped[str] = mapped_column(String(50))
    stage: Mapped[str] = mapped_column(String(20), default="candidate")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    model_card: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    onnx_metadata: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)  # ModelMetadata.to_dict()
    artifact_uri: Mapped[str] = mapped_column(Text)
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    training_job_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# --- Kept classifications and their clinician reviews (see ecg_shared.reviews) -----------------------------------

REVIEW_LABELS = ("normal", "abnormal", "unreadable")


class Classification(Base):
    """A classification answer kept with its recording (``POST /classify?keep=true``): the verdict and, per model,
    the version, class probabilities and call. Deleted with its recording."""

    __tablename__ = "classifications"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    recording_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("recordings.id", ondelete="CASCADE"), index=True)
    verdict: Mapped[str] = mapped_column(String(20))  # normal, abnormal or unreadable
    probability: Mapped[float] = mapped_column(Float)
    rule: Mapped[str] = mapped_column(Text)
    # One entry per model: name, version, family, predicted_class, call, p_abnormal, threshold, probabilities.
    models: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Review(Base):
    """A clinician's reading of a kept recording: the right label (or "unreadable") and an optional comment.

    One review per reviewer and recording (a second one from the same person replaces the first); reviews of
    different people are all kept. Deleted with its recording."""

    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("recording_id", "reviewer", name="uq_reviews_recording_reviewer"),
        CheckConstraint("label IN ('normal', 'abnormal', 'unreadable')", name="ck_reviews_label"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    recording_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("recordings.id", ondelete="CASCADE"), index=True)
    # The classification the reviewer saw (null when it is gone); deleted with it too.
    classification_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("classifications.id", ondelete="CASCADE")
    )
    reviewer: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(20))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
