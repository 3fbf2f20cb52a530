"""Training jobs: the table, the request and view schemas, and every state change, free of TensorFlow.

The gateway (``POST /api/training-jobs`` and friends), ``ecg train`` and the training worker all go through this
module. Life of a job::

    queued ──► running ──► succeeded (a registered model version)
       │          ├──────► failed (the reason)
       └──────────┴──────► cancelled

A running job records a heartbeat every few seconds and a checkpoint after every epoch. A worker that dies (a killed
Celery child, or the whole machine) leaves the heartbeat stale: every training worker runs
:func:`requeue_stale_training_jobs` every few seconds, which queues such a job again while it has attempts left
(``training_max_attempts``) and marks it failed with the reason once they are used up. The next attempt resumes from
the last checkpoint. The model version is registered in the same transaction that marks the job succeeded, so a crash
can never leave a half-registered model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import BigInteger, Boolean, DateTime, Integer, String, Text, func, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column

from ecg_shared.db.models import Base
from ecg_shared.formats.record import normalise_lead_name

TRAINING_TASK = "ecg_training.run_training_job"
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATUSES = ("succeeded", "failed", "cancelled")
ModelFamily = Literal["resnet", "cnn", "inception", "leadwise"]  # ecg_training.families builds each
MODEL_FAMILIES: tuple[str, ...] = get_args(ModelFamily)
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"


class TrainingJobNotFound(LookupError):
    pass


class TrainingJobStateError(RuntimeError):
    """The job is in a state that does not allow the operation (e.g. cancelling a finished job)."""


# --- Table -------------------------------------------------------------------------------------------------------


class TrainingJob(Base):
    __tablename__ = "training_jobs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    request: Mapped[dict[str, Any]] = mapped_column(JSONB)  # TrainingJobRequest.model_dump()
    epoch: Mapped[int] = mapped_column(Integer, default=0)  # epochs completed
    progress: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)  # one EpochProgress per epoch
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)  # test-split evaluation
    model_name: Mapped[str | None] = mapped_column(String(100))
    model_version: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_hostname: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# --- Schemas -----------------------------------------------------------------------------------------------------


class DatasetFilters(BaseModel):
    """Which recordings of the dataset to train on."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # JSON would store inf as null: refused

    labels: list[str] | None = Field(None, description="only recordings with these (raw) labels")
    min_duration_s: float | None = Field(None, ge=0, description="skip shorter recordings")
    max_recordings: int | None = Field(None, ge=1, description="a seeded random sample of at most this many")


