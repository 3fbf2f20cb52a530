"""Running an ingestion job: list or read the manifest, skip what is stored, download, decode, store in batches.

The pipeline, in one asyncio event loop::

    list blobs / read manifest ─► plan ─► skip (dataset, URL, etag) already stored
        ─► N download coroutines (plain GETs on one aiohttp session, ecg_ingestion.reader; N =
           ECG_INGEST_CONCURRENCY blobs in flight)
        ─► decode in a process pool (ECG_INGEST_DECODE_WORKERS; none on 2 CPUs: in this process), DECODE_BATCH a task
        ─► one storer: batches of ECG_INGEST_BATCH_SIZE, one INSERT ... ON CONFLICT DO NOTHING and the job's counts
           in one transaction (in a thread, so downloads go on meanwhile)

Exactly once: rows are unique by (dataset, source URL, etag) and each batch commits with the counts, so a job killed
at any point and run again stores each recording once, and skips (before downloading) what an earlier run stored.

Outages: a database or storage that cannot be reached (after the in-attempt retries) ends the attempt, not the job:
the same process starts a new attempt after a pause (5 s, doubling up to 60 s), up to ECG_INGEST_MAX_ATTEMPTS
attempts; then the job fails with the reason. A heartbeat thread keeps the job's heartbeat fresh meanwhile, so the
workers' reaper knows the job has a live process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from azure.core.exceptions import AzureError
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from ecg_ingestion.decode import Decoded, decode_batch, decode_pool, decode_workers, failed_blob_name
from ecg_ingestion.manifest import ManifestError, read_manifest
from ecg_ingestion.plan import (
    BlobInfo,
    Plan,
    WorkItem,
    listing_prefix,
    plan_manifest,
    plan_prefix,
    reference_blobs,
)
from ecg_ingestion.reader import BlobReader
from ecg_ingestion.storage import BlobSource, StorageAccessError, access_error, blob_error
from ecg_shared.db import Recording, session_scope
from ecg_shared.db.store import StoreItem, store_recordings
from ecg_shared.formats import EcgFormatError
from ecg_shared.formats.wfdb_format import parse_reference
from ecg_shared.jobs.ingestion import (
    CredentialUnavailable,
    IngestionFailure,
    IngestionJob,
    IngestionJobView,
    ManifestRow,
    StorageCredential,
    claim_ingestion_job,
    finish_job,
    get_ingestion_job,
    heartbeat_ingestion_job,
    ingestion_job_view,
    job_credential,
    note_interruption,
    redact,
)
from ecg_shared.settings import get_settings

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0  # a partial batch is stored after this long, so progress shows on slow jobs
DECODE_BATCH, DECODE_WAIT_S = 16, 0.05  # recordings per task to the decoding processes; the longest a batch waits
DB_RETRIES = 5  # a batch that cannot reach Postgres is retried (1, 2, 4, 8 s apart) before the attempt stops
FIRST_PAUSE_S, LONGEST_PAUSE_S = 5.0, 60.0  # between attempts after an outage: 5, 10, 20, 40, 60, 60 ... s


class IngestionUnavailable(RuntimeError):
    """The database or the storage stayed unreachable through every attempt; the message says which."""


class _Outage(Exception):
    def __init__(self, reason: str, attempt: int | None) -> None:
        super().__init__(reason)
        self.reason, self.attempt = reason, attempt


class _AttemptLost(Exception):
    """Another attempt took the job over (ours lost its heartbeat for too long): stop without touching the job."""


def outage_reason(exc: BaseException) -> str | None:
    """Why ``exc`` is an outage to wait out (database or storage unreachable), or None."""
    if isinstance(exc, (OperationalError, InterfaceError)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return f"database unavailable ({type(exc.orig or exc).__name__})"
    if isinstance(exc, StorageAccessError) and exc.transient:
        return str(exc)
    return None


@dataclass
class Counts:
    listed: int = 0
    downloaded: int = 0
    stored: int = 0
    skipped: int = 0
    failed: int = 0


Progress = Callable[[Counts], None]


@dataclass
class _Failure:
    blob: str
    reason: str


_DONE = object()


def run_ingestion_job(
    job_id: int,
    credential: StorageCredential | None = None,
    progress: Progress | None = None,
    rerun_finished: bool = False,
) -> IngestionJobView:
    """Run (or resume) job ``job_id`` to the end and return its view. ``credential``: the foreground caller's, kept
    in memory; None: the one the queued job keeps encrypted. ``rerun_finished``: run a finished job again (``ecg
    ingest --resume``); else a finished job, or one a live attempt elsewhere runs, is returned as it is.

    Errors that end the job are recorded on it, not raised. Outages are retried (see the module's docstring); raises
    :class:`IngestionUnavailable` when one outlasts every attempt and even the failure cannot be recorded, and
    :class:`~ecg_shared.jobs.ingestion.JobRunningElsewhere` for a rerun of a job that a live attempt runs.
    """
    settings = get_settings()
    max_attempts = max(1, settings.ingest_max_attempts)
    heartbeat = _Heartbeat(job_id, settings.ingest_heartbeat_s)
    heartbeat.start()
    attempt, pause = None, FIRST_PAUSE_S
    try:
        for tries in range(1, max_attempts + 1):
            try:
                return _run_attempt(job_id, credential, progress, rerun_finished, attempt, heartbeat)
            except _Outage as outage:
                attempt = outage.attempt or attempt
                reason = outage.reason
            if tries == max_attempts:
                break
            log.warning("ingestion job %s: %s; try %d of %d in %.0f s", job_id, reason, tries + 1, max_attempts, pause)
            _quietly(note_interruption, job_id, attempt, f"attempt {attempt} stopped: {reason}; trying again")
            time.sleep(pause)
            pause = min(LONGEST_PAUSE_S, pause * 2)
        error = f"gave up after {max_attempts} attempts: {reason}"
        try:
            with session_scope() as session:
                job = get_ingestion_job(session, job_id)
                ours = job.status == "running" and job.attempts == attempt
                if ours or job.status == "queued":  # queued: no attempt of ours could even claim it
                    finish_job(session, job, error)
                return ingestion_job_view(job, session)
        except Exception as exc:
            if outage_reason(exc) is None:
                raise
            raise IngestionUnavailable(f"ingestion job {job_id} {error}") from None
    except KeyboardInterrupt:  # Ctrl-C on a foreground `ecg ingest`: the job must not linger as running
        if attempt is None:
            attempt = heartbeat.attempt
        _quietly(_fail_attempt, job_id, attempt, f"interrupted (Ctrl-C); `ecg ingest --resume {job_id}` goes on")
        raise
    finally:
        heartbeat.stop()


def _run_attempt(
    job_id: int,
    credential: StorageCredential | None,
    progress: Progress | None,
    rerun_finished: bool,
    continuing: int | None,
    heartbeat: _Heartbeat,
) -> IngestionJobView:
    attempt = continuing
    try:
        with session_scope() as session:
            job = claim_ingestion_job(
                session,
                job_id,
                socket.gethostname(),
                get_settings().ingest_stale_after_s,
                rerun_finished=rerun_finished,
                continuing=continuing,
            )
            if job is None:
                view = ingestion_job_view(get_ingestion_job(session, job_id), session)
                log.info("ingestion job %s not run: it is %s (attempt %s)", job_id, view.status, view.attempts)
                return view
            attempt = heartbeat.attempt = job.attempts
            try:
                credential = credential or job_credential(job)
            except CredentialUnavailable as exc:
                finish_job(session, job, str(exc))
                return ingestion_job_view(job, session)
            source = BlobSource(job.account_url, job.container, credential)
            run = JobRun(job.id, attempt, job.dataset, source, dict(job.spec), progress)
    except Exception as exc:
        if outage_reason(exc) is None:
            raise
        raise _Outage(outage_reason(exc), attempt) from None
    log.info(
        "ingestion job %s: attempt %s started (dataset %s, source %s/%s)",
        job_id,
        attempt,
        run.dataset,
        source.account_url,
        source.container,
    )
    error = None
    try:
        with decode_pool(run.workers) if run.workers else contextlib.nullcontext() as pool:
            run.pool = pool  # None: decoded in this process
            asyncio.run(run.run())
    except _AttemptLost:
        log.warning("ingestion job %s: attempt %s lost the job to a newer attempt; stopped", job_id, attempt)
        with session_scope() as session:
            return ingestion_job_view(get_ingestion_job(session, job_id), session)
    except Exception as exc:
        if outage_reason(exc):
            raise _Outage(outage_reason(exc), attempt) from None
        if isinstance(exc, (StorageAccessError, ManifestError, CredentialUnavailable)):
            error = str(exc)
        else:
            log.exception("ingestion job %s: unexpected error", job_id)
            error = f"internal error: {type(exc).__name__}: {exc}"
    try:
        with session_scope() as session:
            job = get_ingestion_job(session, job_id)
            if job.status == "running" and job.attempts == attempt:
                finish_job(session, job, error)
            view = ingestion_job_view(job, session)
    except Exception as exc:
        if outage_reason(exc) is None:
            raise
        raise _Outage(outage_reason(exc), attempt) from None
    log.info(
        "ingestion job %s %s: listed %d, downloaded %d, stored %d, skipped %d, failed %d%s",
        job_id,
        view.status,
        view.listed,
        view.downloaded,
        view.stored,
        view.skipped,
        view.failed,
        f" ({redact(error)})" if error else "",
    )
    return view


def _fail_attempt(session, job_id: int, attempt: int | None, error: str) -> None:
    job = get_ingestion_job(session, job_id)
    if job.status == "running" and (attempt is None or job.attempts == attempt):
        finish_job(session, job, error)


def _quietly(change, *args) -> None:
    """``change(session, *args)``, as a best effort: an outage only costs the change."""
    try:
        with session_scope() as session:
            change(session, *args)
    except Exception as exc:
        if outage_reason(exc) is None:
            raise


class _Heartbeat(threading.Thread):
    """Refreshes the heartbeat of the job's current ``attempt`` (set once claimed) every ``interval_s``."""

    def __init__(self, job_id: int, interval_s: float) -> None:
        super().__init__(name=f"ingestion-heartbeat-{job_id}", daemon=True)
        self.job_id, self.interval_s = job_id, interval_s
        self.attempt: int | None = None
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            if self.attempt is None:
                continue
            try:
                with session_scope() as session:
                    heartbeat_ingestion_job(session, self.job_id, self.attempt)
            except Exception:  # an outage: the attempt itself notices; the next beat tries again
                log.debug("heartbeat of ingestion job %s failed", self.job_id, exc_info=True)

    def stop(self) -> None:
        self._stopping.set()


class JobRun:
    """One attempt at a job."""

    def __init__(
        self, job_id: int, attempt: int, dataset: str, source: BlobSource, spec: dict, progress: Progress | None
    ) -> None:
        settings = get_settings()
        self.job_id, self.attempt, self.dataset, self.source, self.spec = job_id, attempt, dataset, source, spec
        self.progress = progress
        self.concurrency = max(1, settings.ingest_concurrency)
        self.batch_size = max(1, settings.ingest_batch_size)
        self.workers = decode_workers(settings.ingest_decode_workers)
        self.counts = Counts()
        self.pool = None  # the decoding processes, set by run_ingestion_job
        self._downloaded_since_flush = 0

    async def run(self) -> None:
        async with self.source.reader() as reader:
            plan = await self._plan(reader)
            existing = await asyncio.to_thread(stored_versions, self.dataset, [i.source_uri for i in plan.items])
            todo = [i for i in plan.items if (i.source_uri, i.source_version) not in existing]
            self.counts.listed = len(plan.items) + len(plan.failures) + plan.duplicates
            already = len(plan.items) - len(todo) + plan.duplicates
            await asyncio.to_thread(
                self._flush, [], [_Failure(b, r) for b, r in plan.failures], 0, already, self.counts.listed
            )
            log.info(
                "ingestion job %s: %d listed, %d already stored, %d to download",
                self.job_id,
                self.counts.listed,
                already,
                len(todo),
            )
            if todo:
                await self._ingest(reader, todo)

    # --- planning --------------------------------------------------------------------------------------------------

    async def _plan(self, reader: BlobReader) -> Plan:
        if self.spec.get("prefix") is not None or not (self.spec.get("manifest") or self.spec.get("rows")):
            listing = await self._list(reader, self.spec.get("prefix") or "")
            labels = {}
            for name in reference_blobs(listing):
                try:
                    data = await self._download(reader, listing[name])
                except AzureError as exc:
                    raise access_error(exc, self.source, f"reading {name}") or StorageAccessError(
                        blob_error(exc, f"reading {name}")
                    ) from None
                labels[name.rpartition("/")[0]] = parse_reference(data)
            return plan_prefix(listing, self.source, labels)
        rows = await self._manifest_rows(reader)
        names = []
        for row in rows:
            try:
                names.append(self.source.blob_name(row.blob))
            except ValueError:
                continue
        listing = await self._list(reader, listing_prefix(names))
        return plan_manifest(rows, listing, self.source)

    async def _manifest_rows(self, reader: BlobReader) -> list[ManifestRow]:
        if self.spec.get("rows"):
            return [ManifestRow(**row) for row in self.spec["rows"]]
        name = self.spec["manifest"]
        try:
            data = await reader.download(self.source.blob_url(name))
        except AzureError as exc:
            error = access_error(exc, self.source, f"reading the manifest {name}")
            if error:
                raise error from None
            raise ManifestError(f"manifest {name!r}: {blob_error(exc)} in container {self.source.container}") from None
        return read_manifest(
            data, name, self.spec.get("sheet"), self.spec.get("blob_column") or "blob", self.spec.get("label_column")
        )

    async def _list(self, reader: BlobReader, prefix: str) -> dict[str, BlobInfo]:
        try:
            return await reader.list(prefix)
        except AzureError as exc:
            raise access_error(exc, self.source, "listing blobs") or StorageAccessError(
                blob_error(exc, "listing blobs")
            ) from None

    async def _download(self, reader: BlobReader, blob: BlobInfo) -> bytes:
        """The blob's bytes, as long as it still has the listed etag."""
        return await reader.download(self.source.blob_url(blob.name), blob.etag)

    # --- the pipeline ----------------------------------------------------------------------------------------------

    async def _ingest(self, reader: BlobReader, todo: list[WorkItem]) -> None:
        results: asyncio.Queue = asyncio.Queue(maxsize=self.batch_size)
        pending = iter(todo)

        async def download(decoder: _DecodeBatches) -> None:
            for item in pending:  # the coroutines share one iterator: each item is taken once
                try:
                    parts = [(blob.name, await self._download(reader, blob)) for blob in item.parts]
                except AzureError as exc:
                    error = access_error(exc, self.source, f"downloading {item.name}")
                    if error:
                        raise error from None
                    await results.put(_Failure(item.name, blob_error(exc)))
                    continue
                self._downloaded_since_flush += 1
                await decoder.add(item, parts)

        async def downloads() -> None:
            async with asyncio.TaskGroup() as group:
                decoder = _DecodeBatches(self.pool, self.spec.get("format"), results, group, self.workers)
                try:
                    async with asyncio.TaskGroup() as downloaders:
                        for _ in range(min(self.concurrency, len(todo))):
                            downloaders.create_task(download(decoder))
                    decoder.flush()
                finally:
                    decoder.stop()
            await results.put(_DONE)

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(downloads())
                group.create_task(self._store(results))
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None

    async def _store(self, results: asyncio.Queue) -> None:
        items: list[StoreItem] = []
        failures: list[_Failure] = []
        last_flush = time.monotonic()
        while True:
            entry = await results.get()
            if entry is _DONE:
                break
            if isinstance(entry, _Failure):
                failures.append(entry)
            else:
                items.append(_store_item(*entry))
            full = len(items) + len(failures) >= self.batch_size
            if full or (results.empty() and time.monotonic() - last_flush > FLUSH_INTERVAL_S):
                await self._flush_async(items, failures)
                items, failures, last_flush = [], [], time.monotonic()
        await self._flush_async(items, failures)

    async def _flush_async(self, items: list[StoreItem], failures: list[_Failure]) -> None:
        downloaded, self._downloaded_since_flush = self._downloaded_since_flush, 0
        await asyncio.to_thread(self._flush, items, failures, downloaded, 0, None)

    def _flush(
        self, items: list[StoreItem], failures: list[_Failure], downloaded: int, skipped: int, listed: int | None
    ) -> None:
        """Store a batch, its failures and the count changes in one transaction (retried while Postgres is away)."""
        for attempt in range(DB_RETRIES):
            try:
                stored = self._flush_once(items, failures, downloaded, skipped, listed)
                break
            except OperationalError as exc:
                if attempt == DB_RETRIES - 1:
                    raise
                log.warning(
                    "ingestion job %s: database unavailable (%s); retrying", self.job_id, type(exc.orig).__name__
                )
                time.sleep(2**attempt)
        self.counts.downloaded += downloaded
        self.counts.stored += stored
        self.counts.skipped += skipped + len(items) - stored
        self.counts.failed += len(failures)
        if self.progress:
            self.progress(self.counts)

    def _flush_once(self, items, failures, downloaded, skipped, listed) -> int:
        with session_scope() as session:
            ids = store_recordings(session, self.dataset, items)
            stored = sum(i is not None for i in ids)
            session.add_all(IngestionFailure(job_id=self.job_id, blob=f.blob, reason=f.reason) for f in failures)
            changes = {
                "downloaded": IngestionJob.downloaded + downloaded,
                "stored": IngestionJob.stored + stored,
                "skipped": IngestionJob.skipped + skipped + len(items) - stored,
                "failed": IngestionJob.failed + len(failures),
                "updated_at": datetime.now(UTC),
            }
            if listed is not None:
                changes["listed"] = listed
            owned = session.execute(
                update(IngestionJob)
                .where(
                    IngestionJob.id == self.job_id,
                    IngestionJob.status == "running",
                    IngestionJob.attempts == self.attempt,
                )
                .values(**changes)
            ).rowcount
            if not owned:
                raise _AttemptLost()  # rolls the batch back: the attempt that owns the job stores it
        return stored


class _DecodeBatches:
    """Hands downloaded recordings to the decoding processes up to DECODE_BATCH in one task, or what came within
    DECODE_WAIT_S: the process pool's cost per task (pickling, pipes, three threads woken; about 0.5 ms of CPU in
    all, three times an in-memory WFDB decode) is paid per batch, not per recording. The downloads go on meanwhile;
    at most ``DECODE_BATCH * 2 * workers`` recordings wait for decoding, so memory stays bounded."""

    def __init__(self, pool, fmt: str | None, results: asyncio.Queue, group: asyncio.TaskGroup, workers: int) -> None:
        self.pool, self.fmt, self.results, self.group = pool, fmt, results, group
        self.room = asyncio.Semaphore(DECODE_BATCH * 2 * max(workers, 1))
        self.batch: list[tuple[WorkItem, list[tuple[str, bytes]]]] = []
        self._timer: asyncio.TimerHandle | None = None

    async def add(self, item: WorkItem, parts: list[tuple[str, bytes]]) -> None:
        await self.room.acquire()
        self.batch.append((item, parts))
        if len(self.batch) >= DECODE_BATCH:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(DECODE_WAIT_S, self.flush)

    def flush(self) -> None:
        self.stop()
        batch, self.batch = self.batch, []
        if batch:
            try:
                self.group.create_task(self._decode(batch))
            except RuntimeError:  # the attempt is ending on an error: nothing more is stored
                pass

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _decode(self, batch: list[tuple[WorkItem, list[tuple[str, bytes]]]]) -> None:
        loop = asyncio.get_running_loop()
        recordings, sources = [parts for _, parts in batch], [i.source_uri for i, _ in batch]
        try:
            if self.pool is None:  # in this process: the downloads wait the batch's decoding (milliseconds)
                outcomes = decode_batch(recordings, self.fmt, sources)
            else:
                outcomes = await loop.run_in_executor(self.pool, decode_batch, recordings, self.fmt, sources)
            for (item, parts), outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, EcgFormatError):
                    name = failed_blob_name(item.name, parts, outcome)
                    await self.results.put(_Failure(name, f"cannot decode: {outcome}"))
                else:
                    await self.results.put((item, outcome))
        finally:
            for _ in batch:
                self.room.release()


def _store_item(item: WorkItem, decoded: Decoded) -> StoreItem:
    record = decoded.record
    record.metadata.update(item.metadata)
    return StoreItem(record, item.source_uri, item.source_version, decoded.sha256, label=item.label)


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The first leaf of an exception group, job-ending storage errors first."""
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            leaves.append(error)

    walk(group)
    ending = (_AttemptLost, StorageAccessError)
    return next((e for e in leaves if isinstance(e, ending)), next((e for e in leaves if outage_reason(e)), leaves[0]))


def stored_versions(dataset: str, uris: list[str], chunk: int = 5000) -> set[tuple[str, str]]:
    """(source URL, version) pairs of ``dataset`` already stored among ``uris``."""
    found: set[tuple[str, str]] = set()
    with session_scope() as session:
        for start in range(0, len(uris), chunk):
            rows = session.execute(
                select(Recording.source_uri, Recording.source_version).where(
                    Recording.dataset == dataset, Recording.source_uri.in_(uris[start : start + chunk])
                )
            )
            found.update((uri, version) for uri, version in rows)
    return found
