"""Decoding downloaded blobs into records, in a pool of processes (decoding is CPU-bound; the event loop is not).

:func:`decode_batch` runs in the pool's processes, a few recordings a task: it takes plain bytes and returns each
record and its content hash, cheap to pickle.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import posixpath
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from ecg_shared.db.store import content_hash
from ecg_shared.formats import EcgFormatError, read_ecg, read_wfdb_files
from ecg_shared.formats.record import Record


@dataclass
class Decoded:
    record: Record
    sha256: str


def decode_parts(parts: list[tuple[str, bytes]], fmt: str | None, source: str) -> Decoded:
    """Decode one recording from its blobs: a WFDB header and its signal files, or one blob.

    Raises :class:`ecg_shared.formats.EcgFormatError` (only) for content it cannot read.
    """
    digest = content_hash(b"".join(data for _, data in parts))
    if len(parts) > 1:
        record = read_wfdb_files({posixpath.basename(name): data for name, data in parts})
    else:
        name, data = parts[0]
        blob = io.BytesIO(data)
        blob.name = posixpath.basename(name)  # lets detection use the extension (.csv, .npy)
        record = read_ecg(blob, format=fmt)
    record.metadata["source"] = source
    return Decoded(record, digest)


def decode_batch(recordings: list[list[tuple[str, bytes]]], fmt: str | None, sources: list[str]) -> list[Decoded | str]:
    """:func:`decode_parts` for each recording, as one task of the pool; a recording it cannot read gives the reason
    (``EcgFormatError``'s message) in its place."""
    decoded: list[Decoded | str] = []
    for parts, source in zip(recordings, sources, strict=True):
        try:
            decoded.append(decode_parts(parts, fmt, source))
        except EcgFormatError as exc:
            decoded.append(str(exc))
    return decoded


def decode_workers(configured: int) -> int:
    return configured if configured > 0 else (os.cpu_count() or 1)


def decode_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` forked processes, all started now: call it before the job's event loop and database
    connections exist, so the children inherit no threads or locks in use (forkserver and spawn would be cleaner,
    but cannot start from a Celery prefork child, whose process authentication key cannot be sent)."""
    _allow_child_processes()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))
    pool.submit(int).result()  # with fork, the first task starts every process
    return pool


def _allow_child_processes() -> None:
    """Celery's prefork pool marks its children daemonic, and multiprocessing refuses to start processes from a
    daemonic one (it could not wait for them at exit). The job's pool is shut down, and its processes waited for,
    before the task returns (and they exit on their own if this process dies), so lift the flag for this process."""
    process = multiprocessing.current_process()
    if process.daemon:
        process._config["daemon"] = False