class Pretraining(BaseModel):
    """Where a ``leadwise`` model's single-lead encoder is pretrained before the job's own training: one lead of
    another dataset, with its own classes, at the job's preprocessing (rate, window, filters, normalisation). It
    trains on that dataset's training split and keeps its best epoch on its validation split (split like a job's,
    with the job's seed); the job's own data is not touched."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    dataset: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$", description="e.g. 'cinc2017'")
    lead: str = Field("II", description="the lead read from each recording (a single-lead file's only lead)")
    classes: list[str] | None = Field(None, description="its output classes; default: the classes found, sorted")
    normal_classes: list[str] = Field(min_length=1)
    unreadable_classes: list[str] = Field(default_factory=list)
    label_mapping: dict[str, str] = Field(default_factory=dict)
    epochs: int = Field(10, ge=1, le=200)

    @field_validator("lead")
    @classmethod
    def _lead_known(cls, lead: str) -> str:
        return normalise_lead_name(lead)


class TrainingJobRequest(BaseModel):
    """What to train: data, label set, model family and hyper-parameters (with defaults)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # JSON would store inf as null: refused

    dataset: str = Field(min_length=1, max_length=200, description="the dataset to train on ('reviewed': see below)")
    extra_datasets: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="more datasets trained on with `dataset`, e.g. ['reviewed']: the clinician-reviewed recordings. "
        "In every dataset a recording's settled review label takes precedence over the label its file carried",
    )
    name: str | None = Field(
        None, pattern=MODEL_NAME_PATTERN, description="registry model name; default '<dataset>-<family>'"
    )
    filters: DatasetFilters = Field(default_factory=DatasetFilters)
    label_mapping: dict[str, str] = Field(
        default_factory=dict, description="raw label -> class; labels not listed are kept as they are"
    )
    classes: list[str] | None = Field(None, description="output order; default: the classes found, sorted")
    normal_classes: list[str] = Field(min_length=1, description="classes that mean 'normal'")
    unreadable_classes: list[str] = Field(default_factory=list, description="classes that mean 'too noisy to judge'")
    family: ModelFamily = "resnet"
    epochs: int = Field(10, ge=1, le=500)
    batch_size: int = Field(32, ge=1, le=1024)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    window_s: float = Field(10.0, gt=0, le=120)
    sampling_rate: float = Field(100.0, ge=25, le=2000)
    leads: list[str] = Field(default_factory=lambda: ["II"], min_length=1, max_length=16)
    normalisation: Literal["zscore", "minmax", "none"] = "zscore"
    highpass_hz: float | None = Field(0.5, gt=0)
    lowpass_hz: float | None = Field(40.0, gt=0)
    notch_hz: float | None = Field(None, gt=0)
    validation_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    seed: int = Field(0, ge=0, description="seeds the networks' weights, crops and trees (the split too, by default)")
    split_seed: int | None = Field(
        None,
        ge=0,
        description="seeds the train/validation/test split and a max_recordings sample instead of seed: fixed, it "
        "keeps the same validation recordings while seed varies, so a change is measured over seeds on one split",
    )
    features: Literal["none", "beats", "beats+morphology"] = Field(
        "none",
        description="fuse beat features with the network (docs/training.md): 'beats' the RR and beat features of "
        "lead II, 'beats+morphology' also each lead's median-beat QRS (with its Q, R and S waves), ST and T "
        "measurements",
    )
    ensemble: int = Field(
        1,
        ge=1,
        le=5,
        description="networks trained with seeds seed, seed+1, ...; their probabilities averaged in one graph",
    )
    augment: bool = Field(
        False, description="augment the training crops: amplitude scaling, baseline wander, noise, lead dropout"
    )
    short_crops: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="the share of training crops cut to 10 s (of windows longer than that) and zero-padded, as the "
        "service pads a short recording: a 10 s 12-lead recording given to a 30 s single-lead model",
    )
    pretrain: Pretraining | None = Field(
        None, description="pretrain the leadwise family's single-lead encoder on another dataset first"
    )
    operating_sensitivity: float = Field(
        0.9, gt=0, lt=1, description="the abnormal call's threshold reaches this sensitivity on the validation split"
    )
    mixed_precision: bool = Field(False, description="train under mixed_bfloat16 (measure: slower for these nets here)")
    auto_promote: bool = Field(
        False,
        description="promote when the promotion gate passes: the new version scores at least as well as the active "
        "one on `promotion_evaluation`",
    )
    promotion_evaluation: str = Field(
        "reviewed",
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f]+$",
        description="the gate's evaluation data for auto_promote: 'reviewed' (the reviewed recordings) or a dataset",
    )

    @field_validator("leads")
    @classmethod
    def _leads_unique(cls, leads: list[str]) -> list[str]:
        normalised = [normalise_lead_name(lead) for lead in leads]
        if len(set(normalised)) != len(normalised):
            raise ValueError(f"leads repeat: {leads}")
        return normalised

    @field_validator("extra_datasets")
    @classmethod
    def _datasets_named(cls, names: list[str]) -> list[str]:
        if any(not name or len(name) > 200 or any(ord(c) < 32 for c in name) for name in names):
            raise ValueError("each extra dataset needs a name of 1 to 200 characters, without control characters")
        return list(dict.fromkeys(names))

    @property
    def datasets(self) -> list[str]:
        """Every dataset the job trains on, `dataset` first."""
        return list(dict.fromkeys([self.dataset, *self.extra_datasets]))

    @model_validator(mode="after")
    def _consistent(self) -> TrainingJobRequest:
        if self.window_s * self.sampling_rate < 64:
            raise ValueError(f"window_s x sampling_rate = {self.window_s * self.sampling_rate:g} samples; need >= 64")
        if self.validation_fraction + self.test_fraction >= 0.7:
            raise ValueError("validation_fraction + test_fraction must leave at least 30% for training")
        overlap = set(self.normal_classes) & set(self.unreadable_classes)
        if overlap:
            raise ValueError(f"classes both normal and unreadable: {sorted(overlap)}")
        if self.classes is not None:
            if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
                raise ValueError("classes must name at least two distinct classes")
            unknown = sorted(set(self.normal_classes + self.unreadable_classes) - set(self.classes))
            if unknown:
                raise ValueError(f"normal/unreadable classes not among classes {self.classes}: {unknown}")
        if self.highpass_hz and self.lowpass_hz and self.highpass_hz >= self.lowpass_hz:
            raise ValueError("highpass_hz must be below lowpass_hz")
        if self.pretrain is not None and self.family != "leadwise":
            raise ValueError("pretrain needs the leadwise family (its single-lead encoder is what is pretrained)")
        return self

    @property
    def data_seed(self) -> int:
        """What seeds the split and a max_recordings sample: ``split_seed``, else ``seed``."""
        return self.seed if self.split_seed is None else self.split_seed

    def pretraining_request(self) -> TrainingJobRequest:
        """The request the encoder is pretrained with: the pretraining dataset's lead and classes at this job's
        preprocessing, seed, batch size and learning rate."""
        if self.pretrain is None:
            raise ValueError("this request has no pretraining")
        p = self.pretrain
        keep = (
            "batch_size",
            "learning_rate",
            "window_s",
            "sampling_rate",
            "normalisation",
            "highpass_hz",
            "lowpass_hz",
            "notch_hz",
            "validation_fraction",
            "test_fraction",
            "seed",
            "split_seed",
        )
        return TrainingJobRequest(
            dataset=p.dataset,
            name=f"{self.model_name}-encoder"[:100],
            classes=p.classes,
            normal_classes=p.normal_classes,
            unreadable_classes=p.unreadable_classes,
            label_mapping=p.label_mapping,
            family="leadwise",
            epochs=p.epochs,
            leads=[p.lead],
            **{k: getattr(self, k) for k in keep},
        )

    @property
    def model_name(self) -> str:
        return self.name or re.sub(r"[^a-z0-9._-]+", "-", f"{self.dataset}-{self.family}".lower()).strip("-")[:100]

    @property
    def window_samples(self) -> int:
        return round(self.window_s * self.sampling_rate)


