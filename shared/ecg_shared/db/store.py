"""Storing recordings: batched, idempotent inserts (a recording already stored is skipped, never duplicated)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ecg_shared.db.models import Recording, json_safe, signal_columns
from ecg_shared.formats.identifiers import mask_identifiers
from ecg_shared.formats.record import Record


@dataclass
class StoreItem:
    record: Record
    source_uri: str
    source_version: str
    content_sha256: str
    label: str | None = None


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_INSERT = (
    insert(Recording.__table__)
    .on_conflict_do_nothing(constraint="uq_recordings_source")
    .returning(Recording.__table__.c.source_uri, Recording.__table__.c.source_version, Recording.__table__.c.id)
)


def store_recordings(session: Session, dataset: str, items: Iterable[StoreItem]) -> list[int | None]:
    """Insert many recordings in one statement. Returns each item's new id, or None where it was already stored."""
    items = list(items)
    if not items:
        return []
    uris = [stored_source_uri(item) for item in items]
    rows = [
        {
            "dataset": dataset,
            "source_uri": uri,
            "source_version": item.source_version,
            "content_sha256": item.content_sha256,
            "format": item.record.format or "unknown",
            "sampling_rate": item.record.sampling_rate,
            "lead_names": item.record.lead_names,
            "n_samples": item.record.n_samples,
            **signal_columns(item.record),
            "label": item.label or item.record.label,
            "metadata": json_safe(stored_metadata(item)),
        }
        for item, uri in zip(items, uris, strict=True)
    ]
    # One statement compiled once (SQLAlchemy caches it) and executed for many rows: SQLAlchemy's "insertmanyvalues"
    # sends them as multi-row INSERTs. (A .values(rows) statement would be compiled anew for every batch, a bind
    # parameter per cell: most of the client's CPU for a batch.)
    inserted = {(uri, version): rid for uri, version, rid in session.execute(_INSERT, rows)}
    return [inserted.get((uri, item.source_version)) for item, uri in zip(items, uris, strict=True)]


def stored_source_uri(item: StoreItem) -> str:
    """The name a recording is stored under: its source with the file's patient identifiers masked (a hospital's
    export may be named after the patient; ecg_shared.formats.identifiers)."""
    return mask_identifiers(item.source_uri, item.record.identifiers, item.content_sha256)


def stored_metadata(item: StoreItem) -> dict:
    """The record's metadata with the file's patient identifiers masked in its text values (the blob's name, a
    manifest's columns)."""
    identifiers, digest = item.record.identifiers, item.content_sha256
    return {
        key: mask_identifiers(value, identifiers, digest) if isinstance(value, str) else value
        for key, value in item.record.metadata.items()
    }


def import_directory(
    session: Session, directory: Path, dataset: str, batch_size: int = 200, progress=None
) -> tuple[int, int, list[tuple[str, str]]]:
    """Read every record under ``directory`` (WFDB headers, or other files read_ecg detects) into ``dataset``.

    Returns (stored, skipped as already present, failures as (file, reason)).
    """
    from ecg_shared.formats import EcgFormatError, read_ecg

    headers = sorted(directory.rglob("*.hea"))
    files = headers or sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    stored = skipped = 0
    failures: list[tuple[str, str]] = []
    batch: list[StoreItem] = []

    def flush() -> None:
        nonlocal stored, skipped
        ids = store_recordings(session, dataset, batch)
        stored += sum(i is not None for i in ids)
        skipped += sum(i is None for i in ids)
        session.commit()
        batch.clear()

    for path in files:
        try:
            record = read_ecg(path)
        except EcgFormatError as exc:
            failures.append((str(path), str(exc)))
            continue
        # A WFDB record is its header and signal files; any other file is the recording by itself (an ISHNE .ecg's
        # .ann beside it is not part of it).
        parts = sorted(path.parent.glob(path.stem + ".*")) if headers else [path]
        content = b"".join(p.read_bytes() for p in parts)
        digest = content_hash(content)
        uri = path.with_suffix("").resolve().as_uri() if headers else path.resolve().as_uri()
        batch.append(StoreItem(record, uri, digest, digest))
        if len(batch) >= batch_size:
            flush()
        if progress:
            progress(1)
    if batch:
        flush()
    return stored, skipped, failures
