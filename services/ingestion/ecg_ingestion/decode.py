"""Decoding downloaded blobs into records, in a pool of processes (decoding is CPU-bound; the event loop is not), or
in the job's own process on a small machine (:func:`decode_workers`).

:func:`decode_batch` runs in the pool's processes, a few recordings a task: it takes plain bytes and returns each
record and its content hash, cheap to pickle.
"""

from __future__ import annotations

import ctypes
import io
import multiprocessing
import os
import posixpath
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from ecg_shared.db.store import content_hash
from ecg_shared.formats import EcgFormatError, read_ecg, read_wfdb_files
from ecg_shared.formats.identifiers import mask_identifiers
from ecg_shared.formats.record import Record
from ecg_shared.machine import usable_cpus


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
    record.metadata["source"] = source  # stored with the file's identifiers masked (ecg_shared.db.store)
    return Decoded(record, digest)


def decode_batch(
    recordings: list[list[tuple[str, bytes]]], fmt: str | None, sources: list[str]
) -> list[Decoded | EcgFormatError]:
    """:func:`decode_parts` for each recording, as one task of the pool; a recording it cannot read gives its
    ``EcgFormatError`` in its place (which keeps the patient identifiers the reader found: :func:`failed_blob_name`)."""
    decoded: list[Decoded | EcgFormatError] = []
    for parts, source in zip(recordings, sources, strict=True):
        try:
            decoded.append(decode_parts(parts, fmt, source))
        except EcgFormatError as exc:
            decoded.append(exc)
    return decoded


def failed_blob_name(name: str, parts: list[tuple[str, bytes]], error: EcgFormatError) -> str:
    """The name a blob that could not be decoded is reported under: the patient identifiers the reader still found
    in it (an ISHNE annotation file's header, say) masked, as in a stored recording's source."""
    identifiers = getattr(error, "identifiers", frozenset())
    return mask_identifiers(name, identifiers, content_hash(b"".join(data for _, data in parts)))


IN_PROCESS_MAX_CPUS = 2  # on a machine of this many usable CPUs or fewer, a job decodes in its own process


def decode_workers(configured: int) -> int:
    """Decoding processes for a job (ECG_INGEST_DECODE_WORKERS): the setting, else none where the machine has at
    most IN_PROCESS_MAX_CPUS usable CPUs (the job decodes in its own process: there the pool's pickling and pipes cost
    more CPU than its second process gives back; docs/ingestion.md), else one per usable CPU."""
    if configured > 0:
        return configured
    cpus = usable_cpus()
    return 0 if cpus <= IN_PROCESS_MAX_CPUS else cpus


def decode_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` forked processes, all started now (forkserver and spawn would be cleaner, but cannot
    start from a Celery prefork child, whose process authentication key cannot be sent).

    The processes die with this one (:func:`_die_with_parent`). They inherit its open database connections, so an
    orphan that outlived a SIGKILLed job process would keep that process's connection, and any row lock its open
    transaction held, alive in Postgres: the attempt that takes the job over would wait on the job's row forever.
    """
    _allow_child_processes()
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )
    pool.submit(int).result()  # with fork, the first task starts every process
    return pool


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """In a decoding process: ask Linux for SIGKILL when the job process dies, and exit if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def _allow_child_processes() -> None:
    """Celery's prefork pool marks its children daemonic, and multiprocessing refuses to start processes from a
    daemonic one (it could not wait for them at exit). The job's pool is shut down, and its processes waited for,
    before the task returns (and :func:`_die_with_parent` ends them if this process dies), so lift the flag for this
    process."""
    process = multiprocessing.current_process()
    if process.daemon:
        process._config["daemon"] = False