class EpochProgress(BaseModel):
    epoch: int
    loss: float
    seconds: float
    validation: dict[str, float] = Field(default_factory=dict)
    attempt: int = Field(1, description="the attempt that ran this epoch (a resumed job keeps earlier epochs)")


class TrainingJobView(BaseModel):
    id: int
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    model_name: str
    dataset: str
    family: str
    request: dict[str, Any]
    epoch: int
    epochs: int
    progress: list[EpochProgress]
    metrics: dict[str, Any]
    model_version: int | None
    error: str | None
    cancel_requested: bool
    attempts: int
    worker_hostname: str | None
    created_at: datetime | None
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None


# --- What the gateway and the CLI call ---------------------------------------------------------------------------


def create_training_job(session: Session, request: TrainingJobRequest) -> TrainingJob:
    """Add a queued job (in the caller's transaction). Enqueue it with :func:`enqueue_training_job` after commit."""
    job = TrainingJob(
        status="queued",
        request=request.model_dump(mode="json"),
        progress=[],
        metrics={},
        model_name=request.model_name,
        epoch=0,
        attempts=0,
        cancel_requested=False,
    )
    session.add(job)
    session.flush()
    return job


def enqueue_training_job(job_id: int) -> str:
    """Send the job to the ``training`` queue; returns the Celery task id. Call after the job row is committed."""
    from ecg_shared.celery_app import TRAINING_QUEUE, enqueue

    return enqueue(TRAINING_TASK, TRAINING_QUEUE, job_id)


