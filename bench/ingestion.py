"""Ingestion throughput (issues 3 and 8): real recordings from Azurite into Postgres, recordings/second.

Two sources (``source``): ``cinc2017``, real CinC 2017 records (WFDB: a ``.hea`` and a ``.mat`` blob each, two requests
a recording), and ``wellnest``, the real Wellnest device recording (one ``.raw`` blob, 12 leads, 10 s at 500 Hz: one
request a recording) uploaded N times under distinct blob names. ``make bench`` runs the latter as the
``ingestion_wellnest`` benchmark.

Contestants, in the same run, on the same blobs, each into a fresh dataset of a fresh database:

- **baseline**, what the original system did: for each manifest row, one synchronous download per blob (a new
  ``BlobClient`` from the blob URL and SAS token, as a script would write it), the same decoding, one INSERT and
  commit per recording;
- **ingestion job**: ``ecg_ingestion.runner.run_ingestion_job`` with the default settings (async downloads, process
  pool decoding, batched INSERTs), listing and manifest reading included.

Where the job's time goes: each stage alone at full speed on the same data (async downloads only, with Azurite's CPU
per request; decoding only, in one process and in the pool; batched INSERTs only), on the first ``STAGE_MAX``
recordings. ``python -m bench.ingestion [N [SOURCE]]`` prints the result as JSON.

Two measures (issue 17): recordings per second, and the client's CPU per recording, which is what the platform
controls while Azurite shares the machine's cores: user + system CPU of the job's process, its decoding processes and
the Postgres backends serving the database, against the baseline's process and its backend, in the same run.
Azurite's CPU is reported beside it, not in it.

N may exceed the data set (CinC 2017 has 6,823 recordings): past it, the same recordings are uploaded again under
``repeat-K/`` blob names. They are distinct blobs, so the job (whose identity is the blob URL and etag) stores them as
distinct recordings, and the notes say how many are repeats.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ecg_shared.settings import overridden_setting

ACCOUNT = "devstoreaccount1"
CONTAINER = "bench"
BASELINE_MAX = 500  # the baseline is slow and its rate steady: it runs on the first recordings only
STAGE_MAX = 1000  # the stages alone run on the first recordings only (rates; Azurite holds all N meanwhile)


def _sas(account_key: str) -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    now = datetime.now(UTC)
    return generate_container_sas(
        ACCOUNT,
        CONTAINER,
        account_key=account_key,
        start=now - timedelta(minutes=5),
        expiry=now + timedelta(hours=3),
        permission=ContainerSasPermissions(read=True, list=True),
    )


WELLNEST_FILE = "sample-10s.raw"


def blob_names(row) -> list[str]:
    """The blobs one manifest row's recording is read from: a WFDB header and its samples, or the one blob."""
    if row.blob.endswith(".hea"):
        return [row.blob, row.blob[: -len(".hea")] + ".mat"]
    return [row.blob]


def upload_copies(recording: Path, source, n: int) -> list:
    """``n`` copies of one real recording under distinct names (``wellnest/rec-000001.raw``, ...) and a manifest
    naming them all; returns the manifest's rows."""
    from ecg_ingestion.manifest import MANIFEST_NAME, write_manifest_xlsx
    from ecg_shared.jobs.ingestion import ManifestRow

    container = source.sync_container()
    container.create_container()  # a fresh Azurite
    data = recording.read_bytes()
    names = [f"wellnest/rec-{i:06d}{recording.suffix}" for i in range(1, n + 1)]
    with ThreadPoolExecutor(16) as threads:
        list(threads.map(lambda name: container.upload_blob(name, data, overwrite=True), names))
    rows = [ManifestRow(blob=name) for name in names]
    container.upload_blob(MANIFEST_NAME, write_manifest_xlsx(rows), overwrite=True)
    return rows


