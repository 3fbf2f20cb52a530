"""The model registry: versions of named models, their stage, metrics and model card, files in the artifact store.

Vocabulary as in MLflow: a *model* has numbered *versions*; each version has a *stage* (candidate, active,
archived); *promoting* a version makes it the one active version of its model and archives the previous one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from ecg_shared.artifacts import ArtifactNotFound, ArtifactStore, sha256
from ecg_shared.db.models import ModelVersion
from ecg_shared.model_metadata import ModelMetadata


class RegistryError(LookupError):
    pass


def register_version(
    session: Session,
    metadata: ModelMetadata,
    onnx_bytes: bytes,
    *,
    metrics: dict | None = None,
    model_card: dict | None = None,
    store: ArtifactStore | None = None,
) -> ModelVersion:
    """Store the file, then add the next version of ``metadata.name`` as a candidate (in the caller's transaction).

    The version row and its file are written in that order so a crash leaves at worst an unreferenced blob, never a
    row without a file. Blob names carry the content hash, so a file is never overwritten by a different one (a
    retried job, or two registries sharing a container).
    """
    # Serialise version numbering per model name across concurrent workers.
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": metadata.name})
    latest = session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.name == metadata.name)) or 0
    version = latest + 1
    metadata.version = version
    store = store or ArtifactStore()
    digest = sha256(onnx_bytes)
    uri = store.put(f"{metadata.name}/{version}/{digest[:16]}.onnx", onnx_bytes)
    row = ModelVersion(
        name=metadata.name,
        version=version,
        family=metadata.family,
        stage="candidate",
        metrics=metrics or {},
        model_card=model_card or {},
        onnx_metadata=metadata.to_dict(),
        artifact_uri=uri,
        artifact_sha256=digest,
        training_job_id=metadata.training_job_id,
    )
    session.add(row)
    session.flush()
    return row


def list_versions(session: Session, name: str | None = None) -> list[ModelVersion]:
    query = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version.desc())
    if name:
        query = query.where(ModelVersion.name == name)
    return list(session.scalars(query))


def get_version(session: Session, name: str, version: int) -> ModelVersion:
    row = session.scalar(select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version))
    if row is None:
        raise RegistryError(f"model {name!r} has no version {version}")
    return row


def active_versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).where(ModelVersion.stage == "active").order_by(ModelVersion.name)))


def promote(session: Session, name: str, version: int) -> ModelVersion:
    """Make ``name`` v``version`` the active version; the previously active one becomes archived."""
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
    row = get_version(session, name, version)
    if row.stage == "active":
        return row
    for previous in session.scalars(
        select(ModelVersion).where(ModelVersion.name == name, ModelVersion.stage == "active")
    ):
        previous.stage = "archived"
    session.flush()
    row.stage = "active"
    row.promoted_at = datetime.now(UTC)
    session.flush()
    return row


def archive(session: Session, name: str, version: int) -> ModelVersion:
    row = get_version(session, name, version)
    row.stage = "archived"
    session.flush()
    return row


def artifact_problem(row: ModelVersion, store: ArtifactStore | None = None) -> str | None:
    """What is wrong with the version's file in the artifact store (missing, or not the registered file), or None."""
    store = store or ArtifactStore()
    try:
        data = store.get(row.artifact_uri)
    except ArtifactNotFound:
        return f"file missing: {row.artifact_uri}"
    digest = sha256(data)
    if digest != row.artifact_sha256:
        return (
            f"checksum differs: {row.artifact_uri} has sha256 {digest[:16]}..., the registered file "
            f"{row.artifact_sha256[:16]}..."
        )
    return None


def registry_revision(session: Session) -> str:
    """A cheap fingerprint of which versions are active; changes whenever a version is promoted or archived."""
    rows = session.execute(
        select(ModelVersion.name, ModelVersion.version)
        .where(ModelVersion.stage == "active")
        .order_by(ModelVersion.name)
    ).all()
    return ";".join(f"{n}:{v}" for n, v in rows)
