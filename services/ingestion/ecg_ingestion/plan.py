"""What a job downloads: manifest rows or a prefix listing turned into work items, each with its blobs and identity.

A WFDB record is two blobs, the ``.hea`` header (the one a manifest names) and its ``.dat`` or ``.mat`` samples
beside it; the job downloads both and decodes them together. Its identity is the header's URL, its version the two
etags joined by a comma. Every other format is one blob.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from typing import Any

from ecg_ingestion.storage import BlobSource
from ecg_shared.jobs.ingestion import ManifestRow, strip_query

WFDB_DATA_SUFFIXES = (".mat", ".dat")
# Files a data set folder holds beside its recordings; a prefix job does not try to decode them.
NOT_RECORDINGS = {"RECORDS", "REFERENCE.csv", "ANNOTATORS", "SHA256SUMS.txt", "LICENSE.txt", "README.md"}
NOT_RECORDING_SUFFIXES = (".xlsx", ".xls")


@dataclass(frozen=True)
class BlobInfo:
    name: str
    etag: str  # as the service sends it, quotes included (for If-Match)
    size: int | None = None

    @property
    def version(self) -> str:
        return self.etag.strip('"')


@dataclass
class WorkItem:
    name: str  # the blob the manifest names (the header, for WFDB)
    parts: list[BlobInfo]
    source_uri: str
    source_version: str
    label: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    items: list[WorkItem]
    failures: list[tuple[str, str]]  # (blob, reason) known before downloading anything
    duplicates: int = 0  # manifest rows naming a blob an earlier row named


def listing_prefix(names: list[str]) -> str:
    """The longest prefix all ``names`` share (a header's without ``.hea``, so its samples blob is listed too):
    what to list to learn their etags."""
    bases = [name[: -len(".hea")] if name.lower().endswith(".hea") else name for name in names]
    return os.path.commonprefix(bases) if bases else ""  # noqa: RUF071 - a string prefix, as blob listing wants


def _wfdb_data(name: str, listing: dict[str, BlobInfo]) -> BlobInfo | None:
    base = name[: -len(".hea")]
    return next((listing[base + s] for s in WFDB_DATA_SUFFIXES if base + s in listing), None)


def _work_item(
    name: str, listing: dict[str, BlobInfo], source: BlobSource, label: str | None, metadata: dict[str, Any]
) -> WorkItem | str:
    """The item for blob ``name``, or the reason it cannot be taken."""
    if name not in listing:
        return "blob not found"
    parts = [listing[name]]
    if name.lower().endswith(".hea"):
        data = _wfdb_data(name, listing)
        if data is None:
            return "WFDB header without its samples: no .mat or .dat blob of the same name beside it"
        parts.append(data)
    return WorkItem(
        name=name,
        parts=parts,
        source_uri=source.blob_url(name),
        source_version=",".join(p.version for p in parts),
        label=label,
        metadata={**metadata, "blob": name},
    )


def plan_manifest(rows: list[ManifestRow], listing: dict[str, BlobInfo], source: BlobSource) -> Plan:
    plan = Plan([], [])
    seen: set[str] = set()
    for row in rows:
        try:
            name = source.blob_name(row.blob)
        except ValueError as exc:
            plan.failures.append((strip_query(row.blob), str(exc)))  # a reference is stored without a query
            continue
        if name in seen:
            plan.duplicates += 1
            continue
        seen.add(name)
        item = _work_item(name, listing, source, row.label, dict(row.metadata))
        if isinstance(item, str):
            plan.failures.append((name, item))
        else:
            plan.items.append(item)
    return plan


def reference_blobs(listing: dict[str, BlobInfo]) -> list[str]:
    """CinC-style ``REFERENCE.csv`` blobs (``NAME,LABEL``) whose labels a prefix job applies to their folder."""
    return [name for name in listing if posixpath.basename(name) == "REFERENCE.csv"]


def plan_prefix(
    listing: dict[str, BlobInfo], source: BlobSource, folder_labels: dict[str, dict[str, str]] | None = None
) -> Plan:
    """Every recording in ``listing``: WFDB pairs, and each other blob that is not a known side file."""
    folder_labels = folder_labels or {}
    plan = Plan([], [])
    headers = {name for name in listing if name.lower().endswith(".hea")}
    paired = {data.name for h in headers if (data := _wfdb_data(h, listing)) is not None}
    for name in sorted(listing):
        base = posixpath.basename(name)
        if name.endswith("/") or base in NOT_RECORDINGS or base.lower().endswith(NOT_RECORDING_SUFFIXES):
            continue
        if name in paired:
            continue
        if name.lower().endswith(WFDB_DATA_SUFFIXES) and name[:-4] + ".hea" not in listing:
            plan.failures.append((name, "WFDB samples without their .hea header"))
            continue
        stem = posixpath.splitext(base)[0] if name.lower().endswith(".hea") else base
        label = folder_labels.get(posixpath.dirname(name), {}).get(stem)
        item = _work_item(name, listing, source, label, {})
        if isinstance(item, str):
            plan.failures.append((name, item))
        else:
            plan.items.append(item)
    return plan
