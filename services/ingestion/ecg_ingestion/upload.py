"""``ecg dataset upload``: a local data set into a blob container, with the Excel manifest a clinic would keep.

``wfdb``: each record's ``.hea`` and its ``.mat``/``.dat`` as two blobs under their own names; the manifest names the
header. ``wellnest``: each 12-lead record converted into a Wellnest device blob (500 Hz, UUID name, no extension), as
the device uploads them. Labels (REFERENCE.csv or the headers' ``#Dx``, through ``read_ecg``) go to the manifest's
``label`` column, the record name to its ``record`` column.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from azure.core.exceptions import AzureError, ResourceExistsError

from ecg_ingestion.manifest import MANIFEST_NAME, write_manifest_xlsx
from ecg_ingestion.storage import BlobSource, StorageAccessError, access_error, blob_error
from ecg_shared.formats import EcgFormatError, read_ecg, write_wellnest
from ecg_shared.jobs.ingestion import ManifestRow

UPLOAD_FORMATS = ("wfdb", "wellnest")
UPLOAD_THREADS = 8


@dataclass
class UploadSummary:
    container: str
    manifest_blob: str
    uploaded: int = 0  # recordings (a WFDB recording is two blobs)
    failures: list[tuple[str, str]] = field(default_factory=list)


def local_records(directory: Path, limit: int | None = None) -> list[Path]:
    """The WFDB headers of ``directory``, sorted, at most ``limit``."""
    headers = sorted(directory.glob("*.hea"))
    return headers[:limit] if limit else headers


def upload_dataset(
    directory: Path,
    source: BlobSource,
    fmt: str = "wfdb",
    limit: int | None = None,
    prefix: str = "",
    progress: Callable[[int], None] | None = None,
) -> UploadSummary:
    if fmt not in UPLOAD_FORMATS:
        raise ValueError(f"unknown upload format {fmt!r}; choose one of {', '.join(UPLOAD_FORMATS)}")
    headers = local_records(directory, limit)
    if not headers:
        raise ValueError(f"no WFDB records (.hea files) in {directory}")
    prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    summary = UploadSummary(source.container, prefix + MANIFEST_NAME)
    container = source.sync_container()
    try:
        container.create_container()
    except ResourceExistsError:
        pass
    except AzureError as exc:
        raise access_error(exc, source, "creating the container") or StorageAccessError(
            blob_error(exc, "creating the container")
        ) from None

    def upload_one(header: Path) -> ManifestRow | tuple[str, str]:
        try:
            record = read_ecg(header)
        except EcgFormatError as exc:
            return header.name, str(exc)
        metadata = {"record": header.stem}
        try:
            if fmt == "wellnest":
                name = prefix + uuid.uuid4().hex
                container.upload_blob(name, write_wellnest(record), overwrite=True)
            else:
                name = prefix + header.name
                data_file = next(p for p in (header.with_suffix(".mat"), header.with_suffix(".dat")) if p.exists())
                container.upload_blob(name, header.read_bytes(), overwrite=True)
                container.upload_blob(prefix + data_file.name, data_file.read_bytes(), overwrite=True)
        except EcgFormatError as exc:
            return header.name, str(exc)
        except AzureError as exc:
            error = access_error(exc, source, f"uploading {header.name}")
            if error:
                raise error from None
            return header.name, blob_error(exc, "upload")
        if progress:
            progress(1)
        return ManifestRow(blob=name, label=record.label, metadata=metadata)

    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        results = list(pool.map(upload_one, headers))
    rows = [r for r in results if isinstance(r, ManifestRow)]
    summary.failures = [r for r in results if not isinstance(r, ManifestRow)]
    summary.uploaded = len(rows)
    if rows:
        try:
            container.upload_blob(summary.manifest_blob, write_manifest_xlsx(rows), overwrite=True)
        except AzureError as exc:
            raise access_error(exc, source, "uploading the manifest") or StorageAccessError(
                blob_error(exc, "uploading the manifest")
            ) from None
    return summary