def upload_recordings(data: Path, source, n: int) -> tuple[list, int]:
    """Upload ``n`` recordings of ``data`` and a manifest naming them all; returns the manifest's rows and how many
    of them are repeats: past the data set's size, its recordings again under ``repeat-1/``, ``repeat-2/``, ..."""
    from ecg_ingestion.manifest import MANIFEST_NAME, read_manifest, write_manifest_xlsx
    from ecg_ingestion.upload import local_records, upload_dataset

    available = len(local_records(data))
    container = source.sync_container()
    rows: list = []
    for repeat in range(n // available + 1):
        count = min(available, n - len(rows))
        if count <= 0:
            break
        prefix = f"repeat-{repeat}" if repeat else ""
        summary = upload_dataset(data, source, "wfdb", limit=count, prefix=prefix)
        if summary.failures:
            raise RuntimeError(f"upload failed for {len(summary.failures)} recordings: {summary.failures[:3]}")
        manifest = container.download_blob(summary.manifest_blob).readall()
        rows += read_manifest(manifest, summary.manifest_blob)
    if len(rows) > available:  # one manifest naming every upload, as the job reads it
        container.upload_blob(MANIFEST_NAME, write_manifest_xlsx(rows), overwrite=True)
    return rows, max(0, len(rows) - available)


def run_baseline(rows, account_url: str, sas: str, dataset: str, database_url: str) -> dict[str, Any]:
    """The original's loop: per recording, synchronous downloads (a client per blob), decode, INSERT + commit; with
    the client's CPU per recording (this process, and the Postgres backends serving the database)."""
    from azure.storage.blob import BlobClient

    from ecg_ingestion.decode import decode_parts
    from ecg_shared.db import Recording, session_scope

    spent = {"download": 0.0, "decode": 0.0, "insert": 0.0}
    database = database_url.rsplit("/", 1)[1]
    (main0, _), postgres0 = _own_cpu_s(), _postgres_cpu_s(database)
    start = time.perf_counter()
    with session_scope(database_url) as session:
        for row in rows:
            names = blob_names(row)
            t0 = time.perf_counter()
            parts = [
                (name, BlobClient.from_blob_url(f"{account_url}/{CONTAINER}/{name}?{sas}").download_blob().readall())
                for name in names
            ]
            t1 = time.perf_counter()
            uri = f"{account_url}/{CONTAINER}/{row.blob}"
            decoded = decode_parts(parts, None, uri)
            t2 = time.perf_counter()
            session.add(
                Recording.from_record(decoded.record, dataset, uri, decoded.sha256, decoded.sha256, label=row.label)
            )
            session.commit()
            t3 = time.perf_counter()
            spent["download"] += t1 - t0
            spent["decode"] += t2 - t1
            spent["insert"] += t3 - t2
    elapsed = time.perf_counter() - start
    (main1, _), postgres1 = _own_cpu_s(), _postgres_cpu_s(database)
    cpu_s = {"process (download, decode, store)": main1 - main0, "Postgres": _spent(postgres0, postgres1)}
    return {
        "recordings": len(rows),
        "seconds": elapsed,
        "spent": spent,
        "cpu_ms_per_recording": {k: round(1000 * v / len(rows), 2) for k, v in cpu_s.items()},
    }


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the processes of ``after`` used since ``before`` (a process started since counts whole)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> tuple[float, float]:
    """CPU seconds of this process (all threads) and of its finished children (the job's decoding processes)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def _postgres_cpu_s(database: str) -> dict[int, float]:
    """CPU seconds of each Postgres backend connected to ``database`` (found by its process title)."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f" {database} ".encode() in (proc / "cmdline").read_bytes().replace(b"\0", b" "):
                found[int(proc.name)] = _process_cpu_s(int(proc.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def run_job(
    account_url: str, sas: str, dataset: str, azurite_pid: int, decode_workers: int | None = None
) -> dict[str, Any]:
    """The job, with the CPU time each party spent on it: this process (listing, downloads, INSERTs), the decoding
    processes, Azurite, the Postgres backends serving this database; what is left of wall time x cores went to
    waiting and the machine's other work. ``decode_workers``: ECG_INGEST_DECODE_WORKERS for this run (None: the
    settings' own); ``decoding`` in the result says what the job did."""
    from ecg_ingestion.decode import decode_workers as workers_for
    from ecg_ingestion.runner import run_ingestion_job
    from ecg_shared.db import session_scope
    from ecg_shared.jobs.ingestion import IngestionJobRequest, create_ingestion_job
    from ecg_shared.settings import get_settings

    request = IngestionJobRequest(
        dataset=dataset, account_url=account_url, container=CONTAINER, sas_token=sas, manifest="manifest.xlsx"
    )
    configured = os.environ.get("ECG_INGEST_DECODE_WORKERS")
    if decode_workers is not None:
        os.environ["ECG_INGEST_DECODE_WORKERS"] = str(decode_workers)
        get_settings.cache_clear()
    workers = workers_for(get_settings().ingest_decode_workers)
    database = get_settings().database_url.rsplit("/", 1)[1]
    (main0, children0), azurite0, postgres0 = _own_cpu_s(), _process_cpu_s(azurite_pid), _postgres_cpu_s(database)
    start = time.perf_counter()
    try:
        with session_scope() as session:
            job_id = create_ingestion_job(session, request, keep_credential=False).id
        view = run_ingestion_job(job_id, request.credential())
    finally:
        if decode_workers is not None:
            os.environ.pop("ECG_INGEST_DECODE_WORKERS", None)
            if configured is not None:
                os.environ["ECG_INGEST_DECODE_WORKERS"] = configured
            get_settings.cache_clear()
    elapsed = time.perf_counter() - start
    (main1, children1), azurite1, postgres1 = _own_cpu_s(), _process_cpu_s(azurite_pid), _postgres_cpu_s(database)
    if view.status != "succeeded" or view.failed:
        raise RuntimeError(f"ingestion job {view.status}: {view.error or view.failures[:3]}")
    per_recording_ms = {
        "job process (list, download, store)": main1 - main0,
        "decoding processes": children1 - children0,
        "Azurite": azurite1 - azurite0,
        "Postgres": _spent(postgres0, postgres1),
    }
    return {
        "recordings": view.stored,
        "seconds": elapsed,
        "cpu_ms_per_recording": {k: round(1000 * v / view.stored, 2) for k, v in per_recording_ms.items()},
        "workers": workers,
        "decoding": f"process-pool decode ({workers})" if workers else "decode in the job's process",
    }


async def _download_all(account_url: str, sas: str, names: list[str], concurrency: int) -> list[bytes]:
    from ecg_ingestion.storage import BlobSource
    from ecg_shared.jobs.ingestion import StorageCredential

    source = BlobSource(account_url, CONTAINER, StorageCredential(sas_token=sas))
    pending = iter(names)
    found: dict[str, bytes] = {}

    async def worker(reader) -> None:
        for name in pending:
            found[name] = await reader.download(source.blob_url(name))

    async with source.reader() as reader:
        await asyncio.gather(*(worker(reader) for _ in range(concurrency)))
    return [found[name] for name in names]


def stage_capacities(rows, account_url: str, sas: str, dataset: str, azurite_pid: int) -> list[dict[str, Any]]:
    """Each stage of the job alone, on the same recordings: recordings/second it could sustain (and, for the
    downloads, the CPU Azurite and this process spent per request)."""
    from ecg_ingestion.decode import decode_parts, decode_workers
    from ecg_shared.db import session_scope
    from ecg_shared.db.store import StoreItem, store_recordings
    from ecg_shared.settings import get_settings

    settings = get_settings()
    per_row = [blob_names(row) for row in rows]
    names = [name for row_names in per_row for name in row_names]
    (main0, _), azurite0, t0 = _own_cpu_s(), _process_cpu_s(azurite_pid), time.perf_counter()
    blobs = asyncio.run(_download_all(account_url, sas, names, settings.ingest_concurrency))
    download_s = time.perf_counter() - t0
    (main1, _), azurite1 = _own_cpu_s(), _process_cpu_s(azurite_pid)
    per_request = {"Azurite": azurite1 - azurite0, "client": main1 - main0}
    downloaded = iter(zip(names, blobs, strict=True))
    pairs = [[next(downloaded) for _ in row_names] for row_names in per_row]  # each recording's (name, bytes)
    uris = [f"{account_url}/{CONTAINER}/{row.blob}" for row in rows]

    sample = pairs[: min(len(pairs), 300)]
    t0 = time.perf_counter()
    for parts, uri in zip(sample, uris, strict=False):
        decode_parts(parts, None, uri)
    decode_one_s = (time.perf_counter() - t0) / len(sample) * len(pairs)

    workers = decode_workers(settings.ingest_decode_workers) or os.cpu_count() or 1  # the job's pool, or one a CPU
    with ThreadPoolExecutor(workers) as threads:  # the alternative to processes: shares the GIL with the job
        t0 = time.perf_counter()
        list(threads.map(decode_parts, sample, [None] * len(sample), uris))
        decode_threads_s = (time.perf_counter() - t0) / len(sample) * len(pairs)
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(int, range(workers)))  # processes started
        t0 = time.perf_counter()
        decoded = list(pool.map(decode_parts, pairs, [None] * len(pairs), uris, chunksize=8))
        decode_pool_s = time.perf_counter() - t0

    items = [
        StoreItem(d.record, uri, d.sha256, d.sha256, row.label) for d, uri, row in zip(decoded, uris, rows, strict=True)
    ]
    t0 = time.perf_counter()
    for start in range(0, len(items), settings.ingest_batch_size):
        with session_scope() as session:
            store_recordings(session, dataset, items[start : start + settings.ingest_batch_size])
    insert_s = time.perf_counter() - t0
    n = len(rows)
    return [
        {
            "stage": f"download only (async, {settings.ingest_concurrency} in flight, "
            f"{len(names) / len(rows):g} blob{'s' if len(names) > len(rows) else ''} each)",
            "recordings_per_s": round(n / download_s, 1),
            "cpu_ms_per_request": {k: round(1000 * v / len(names), 2) for k, v in per_request.items()},
        },
        {"stage": "decode only, one process", "recordings_per_s": round(n / decode_one_s, 1)},
        {"stage": f"decode only, pool of {workers} threads", "recordings_per_s": round(n / decode_threads_s, 1)},
        {"stage": f"decode only, pool of {workers} processes", "recordings_per_s": round(n / decode_pool_s, 1)},
        {
            "stage": f"batched INSERT only ({settings.ingest_batch_size} a statement)",
            "recordings_per_s": round(n / insert_s, 1),
        },
    ]


SOURCES = ("cinc2017", "wellnest")


def run(n: int = 2000, source: str = "cinc2017") -> dict[str, Any]:
    """``n`` recordings of ``source`` (:data:`SOURCES`) through the baseline, the job and the stages alone."""
    from ecg_ingestion.storage import BlobSource
    from ecg_shared.db.migrate import upgrade
    from ecg_shared.jobs.ingestion import StorageCredential
    from ecg_shared.settings import AZURITE_ACCOUNT_KEY, get_settings

    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    data = get_settings().data_dir / source
    if not data.is_dir():
        raise RuntimeError(f"{source} data not found at {data} (ECG_DATA_DIR)")
    from tests.support.azurite import start_azurite

    azurite = start_azurite()
    database_url = get_settings().database_url.rsplit("/", 1)[0] + f"/ecg_bench_{uuid.uuid4().hex[:8]}"
    try:
        with overridden_setting("ECG_DATABASE_URL", database_url):
            upgrade(database_url)
            account_url = azurite.account_url
            blobs = BlobSource(account_url, CONTAINER, StorageCredential(connection_string=azurite.connection_string))
            t0 = time.perf_counter()
            if source == "wellnest":
                rows, repeats = upload_copies(data / WELLNEST_FILE, blobs, n), n - 1
            else:
                rows, repeats = upload_recordings(data, blobs, n)
            upload_s = time.perf_counter() - t0
            sas = _sas(AZURITE_ACCOUNT_KEY)

            baseline = run_baseline(rows[:BASELINE_MAX], account_url, sas, "bench-baseline", database_url)
            job = run_job(account_url, sas, "bench-job", azurite.process.pid)
            # where the job decodes in its own process (a small machine), the pool it used to fork, on the same blobs
            # (another dataset: all stored again), for comparison
            pooled = None if job["workers"] else run_job(account_url, sas, "bench-job-pool", azurite.process.pid, 2)
            stage_rows = rows[:STAGE_MAX]
            stages = stage_capacities(stage_rows, account_url, sas, "bench-stages", azurite.process.pid)
    finally:
        azurite.stop()
        _drop_database(database_url)
    return _result(n, repeats, upload_s, baseline, job, stages, len(stage_rows), source, pooled)


def _job_row(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": f"ingestion job (async download, {job['decoding']}, batched INSERT)",
        "recordings": job["recordings"],
        "seconds": round(job["seconds"], 2),
        "recordings_per_s": round(job["recordings"] / job["seconds"], 1),
        "time_split": "CPU ms per recording: " + ", ".join(f"{k} {v}" for k, v in job["cpu_ms_per_recording"].items()),
        "client_cpu_ms_per_recording": round(
            sum(v for k, v in job["cpu_ms_per_recording"].items() if k != "Azurite"), 2
        ),
        "cpu_split": ", ".join(f"{k} {v}" for k, v in job["cpu_ms_per_recording"].items() if k != "Azurite"),
    }


def _result(n, repeats, upload_s, baseline, job, stages, stage_n, source="cinc2017", pooled=None) -> dict[str, Any]:
    baseline_rate = baseline["recordings"] / baseline["seconds"]
    job_rate = job["recordings"] / job["seconds"]
    ratio = job_rate / baseline_rate
    baseline_client_ms = sum(baseline["cpu_ms_per_recording"].values())
    job_client_ms = sum(v for k, v in job["cpu_ms_per_recording"].items() if k != "Azurite")
    cpu_ratio = job_client_ms / baseline_client_ms
    spent = baseline["spent"]
    share = {k: f"{100 * v / baseline['seconds']:.0f}%" for k, v in spent.items()}
    rows_out = [
        {
            "method": "baseline: sync download per blob, INSERT + commit per recording",
            "recordings": baseline["recordings"],
            "seconds": round(baseline["seconds"], 2),
            "recordings_per_s": round(baseline_rate, 1),
            "time_split": ", ".join(f"{k} {v}" for k, v in share.items()),
            "client_cpu_ms_per_recording": round(baseline_client_ms, 2),
            "cpu_split": ", ".join(f"{k} {v}" for k, v in baseline["cpu_ms_per_recording"].items()),
        },
        _job_row(job),
        *([_job_row(pooled)] if pooled else []),
        *(
            {
                "method": stage["stage"],
                "recordings": stage_n,
                "recordings_per_s": stage["recordings_per_s"],
                **(
                    {"time_split": "CPU ms per request: " + ", ".join(f"{k} {v}" for k, v in cpu.items())}
                    if (cpu := stage.get("cpu_ms_per_request"))
                    else {}
                ),
            }
            for stage in stages
        ),
    ]
    slowest = min(stages, key=lambda s: s["recordings_per_s"])
    cpu_ms = sum(job["cpu_ms_per_recording"].values())
    azurite_ms = job["cpu_ms_per_recording"]["Azurite"]
    per_request = stages[0]["cpu_ms_per_request"]
    cores = os.cpu_count() or 1
    if source == "wellnest":
        made_of = (
            f"{n} copies of the real Wellnest device recording ({WELLNEST_FILE}: 12 leads, 10 s at 500 Hz, 80 KB; "
            "distinct blob names, so the job's exactly-once identity, blob URL and etag, stores them as distinct "
            "recordings), one .raw blob each"
        )
        blobs_each = "one request per recording"
    else:
        made_of = (
            f"{n} CinC 2017 recordings: the data set's {n - repeats} and {repeats} repeats (the same files uploaded "
            "again under repeat-K/ blob names: distinct blobs, so the job's exactly-once identity, blob URL and etag, "
            "stores them as distinct recordings), WFDB .hea + .mat, 2 blobs each"
            if repeats
            else f"{n} real CinC 2017 recordings, WFDB .hea + .mat, 2 blobs each"
        )
        blobs_each = "two requests per WFDB recording"
    n_blobs = n * (1 if source == "wellnest" else 2)
    notes = (
        f"{made_of} (uploaded in {upload_s:.1f} s), from a fresh Azurite (the tests' "
        f"launcher: disk persistence, no access log) into a fresh Postgres database, on {cores} CPUs shared by "
        "Azurite (Node), Postgres, the job and whatever else the machine runs (load average "
        f"{os.getloadavg()[0]:.1f} at the end). The baseline ran on the first {baseline['recordings']} recordings, "
        f"the stages alone on the first {stage_n}. Job/baseline: {ratio:.1f}x in recordings per second. Client CPU "
        f"per recording (what the platform controls: the job's process, its decoding processes and the Postgres "
        f"backends, Azurite left out): {job_client_ms:.2f} ms for the job against {baseline_client_ms:.2f} ms for the "
        f"baseline (its process and its Postgres backend), {cpu_ratio:.2f} of it (target at most 1/3). The job reads "
        "blobs with plain GETs on one aiohttp session (ecg_ingestion.reader) instead of the Azure SDK's async "
        "client, stores each batch as one cached multi-row INSERT, and Postgres compresses signals with lz4 (both "
        "contestants store into the same table). Where the job's time goes: the job "
        f"process, its decoding processes, Azurite and the Postgres backends serving it used {cpu_ms:.1f} ms of CPU "
        f"per recording, a ceiling of about {1000 * cores / cpu_ms:.0f} recordings/s on {cores} cores even if "
        f"nothing waited; the job reached {job_rate:.0f}/s. Azurite alone took {azurite_ms:.1f} ms a recording "
        f"({per_request['Azurite']} ms of CPU per download request, against {per_request['client']} ms in the "
        f"client, with {n_blobs} blobs stored): by itself a ceiling of {1000 * cores / azurite_ms:.0f} recordings/s on "
        f"{cores} cores, and its cost per request grows with the number of blobs it holds (its LokiJS metadata "
        "store scans the blob collection on every lookup). Alone, the slowest stage is "
        f"{slowest['stage']} ({slowest['recordings_per_s']}/s). The baseline is mostly waiting (round trips, a "
        "commit per recording), which the job removes; what remains is CPU, and Azurite's serving it "
        f"({blobs_each}) is {100 * azurite_ms / cpu_ms:.0f}% of all the CPU the job caused. Against a real "
        "Azure account the serving CPU leaves this machine and download latency, which the job hides with "
        "concurrency, is what the baseline waits for."
    )
    targets = {
        "job >= 10x baseline": {"target": 10, "measured": round(ratio, 1), "met": ratio >= 10},
        "job's client CPU per recording <= 1/3 of the baseline's": {
            "target": 0.33,
            "measured": round(cpu_ratio, 2),
            "met": cpu_ratio <= 1 / 3,
        },
    }
    if source == "wellnest":  # issue 17: one request per recording, at most 2 ms of the client's CPU
        targets["job's client CPU per Wellnest recording <= 2 ms"] = {
            "target": 2.0,
            "measured": round(job_client_ms, 2),
            "met": job_client_ms <= 2.0,
        }
    return {
        "name": "ingestion_wellnest" if source == "wellnest" else "ingestion",
        "title": "Ingestion: Azure Blob Storage (Azurite) -> Postgres"
        + (", Wellnest blobs (one request a recording)" if source == "wellnest" else ""),
        "rows": rows_out,
        "ratios": {
            "ingestion job / baseline (recordings per second)": round(ratio, 1),
            "client CPU per recording, job / baseline": round(cpu_ratio, 2),
            **(
                {
                    "job decoding in its process / with a pool of 2 (client CPU per recording)": round(
                        job_client_ms / _job_row(pooled)["client_cpu_ms_per_recording"], 2
                    ),
                    "job decoding in its process / with a pool of 2 (recordings per second)": round(
                        job_rate / (pooled["recordings"] / pooled["seconds"]), 2
                    ),
                }
                if pooled
                else {}
            ),
        },
        "targets": targets,
        "notes": notes,
    }


def _drop_database(url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from ecg_shared.db.session import _engine_for

    _engine_for.cache_clear()
    target = make_url(url)
    engine = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
    finally:
        engine.dispose()


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 2000, *sys.argv[2:3]), indent=2))
