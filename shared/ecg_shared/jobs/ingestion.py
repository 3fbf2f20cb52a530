"""Ingestion jobs: the tables, the request and view schemas, and the state changes, free of worker dependencies.

The gateway (``POST /api/ingestion-jobs``), ``ecg ingest`` and the ingestion worker (``ecg_ingestion``) all go
through this module. Life of a job::

    queued ──► running ──► succeeded (counts, and the blobs that failed to decode)
                  └──────► failed (the reason: access denied, container missing, ...)

Running a job again (another attempt after an outage, a job queued again after its worker died, or ``ecg ingest
--resume ID``) resumes it: recordings already stored are skipped before download, so every recording ends up stored
exactly once. A running attempt refreshes the job's heartbeat; every ingestion worker's reaper
(:func:`requeue_stale_ingestion_jobs`) queues a job whose heartbeat went stale again, or fails it with the reason, so
no job stays ``running`` without a live worker.

The storage credential (SAS token or connection string) is a secret. A queued job keeps it Fernet-encrypted with
``ECG_SECRET_KEY`` until the job succeeds, then erases it; a foreground job keeps it in memory only. It is never
logged, never returned by :func:`ingestion_job_view`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column

from ecg_shared.db.models import Base
from ecg_shared.formats import FORMATS

INGESTION_TASK = "ecg_ingestion.run_ingestion_job"
JOB_STATUSES = ("queued", "running", "succeeded", "failed")
FINAL_STATUSES = ("succeeded", "failed")
RECORD_FORMATS = FORMATS  # every format read_ecg reads
DATASET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
# Azure container names: 3-63 lower-case letters, digits and hyphens, starting and ending with a letter or digit.
CONTAINER_PATTERN = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"
MAX_FAILURES_IN_VIEW = 500
ROW_QUERY_REFUSED = (
    "the blob URL carries a query string (a SAS token?), which a manifest row must not hold: give the URL without "
    "its '?...' part, or the blob name; the job's own SAS token or connection string reads every blob"
)


class IngestionJobNotFound(LookupError):
    pass


class SecretKeyMissing(RuntimeError):
    """Queued jobs need ECG_SECRET_KEY to keep the storage credential encrypted until a worker runs them."""


class CredentialUnavailable(RuntimeError):
    """The job's credential cannot be recovered (foreground job, erased, or encrypted with another key)."""


# --- Tables ------------------------------------------------------------------------------------------------------


class IngestionJob(Base):
    __tablename__ = "ingestion_jobs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(200))
    account_url: Mapped[str] = mapped_column(Text)  # never with a query string (no SAS token)
    container: Mapped[str] = mapped_column(String(63))
    auth: Mapped[str] = mapped_column(String(20))  # "sas_token" or "connection_string"
    credential_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)  # Fernet token; None: not kept
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)  # what to take: manifest/rows/prefix, columns, format
    status: Mapped[str] = mapped_column(String(20), default="queued")
    listed: Mapped[int] = mapped_column(Integer, default=0)
    downloaded: Mapped[int] = mapped_column(Integer, default=0)
    stored: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # of the running attempt
    worker_hostname: Mapped[str | None] = mapped_column(String(255))  # who runs (ran) the latest attempt


class IngestionFailure(Base):
    """A blob of the job's latest attempt that could not be downloaded or decoded, with the reason."""

    __tablename__ = "ingestion_failures"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("ingestion_jobs.id", ondelete="CASCADE"), index=True)
    blob: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# --- Schemas -----------------------------------------------------------------------------------------------------