def get_training_job(session: Session, job_id: int) -> TrainingJob | None:
    return session.get(TrainingJob, job_id)


def list_training_jobs(session: Session, limit: int = 50) -> list[TrainingJob]:
    return list(session.scalars(select(TrainingJob).order_by(TrainingJob.id.desc()).limit(limit)))


def cancel_training_job(session: Session, job_id: int) -> TrainingJob:
    """A queued job is cancelled at once; a running one is asked to stop (its worker checks between batches)."""
    job = session.get(TrainingJob, job_id, with_for_update=True)
    if job is None:
        raise TrainingJobNotFound(f"training job {job_id} not found")
    if job.status in FINAL_STATUSES:
        raise TrainingJobStateError(f"training job {job_id} already {job.status}")
    job.cancel_requested = True
    if job.status == "queued":
        job.status = "cancelled"
        job.error = "cancelled before it started"
        job.finished_at = datetime.now(UTC)
    session.flush()
    return job


def training_job_view(job: TrainingJob) -> TrainingJobView:
    request = job.request or {}
    return TrainingJobView(
        id=job.id,
        status=job.status,
        model_name=job.model_name or "",
        dataset=request.get("dataset", ""),
        family=request.get("family", ""),
        request=request,
        epoch=job.epoch or 0,
        epochs=request.get("epochs", 0) * request.get("ensemble", 1),
        progress=[EpochProgress(**p) for p in job.progress or []],
        metrics=job.metrics or {},
        model_version=job.model_version,
        error=job.error,
        cancel_requested=bool(job.cancel_requested),
        attempts=job.attempts or 0,
        worker_hostname=job.worker_hostname,
        created_at=job.created_at,
        started_at=job.started_at,
        heartbeat_at=job.heartbeat_at,
        finished_at=job.finished_at,
    )


# --- What the worker calls ---------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def claim_training_job(
    session: Session, job_id: int, hostname: str, stale_after_s: float, max_attempts: int
) -> TrainingJob | None:
    """Mark the job running on ``hostname``, or return None when it must not run (again).

    Safe for redelivered and duplicate tasks: a finished job is left alone, a job another worker is running (fresh
    heartbeat) is left to it, a job whose worker died (stale heartbeat) is taken over unless it already used
    ``max_attempts``. The new attempt starts at epoch 0; the runner then resumes it from its checkpoint, if any.
    """
    job = session.get(TrainingJob, job_id, with_for_update=True)
    if job is None:
        raise TrainingJobNotFound(f"training job {job_id} not found")
    if job.status in FINAL_STATUSES:
        return None
    now = _now()
    if job.status == "running":
        if job.heartbeat_at and now - job.heartbeat_at < timedelta(seconds=stale_after_s):
            return None
        if job.attempts >= max_attempts:
            _finish(job, "failed", _lost_reason(job, max_attempts))
            session.flush()
            return None
    if job.cancel_requested:
        _finish(job, "cancelled", "cancelled before it started")
        session.flush()
        return None
    job.status = "running"
    job.attempts = (job.attempts or 0) + 1
    job.worker_hostname = hostname
    job.started_at = now
    job.heartbeat_at = now
    job.epoch = 0
    job.progress = []
    job.error = None
    session.flush()
    return job


def heartbeat_training_job(session: Session, job_id: int, attempt: int) -> Literal["running", "cancel", "lost"]:
    """Refresh the heartbeat of our attempt. Returns "cancel" when cancellation was requested, "lost" when the attempt
    no longer owns the job (it was queued again or taken over after a heartbeat gap), else "running"."""
    row = session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, TrainingJob.status == "running", TrainingJob.attempts == attempt)
        .values(heartbeat_at=_now())
        .returning(TrainingJob.cancel_requested)
    ).first()
    if row is None:
        return "lost"
    return "cancel" if row[0] else "running"


