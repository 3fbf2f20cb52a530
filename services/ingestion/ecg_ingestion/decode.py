"""Decoding downloaded blobs into records, in a pool of processes (decoding is CPU-bound; the event loop is not).

:func:`decode_parts` runs in the pool's processes: it takes plain bytes and returns the record and the content hash,
both cheap to pickle.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import posixpath
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from ecg_shared.db.store import content_hash
from ecg_shared.formats import read_ecg
from ecg_shared.formats.record import Record


@dataclass
class Decoded:
    record: Record
    sha256: str


def decode_parts(parts: list[tuple[str, bytes]], fmt: str | None, source: str) -> Decoded:
    """Decode one recording from its blobs: a WFDB header and its samples (zipped for the reader), or one blob.

    Raises :class:`ecg_shared.formats.EcgFormatError` (only) for content it cannot read.
    """
    digest = content_hash(b"".join(data for _, data in parts))
    if len(parts) > 1:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for name, data in parts:
                archive.writestr(posixpath.basename(name), data)
        record = read_ecg(buffer.getvalue(), format="wfdb")
    else:
        name, data = parts[0]
        blob = io.BytesIO(data)
        blob.name = posixpath.basename(name)  # lets detection use the extension (.csv, .npy)
        record = read_ecg(blob, format=fmt)
    record.metadata["source"] = source
    return Decoded(record, digest)


def decode_workers(configured: int) -> int:
    return configured if configured > 0 else (os.cpu_count() or 1)


def decode_pool(workers: int) -> ProcessPoolExecutor:
    """Processes started from a fork server that has the readers imported already (fast, and fork-safe: the server
    forks before this process has threads or open connections)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["ecg_ingestion.decode"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)