class ManifestRow(BaseModel):
    """One recording to take: a blob name (or URL) in the container, its label and any metadata."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # JSON would store inf as null: refused

    blob: str = Field(..., min_length=1, max_length=1024)
    label: str | None = Field(None, max_length=100)
    metadata: dict[str, str | int | float | bool | None] = Field(default_factory=dict)

    @field_validator("blob")
    @classmethod
    def _no_credential_in_the_reference(cls, value: str) -> str:
        """A row never carries a credential: a blob URL with a query string (a SAS token's place) is refused, as
        the row would be stored and shown with it. The job's own credential reads every blob of its container."""
        if value.strip().lower().startswith(("http://", "https://")) and urlsplit(value.strip()).query:
            raise ValueError(ROW_QUERY_REFUSED)
        return value


def strip_query(url: str) -> str:
    """``url`` without query string and fragment (a SAS token lives in the query)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def account_url_from_connection_string(connection_string: str) -> str:
    """The blob endpoint a connection string names (no network); ValueError if it is not one."""
    from azure.storage.blob import BlobServiceClient

    try:
        return strip_query(BlobServiceClient.from_connection_string(connection_string).url)
    except Exception:  # the SDK raises ValueError/KeyError/IndexError for malformed strings
        # never echo the string: it holds the account key
        raise ValueError("connection_string is not a valid Azure Storage connection string") from None


class IngestionJobRequest(BaseModel):
    """What an ingestion job takes, from where, and under which dataset name it files the recordings.

    Credentials: ``connection_string``, or ``account_url`` with ``sas_token`` (an account URL that carries a SAS
    query string is split into the two). What to take: a manifest blob in the container (``.xlsx`` or ``.csv``),
    inline ``rows`` (how ``ecg ingest`` sends a local manifest file), or every blob under ``prefix`` (the default:
    the whole container).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # JSON would store inf as null: refused

    dataset: str = Field(..., pattern=DATASET_PATTERN, description="dataset name to file the recordings under")
    container: str = Field(..., pattern=CONTAINER_PATTERN)
    account_url: str | None = Field(None, max_length=500, description="https://<account>.blob.core.windows.net")
    sas_token: SecretStr | None = Field(None, description="SAS token with read and list permissions (secret)")
    connection_string: SecretStr | None = Field(None, description="Azure Storage connection string (secret)")
    manifest: str | None = Field(None, max_length=1024, description="blob path of an .xlsx or .csv manifest")
    rows: list[ManifestRow] | None = Field(None, description="the manifest's rows inline")
    prefix: str | None = Field(None, max_length=1024, description="take every blob under this prefix")
    sheet: str | None = Field(None, max_length=100, description="manifest sheet name (default: the first)")
    blob_column: str = Field("blob", min_length=1, max_length=100, description="column naming the blob or URL")
    label_column: str | None = Field("label", max_length=100, description="column holding the label")
    format: Literal[RECORD_FORMATS] | None = Field(None, description="record format (default: detect)")  # type: ignore[valid-type]

    @field_validator("account_url")
    @classmethod
    def _account_url_is_http(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("account_url must be an http(s) URL such as https://<account>.blob.core.windows.net")
        return value.strip()

    @field_validator("manifest")
    @classmethod
    def _manifest_is_table(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower().startswith(("http://", "https://")):
            raise ValueError("manifest is the path of a blob in the container, not a URL")
        if value is not None and not value.lower().endswith((".xlsx", ".csv")):
            raise ValueError("manifest must be an .xlsx or .csv blob")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> IngestionJobRequest:
        if self.account_url and urlsplit(self.account_url).query:
            if self.sas_token is not None:
                raise ValueError("account_url carries a query string and sas_token is given too: pass one SAS token")
            self.sas_token = SecretStr(urlsplit(self.account_url).query)
            self.account_url = strip_query(self.account_url)
        if self.connection_string is not None:
            if self.sas_token is not None:
                raise ValueError("give either connection_string or sas_token, not both")
            derived = account_url_from_connection_string(self.connection_string.get_secret_value())
            if self.account_url and strip_query(self.account_url) != derived:
                raise ValueError("account_url differs from the blob endpoint of connection_string")
            self.account_url = derived
        elif self.sas_token is None or not self.account_url:
            raise ValueError("credentials missing: give connection_string, or account_url with sas_token")
        else:
            self.account_url = strip_query(self.account_url)
            self.sas_token = SecretStr(self.sas_token.get_secret_value().lstrip("?"))
        chosen = [name for name in ("manifest", "rows", "prefix") if getattr(self, name) is not None]
        if len(chosen) > 1:
            raise ValueError(f"give one of manifest, rows or prefix, not {' and '.join(chosen)}")
        if self.rows is not None and not self.rows:
            raise ValueError("rows is empty")
        return self

    @property
    def auth(self) -> str:
        return "connection_string" if self.connection_string is not None else "sas_token"

    def credential(self) -> StorageCredential:
        return StorageCredential(
            sas_token=self.sas_token.get_secret_value() if self.sas_token else None,
            connection_string=self.connection_string.get_secret_value() if self.connection_string else None,
        )

    def spec(self) -> dict[str, Any]:
        """Everything but the source and the secrets: what the job row keeps."""
        return self.model_dump(
            mode="json", include={"manifest", "rows", "prefix", "sheet", "blob_column", "label_column", "format"}
        )


class StorageCredential(BaseModel):
    """The secret half of a job's source. ``repr`` hides the values."""

    sas_token: SecretStr | None = None
    connection_string: SecretStr | None = None

    def to_bytes(self) -> bytes:
        return json.dumps({key: value.get_secret_value() for key, value in self if value is not None}).encode()


class IngestionFailureView(BaseModel):
    blob: str
    reason: str


class IngestionJobView(BaseModel):
    """What the API and the CLI show of a job: never the credential."""

    id: int
    dataset: str
    source: str  # account URL / container, without any token
    auth: str
    manifest: str | None
    manifest_rows: int | None
    prefix: str | None
    sheet: str | None
    blob_column: str
    label_column: str | None
    format: str | None
    status: str
    listed: int
    downloaded: int
    stored: int
    skipped: int
    failed: int
    attempts: int
    error: str | None
    worker_hostname: str | None = None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None = None
    finished_at: datetime | None
    failures: list[IngestionFailureView] = Field(default_factory=list)


# --- Credential encryption ---------------------------------------------------------------------------------------


def _fernet():
    from cryptography.fernet import Fernet

    from ecg_shared.settings import get_settings

    key = get_settings().secret_key
    if key is None or not key.get_secret_value():
        raise SecretKeyMissing(
            "ECG_SECRET_KEY is not set: queued ingestion jobs need it to keep the storage credential encrypted "
            'until a worker runs them (generate one with: python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"), or run `ecg ingest` in the foreground'
        )
    try:
        return Fernet(key.get_secret_value().encode())
    except ValueError:
        raise SecretKeyMissing("ECG_SECRET_KEY is not a Fernet key (32 url-safe base64-encoded bytes)") from None


def encrypt_credential(credential: StorageCredential) -> bytes:
    return _fernet().encrypt(credential.to_bytes())


def job_credential(job: IngestionJob) -> StorageCredential:
    """Decrypt the credential a queued job keeps."""
    from cryptography.fernet import InvalidToken

    if job.credential_encrypted is None:
        raise CredentialUnavailable(
            f"ingestion job {job.id} keeps no storage credential (it ran in the foreground, or it succeeded and the "
            "credential was erased): give the SAS token or connection string again"
        )
    try:
        return StorageCredential(**json.loads(_fernet().decrypt(job.credential_encrypted)))
    except InvalidToken:
        raise CredentialUnavailable(
            f"ingestion job {job.id}: the stored credential cannot be decrypted with ECG_SECRET_KEY (was the key "
            "changed?)"
        ) from None


# --- State changes -----------------------------------------------------------------------------------------------


def create_ingestion_job(session: Session, request: IngestionJobRequest, keep_credential: bool = True) -> IngestionJob:
    """Insert a queued job. ``keep_credential``: encrypt the credential into the row (needed for a queued job;
    raises :class:`SecretKeyMissing` without ECG_SECRET_KEY); False: the caller keeps it in memory."""
    job = IngestionJob(
        dataset=request.dataset,
        account_url=request.account_url,
        container=request.container,
        auth=request.auth,
        credential_encrypted=encrypt_credential(request.credential()) if keep_credential else None,
        spec=request.spec(),
        status="queued",
        listed=0,
        downloaded=0,
        stored=0,
        skipped=0,
        failed=0,
        attempts=0,
    )
    session.add(job)
    session.flush()
    return job


def enqueue_ingestion_job(job_id: int) -> str:
    """Send the job to the ingestion queue; returns the Celery task id."""
    from ecg_shared.celery_app import INGESTION_QUEUE, enqueue

    return enqueue(INGESTION_TASK, INGESTION_QUEUE, job_id)


def get_ingestion_job(session: Session, job_id: int) -> IngestionJob:
    job = session.get(IngestionJob, job_id)
    if job is None:
        raise IngestionJobNotFound(f"ingestion job {job_id} not found")
    return job


def list_ingestion_jobs(session: Session, limit: int = 50) -> list[IngestionJob]:
    return list(session.scalars(select(IngestionJob).order_by(IngestionJob.id.desc()).limit(limit)))


def job_failures(session: Session, job_id: int, limit: int = MAX_FAILURES_IN_VIEW) -> list[IngestionFailure]:
    return list(
        session.scalars(
            select(IngestionFailure).where(IngestionFailure.job_id == job_id).order_by(IngestionFailure.id).limit(limit)
        )
    )


def ingestion_job_view(job: IngestionJob, session: Session | None = None) -> IngestionJobView:
    """The job as the API shows it, with its first failures (the session defaults to the row's own)."""
    session = session or Session.object_session(job)
    failures = job_failures(session, job.id) if session is not None and job.failed else []
    spec = job.spec or {}
    return IngestionJobView(
        id=job.id,
        dataset=job.dataset,
        source=f"{job.account_url}/{job.container}",
        auth=job.auth,
        manifest=spec.get("manifest"),
        manifest_rows=len(spec["rows"]) if spec.get("rows") else None,
        prefix=spec.get("prefix"),
        sheet=spec.get("sheet"),
        blob_column=spec.get("blob_column", "blob"),
        label_column=spec.get("label_column"),
        format=spec.get("format"),
        status=job.status,
        listed=job.listed,
        downloaded=job.downloaded,
        stored=job.stored,
        skipped=job.skipped,
        failed=job.failed,
        attempts=job.attempts,
        error=job.error,
        worker_hostname=job.worker_hostname,
        created_at=job.created_at,
        started_at=job.started_at,
        heartbeat_at=job.heartbeat_at,
        finished_at=job.finished_at,
        failures=[IngestionFailureView(blob=f.blob, reason=f.reason) for f in failures],
    )


class JobRunningElsewhere(RuntimeError):
    """The job's latest attempt is alive (fresh heartbeat) on another worker."""


def claim_ingestion_job(
    session: Session,
    job_id: int,
    hostname: str,
    stale_after_s: float,
    rerun_finished: bool = False,
    continuing: int | None = None,
) -> IngestionJob | None:
    """Lock the job and start a new attempt on ``hostname``; None when it must not run (again).

    A finished job is left alone unless ``rerun_finished`` (``ecg ingest --resume``); a job whose heartbeat is fresh
    belongs to a live attempt elsewhere (a duplicate delivery: None; an explicit rerun: :class:`JobRunningElsewhere`),
    unless it is our own attempt ``continuing`` after an outage; a running job whose heartbeat is stale lost its
    worker and is taken over.
    """
    job = session.get(IngestionJob, job_id, with_for_update=True)
    if job is None:
        raise IngestionJobNotFound(f"ingestion job {job_id} not found")
    if job.status in FINAL_STATUSES and not rerun_finished:
        return None
    ours = continuing is not None and job.status == "running" and job.attempts == continuing
    fresh = job.heartbeat_at and _now() - job.heartbeat_at < timedelta(seconds=stale_after_s)
    if job.status == "running" and fresh and not ours:
        if rerun_finished:
            raise JobRunningElsewhere(
                f"ingestion job {job_id} is running on {job.worker_hostname} (heartbeat "
                f"{(_now() - job.heartbeat_at).total_seconds():.0f} s ago); it is taken over only once its heartbeat "
                f"is {stale_after_s:g} s old (ECG_INGEST_STALE_AFTER_S)"
            )
        return None
    start_attempt(session, job)
    job.worker_hostname = hostname
    session.flush()
    return job


def start_attempt(session: Session, job: IngestionJob) -> None:
    """Mark the job running for a new attempt: counts and failures start again (stored rows stay, and count as
    skipped)."""
    session.execute(delete(IngestionFailure).where(IngestionFailure.job_id == job.id))
    job.status, job.error, job.finished_at = "running", None, None
    job.listed = job.downloaded = job.stored = job.skipped = job.failed = 0
    job.attempts += 1
    job.started_at = job.updated_at = job.heartbeat_at = _now()


def heartbeat_ingestion_job(session: Session, job_id: int, attempt: int) -> bool:
    """Refresh the heartbeat of our attempt; False when the attempt no longer owns the running job."""
    row = session.execute(
        update(IngestionJob)
        .where(IngestionJob.id == job_id, IngestionJob.status == "running", IngestionJob.attempts == attempt)
        .values(heartbeat_at=_now())
        .returning(IngestionJob.id)
    ).first()
    return row is not None


def note_interruption(session: Session, job_id: int, attempt: int, reason: str) -> None:
    """Our attempt stopped on an outage and the same process tries again after a pause: the job stays running (its
    heartbeat goes on) and shows why it is waiting."""
    session.execute(
        update(IngestionJob)
        .where(IngestionJob.id == job_id, IngestionJob.status == "running", IngestionJob.attempts == attempt)
        .values(error=redact(reason), updated_at=_now())
    )


def requeue_stale_ingestion_jobs(
    session: Session, stale_after_s: float, max_attempts: int, enqueue: Callable[[int], Any]
) -> tuple[list[int], list[int]]:
    """Running jobs whose heartbeat is older than ``stale_after_s`` lost their worker (a killed worker, or a foreground
    ``ecg ingest`` that died): queue each again (``enqueue`` sends its task) while it has attempts left and keeps its
    credential, else mark it failed with the reason. Returns (queued, failed) ids. As for training jobs, the task is
    sent before the commit: a task that finds the job still running with a stale heartbeat takes it over."""
    cutoff = _now() - timedelta(seconds=stale_after_s)
    last_sign = func.coalesce(IngestionJob.heartbeat_at, IngestionJob.updated_at, IngestionJob.started_at)
    jobs = session.scalars(
        select(IngestionJob)
        .where(IngestionJob.status == "running", last_sign < cutoff)
        .order_by(IngestionJob.id)
        .with_for_update(skip_locked=True)
    ).all()
    queued, failed = [], []
    for job in jobs:
        since = job.heartbeat_at or job.updated_at or job.started_at
        lost = (
            f"worker {job.worker_hostname or '(unknown)'} lost during attempt {job.attempts} "
            f"(no heartbeat since {since:%Y-%m-%d %H:%M:%S} UTC)"
        )
        if job.credential_encrypted is None:
            finish_job(
                session,
                job,
                f"{lost}; it ran in the foreground, so no worker has its credential: "
                f"run `ecg ingest --resume {job.id}` with the SAS token or connection string",
            )
            failed.append(job.id)
        elif job.attempts >= max_attempts:
            finish_job(session, job, f"{lost}; gave up after {job.attempts} attempts (ECG_INGEST_MAX_ATTEMPTS)")
            failed.append(job.id)
        else:
            enqueue(job.id)
            job.status, job.error, job.updated_at = "queued", f"{lost}; queued again", _now()
            queued.append(job.id)
    session.flush()
    return queued, failed


def _now() -> datetime:
    return datetime.now(UTC)


def finish_job(session: Session, job: IngestionJob, error: str | None = None) -> None:
    """Succeeded (and the kept credential erased), or failed with ``error`` (the credential kept for a rerun)."""
    job.status = "failed" if error else "succeeded"
    job.error = redact(error) if error else None
    if not error:
        job.credential_encrypted = None
    job.finished_at = job.updated_at = datetime.now(UTC)


def redact(message: str) -> str:
    """Belt and braces: drop anything that looks like a SAS signature or an account key from an error message."""
    sas_field = r"(?i)(?<![a-z])(sig|se|sp|sv|st|spr|srt|ss|sr|skoid|sktid|skt|ske|sks|skv)=[^&\s\"']+"
    message = re.sub(sas_field, r"\1=REDACTED", message)
    return re.sub(r"(?i)(AccountKey|SharedAccessSignature)=[^;\s]+", r"\1=REDACTED", message)
