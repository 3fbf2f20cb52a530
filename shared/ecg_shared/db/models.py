"""Tables. Each change goes through an Alembic migration in ``migrations/versions``."""

from __future__ import annotations

from dataclasses import dataclass
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

from ecg_shared.formats.record import Record, counts_to_mv


class Base(DeclarativeBase):
    pass


SIGNAL_ENCODINGS = ("float32", "int16")


@dataclass(frozen=True)
class EncodedSignal:
    """A signal as stored: little-endian samples, (n_samples, n_leads) row-major, readable without the record.

    ``int16``: whole ADC counts, lead ``j`` in millivolts being ``counts_to_mv(counts[:, j], counts_per_mv[j])``;
    ``float32``: millivolts.
    """

    data: bytes
    encoding: str = "float32"
    counts_per_mv: list[float] | None = None


def encode_signal(signal: np.ndarray, counts_per_mv: tuple[float, ...] | None = None) -> EncodedSignal:
    """int16 counts (half the bytes) where the record gives its leads' gains and the counts give back every float32
    sample to the bit; float32 otherwise (a signal with missing samples, counts beyond int16, values that are not
    whole counts). Lossless either way: the check is made on each signal.

    >>> gains = (200.0,)
    >>> encode_signal(counts_to_mv(np.array([[3], [-7]]), 200.0), gains).encoding
    'int16'
    >>> encode_signal(np.array([[0.0012345]], dtype=np.float32), gains).encoding
    'float32'
    """
    signal = np.asarray(signal, dtype=np.float32)
    if counts_per_mv is not None and signal.size:
        gains = np.asarray(counts_per_mv, dtype=np.float64)
        largest = max(-float(signal.min()), float(signal.max())) * float(gains.max())  # NaN fails the test below
        if largest < 32767:
            counts = np.rint(np.multiply(signal, gains, dtype=np.float64)).astype(np.int16)
            if np.array_equal(counts_to_mv(counts, gains), signal):
                return EncodedSignal(counts.astype("<i2", copy=False).tobytes(), "int16", gains.tolist())
    return EncodedSignal(np.ascontiguousarray(signal, dtype="<f4").tobytes())


def decode_signal(
    data: bytes, n_samples: int, n_leads: int, encoding: str = "float32", counts_per_mv: list[float] | None = None
) -> np.ndarray:
    """The float32 millivolts (n_samples, n_leads) of an :class:`EncodedSignal`'s parts."""
    if encoding == "float32":
        return np.frombuffer(data, dtype="<f4").reshape(n_samples, n_leads).astype(np.float32)
    if encoding == "int16":
        counts = np.frombuffer(data, dtype="<i2").reshape(n_samples, n_leads)
        return counts_to_mv(counts, np.asarray(counts_per_mv, dtype=np.float64))
    raise ValueError(f"unknown signal encoding {encoding!r} (known: {', '.join(SIGNAL_ENCODINGS)})")


class Recording(Base):
    """One stored ECG. ``(dataset, source_uri, source_version)`` is unique, so storing it again is a no-op."""

    __tablename__ = "recordings"
    __table_args__ = (
        UniqueConstraint("dataset", "source_uri", "source_version", name="uq_recordings_source"),
        Index("ix_recordings_dataset_label", "dataset", "label"),
        CheckConstraint(
            "signal_encoding = 'float32' OR (signal_encoding = 'int16' AND signal_counts_per_mv IS NOT NULL)",
            name="ck_recordings_signal_encoding",
        ),
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
    signal: Mapped[bytes] = mapped_column(LargeBinary)  # see EncodedSignal
    signal_encoding: Mapped[str] = mapped_column(String(16), server_default="float32")
    signal_counts_per_mv: Mapped[list[float] | None] = mapped_column(ARRAY(Float))  # int16 only: each lead's gain
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
            **signal_columns(record),
            label=label or record.label,
            metadata_=json_safe(record.metadata),
        )

    def to_record(self) -> Record:
        metadata = dict(self.metadata_ or {})
        metadata.update(format=self.format, label=self.label, recording_id=self.id, dataset=self.dataset)
        return Record(
            decode_signal(
                self.signal, self.n_samples, len(self.lead_names), self.signal_encoding, self.signal_counts_per_mv
            ),
            self.sampling_rate,
            list(self.lead_names),
            metadata,
        )


def signal_columns(record: Record) -> dict[str, Any]:
    """The ``recordings`` columns that hold a record's signal."""
    encoded = encode_signal(record.signal, record.counts_per_mv)
    return {
        "signal": encoded.data,
        "signal_encoding": encoded.encoding,
        "signal_counts_per_mv": encoded.counts_per_mv,
    }


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
    probability: Mapped[float | None] = mapped_column(Float)  # null: a rule decided the verdict (Verdict.probability)
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