def resume_training_job(session: Session, job_id: int, attempt: int, progress: list[EpochProgress]) -> None:
    """Our attempt resumes from a checkpoint: the job's epoch and progress are the checkpoint's."""
    job = session.get(TrainingJob, job_id, with_for_update=True)
    if job is None or job.status != "running" or job.attempts != attempt:
        return
    job.progress = [p.model_dump() for p in progress]
    job.epoch = progress[-1].epoch if progress else 0
    session.flush()


def record_epoch(session: Session, job_id: int, attempt: int, progress: EpochProgress) -> None:
    job = session.get(TrainingJob, job_id, with_for_update=True)
    if job is None or job.status != "running" or job.attempts != attempt:
        return
    job.progress = [*(job.progress or []), progress.model_dump()]
    job.epoch = progress.epoch
    job.heartbeat_at = _now()
    session.flush()


def lock_running_attempt(session: Session, job_id: int, attempt: int) -> TrainingJob:
    """Lock the job row for the final transaction; raises if our attempt no longer owns a running job."""
    job = session.get(TrainingJob, job_id, with_for_update=True)
    if job is None or job.status != "running" or job.attempts != attempt:
        state = "gone" if job is None else f"{job.status} (attempt {job.attempts})"
        raise TrainingJobStateError(f"training job {job_id} is {state}; attempt {attempt} no longer owns it")
    return job


def finish_training_job(
    session: Session, job_id: int, attempt: int, status: str, error: str | None = None, **fields: Any
) -> bool:
    """Set a final status for our attempt; False (and nothing changed) if the job was meanwhile queued again, taken
    over or finished."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"not a final status: {status}")
    job = session.get(TrainingJob, job_id, with_for_update=True)
    if job is None or job.status != "running" or job.attempts != attempt:
        return False
    for key, value in fields.items():
        setattr(job, key, value)
    _finish(job, status, error)
    session.flush()
    return True


def record_promotion(session: Session, job_id: int, promoted: bool, gate: dict[str, Any]) -> None:
    """After auto_promote's gate (the job has succeeded): whether its version was promoted, and the comparison."""
    job = session.get(TrainingJob, job_id, with_for_update=True)
    if job is not None:
        job.metrics = {**(job.metrics or {}), "promoted": promoted, "promotion_gate": gate}
        session.flush()


def requeue_stale_training_jobs(
    session: Session, stale_after_s: float, max_attempts: int, enqueue: Callable[[int], Any]
) -> tuple[list[int], list[int]]:
    """Running jobs whose heartbeat is older than ``stale_after_s`` lost their worker: queue each again (``enqueue``
    sends its task) while it has attempts left, else mark it failed with the reason. Returns (queued, failed) ids.

    The task is sent before the transaction commits: should the commit fail, the task finds the job still running
    with a stale heartbeat and takes it over all the same; should sending fail, nothing changes and the next call
    tries again.
    """
    cutoff = _now() - timedelta(seconds=stale_after_s)
    jobs = session.scalars(
        select(TrainingJob)
        .where(TrainingJob.status == "running", TrainingJob.heartbeat_at < cutoff)
        .order_by(TrainingJob.id)
        .with_for_update(skip_locked=True)
    ).all()
    queued, failed = [], []
    for job in jobs:
        if job.attempts >= max_attempts:
            _finish(job, "failed", _lost_reason(job, max_attempts))
            failed.append(job.id)
        else:
            enqueue(job.id)
            job.status = "queued"
            queued.append(job.id)
    session.flush()
    return queued, failed


def _lost_reason(job: TrainingJob, max_attempts: int) -> str:
    since = f"{job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC" if job.heartbeat_at else "its start"
    return (
        f"worker {job.worker_hostname} lost during attempt {job.attempts} (no heartbeat since {since}); "
        f"gave up after {max_attempts} attempt{'s' if max_attempts != 1 else ''} (ECG_TRAINING_MAX_ATTEMPTS)"
    )


def _finish(job: TrainingJob, status: str, error: str | None) -> None:
    job.status = status
    job.error = error
    job.finished_at = _now()
