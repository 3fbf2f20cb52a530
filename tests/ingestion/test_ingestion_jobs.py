"""Ingestion jobs end to end: real recordings in Azurite, real SAS tokens, real Postgres, real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ecg_ingestion.runner import run_ingestion_job
from ecg_ingestion.upload import upload_dataset
from ecg_shared.db import Recording, session_scope
from ecg_shared.formats import read_ecg
from ecg_shared.jobs.ingestion import (
    IngestionJob,
    IngestionJobRequest,
    create_ingestion_job,
    get_ingestion_job,
    ingestion_job_view,
)
from tests.ingestion.conftest import (
    connection_source,
    make_sas,
    reference_labels,
    unique_name,
    wait_until,
)

ECG = [str(Path(sys.executable).parent / "ecg")]


def run_job(**fields):
    """Create a foreground job (credential in memory only) and run it in this process."""
    request = IngestionJobRequest(**fields)
    with session_scope() as session:
        job_id = create_ingestion_job(session, request, keep_credential=False).id
    return run_ingestion_job(job_id, request.credential())


def stored(dataset: str) -> list[Recording]:
    with session_scope() as session:
        return list(session.scalars(select(Recording).where(Recording.dataset == dataset).order_by(Recording.id)))


def duplicates(dataset: str) -> int:
    with session_scope() as session:
        per_source = (
            select(Recording.source_uri, func.count().label("n"))
            .where(Recording.dataset == dataset)
            .group_by(Recording.source_uri)
            .subquery()
        )
        return session.scalar(select(func.count()).select_from(per_source).where(per_source.c.n > 1))


def test_xlsx_manifest_job_with_sas_token_stores_labels_once_and_rerun_skips(azurite, cinc_container, data_dir):
    dataset = unique_name("xlsx")
    sas = make_sas(azurite, cinc_container)
    view = run_job(
        dataset=dataset,
        account_url=azurite.account_url,
        container=cinc_container,
        sas_token=sas,
        manifest="manifest.xlsx",
    )
    assert view.status == "succeeded", view.error
    assert (view.listed, view.downloaded, view.stored, view.skipped, view.failed) == (20, 20, 20, 0, 0)

    rows = stored(dataset)
    truth = reference_labels(data_dir)
    assert len(rows) == 20
    for row in rows:
        name = row.metadata_["record"]
        assert row.label == truth[name]  # the manifest's label column, carried through
        assert row.source_uri == f"{azurite.account_url}/{cinc_container}/{name}.hea"  # identity: URL without SAS
        assert "sig=" not in row.source_uri and "," in row.source_version  # header and samples etags
        local = read_ecg(data_dir / "cinc2017" / f"{name}.hea")
        assert row.n_samples == local.n_samples and row.sampling_rate == 300
        assert row.to_record().signal.tobytes() == local.signal.tobytes()

    again = run_job(
        dataset=dataset,
        account_url=azurite.account_url,
        container=cinc_container,
        sas_token=sas,
        manifest="manifest.xlsx",
    )
    assert (again.status, again.listed, again.downloaded, again.stored, again.skipped) == ("succeeded", 20, 0, 0, 20)
    assert len(stored(dataset)) == 20 and duplicates(dataset) == 0

    # the Celery task delivered again for a job that succeeded leaves it alone (it keeps no credential to run with)
    from ecg_ingestion.worker import run_ingestion_job_task

    assert run_ingestion_job_task(again.id)["status"] == "succeeded"
    with session_scope() as session:
        assert ingestion_job_view(get_ingestion_job(session, again.id), session).attempts == 1


def test_csv_manifest_with_blob_urls_custom_columns_and_metadata(azurite, cinc_container, data_dir):
    """A clinic's CSV: semicolons, its own column names, blob URLs, extra metadata columns."""
    sas = make_sas(azurite, cinc_container)
    truth = reference_labels(data_dir)
    names = ["A00001", "A00002", "A00003", "A00004"]
    lines = ["Recording URL;Diagnosis;Site"]
    lines += [
        f"{azurite.account_url}/{cinc_container}/{n}.hea;{truth[n]}-checked;ward {i}" for i, n in enumerate(names)
    ]
    csv_blob = unique_name("clinic") + ".csv"
    container = connection_source(azurite, cinc_container).sync_container()
    container.upload_blob(csv_blob, "\n".join(lines).encode())

    dataset = unique_name("csv")
    view = run_job(
        dataset=dataset,
        account_url=azurite.account_url,
        container=cinc_container,
        sas_token=sas,
        manifest=csv_blob,
        blob_column="recording url",
        label_column="Diagnosis",
    )
    assert view.status == "succeeded", view.error
    assert (view.stored, view.failed) == (4, 0)
    by_record = {row.metadata_["record_name"]: row for row in stored(dataset)}
    assert sorted(by_record) == names
    for i, name in enumerate(names):
        assert by_record[name].label == f"{truth[name]}-checked"
        assert by_record[name].metadata_["Site"] == f"ward {i}"


def _stored_text(job_id: int) -> str:
    """Everything the database keeps about a job (its row and its failures), as text."""
    from sqlalchemy import text

    with session_scope() as session:
        job = session.execute(text("SELECT to_jsonb(j)::text FROM ingestion_jobs j WHERE id = :id"), {"id": job_id})
        failures = session.execute(
            text(
                "SELECT coalesce(string_agg(blob || ' ' || reason, ' '), '') FROM ingestion_failures WHERE job_id = :id"
            ),
            {"id": job_id},
        )
        return job.scalar_one() + failures.scalar_one()


def test_a_manifest_blob_whose_rows_carry_a_sas_fails_the_job_naming_the_row(azurite, cinc_container):
    """A SAS in a row is a credential the job must not keep or show: the row is refused, by number, without it."""
    sas = make_sas(azurite, cinc_container)
    signature = sas.split("sig=")[1].split("&")[0]
    lines = ["blob,label", "A00001.hea,N", f"{azurite.account_url}/{cinc_container}/A00002.hea?{sas},N"]
    csv_blob = unique_name("with-sas") + ".csv"
    connection_source(azurite, cinc_container).sync_container().upload_blob(csv_blob, "\n".join(lines).encode())
    view = run_job(
        dataset=unique_name("sas-rows"),
        account_url=azurite.account_url,
        container=cinc_container,
        sas_token=sas,
        manifest=csv_blob,
    )
    assert view.status == "failed" and view.stored == 0
    assert view.error.startswith(f"manifest {csv_blob}, row 3: column 'blob': the blob URL carries a query string")
    assert signature not in view.model_dump_json() and signature not in _stored_text(view.id)


def test_a_blob_url_outside_the_container_is_a_failure_stored_without_its_query(azurite, cinc_container):
    sas = make_sas(azurite, cinc_container)
    outside = f"{azurite.account_url}/elsewhere/A00001.hea"
    view = run_job(
        dataset=unique_name("outside"),
        account_url=azurite.account_url,
        container=cinc_container,
        sas_token=sas,
        rows=[{"blob": "A00003.hea", "label": "N"}, {"blob": outside, "label": "N"}],
    )
    assert view.status == "succeeded" and (view.stored, view.failed) == (1, 1)
    assert view.failures[0].blob == outside and "outside the job's container" in view.failures[0].reason


def test_manifest_with_missing_column_fails_the_job_with_the_columns_it_has(azurite, cinc_container):
    view = run_job(
        dataset=unique_name("nocol"),
        account_url=azurite.account_url,
        container=cinc_container,
        sas_token=make_sas(azurite, cinc_container),
        manifest="manifest.xlsx",
        blob_column="filename",
    )
    assert view.status == "failed"
    assert "no column 'filename'" in view.error and "blob" in view.error and "label" in view.error


def test_prefix_job_takes_every_recording_and_reference_csv_labels(azurite, data_dir):
    container = unique_name("prefix")
    source = connection_source(azurite, container)
    upload_dataset(data_dir / "cinc2017", source, "wfdb", limit=8, prefix="site-a")
    reference = (data_dir / "cinc2017" / "REFERENCE.csv").read_bytes()
    source.sync_container().upload_blob("site-a/REFERENCE.csv", reference)
    upload_dataset(data_dir / "cinc2017", source, "wfdb", limit=3, prefix="site-b")

    dataset = unique_name("prefix")
    view = run_job(dataset=dataset, connection_string=azurite.connection_string, container=container, prefix="site-a/")
    assert view.status == "succeeded", view.error
    assert (view.listed, view.stored, view.failed) == (8, 8, 0)  # manifest.xlsx, REFERENCE.csv are not recordings
    truth = reference_labels(data_dir)
    rows = stored(dataset)
    assert all(row.source_uri.startswith(f"{azurite.account_url}/{container}/site-a/") for row in rows)
    assert {row.label for row in rows} <= set(truth.values())
    assert all(row.label == truth[row.metadata_["record_name"]] for row in rows)


@pytest.mark.parametrize("decoding", ["in the job's process", "in a pool of 2 processes"])
def test_corrupt_blobs_are_failures_with_reasons_and_the_job_goes_on(
    azurite, cinc_container, wellnest_sample, decoding, ingest_settings, monkeypatch
):
    """Decoded in the job's own process (a machine of 2 CPUs or fewer, by default) or in a pool: the same records,
    the same failures."""
    import ecg_ingestion.decode
    import ecg_ingestion.runner

    pools = []

    def counted_pool(workers):
        pools.append(workers)
        return ecg_ingestion.decode.decode_pool(workers)

    monkeypatch.setattr(ecg_ingestion.runner, "decode_pool", counted_pool)
    if decoding == "in the job's process":
        monkeypatch.setattr(ecg_ingestion.decode, "IN_PROCESS_MAX_CPUS", 10**6)  # whatever this machine has
        ingest_settings(INGEST_DECODE_WORKERS=0)
    else:
        ingest_settings(INGEST_DECODE_WORKERS=2)
    container = connection_source(azurite, cinc_container).sync_container()
    prefix = unique_name("mixed")
    container.upload_blob(f"{prefix}/device-ok", wellnest_sample.read_bytes())
    container.upload_blob(f"{prefix}/device-garbage", bytes(range(256)) * 40)
    container.upload_blob(f"{prefix}/truncated.hea", b"A99999 1 300 9000\nA99999.mat 16+24 1000/mV 16 0 0 0 0 ECG\n")
    rows = [
        {"blob": f"{prefix}/device-ok", "label": "N"},
        {"blob": f"{prefix}/device-garbage", "label": "N"},
        {"blob": f"{prefix}/truncated.hea"},
        {"blob": f"{prefix}/never-uploaded", "label": "A"},
        {"blob": "A00001.hea", "label": "N"},
    ]
    dataset = unique_name("mixed")
    view = run_job(
        dataset=dataset,
        account_url=azurite.account_url,
        container=cinc_container,
        sas_token=make_sas(azurite, cinc_container),
        rows=rows,
    )
    assert view.status == "succeeded"
    assert (view.listed, view.stored, view.failed) == (5, 2, 3)
    reasons = {failure.blob: failure.reason for failure in view.failures}
    assert reasons[f"{prefix}/device-garbage"].startswith("cannot decode:")
    assert "without its samples" in reasons[f"{prefix}/truncated.hea"]
    assert reasons[f"{prefix}/never-uploaded"] == "blob not found"
    formats = sorted(row.format for row in stored(dataset))
    assert formats == ["wellnest", "wfdb"]
    assert pools == ([] if decoding == "in the job's process" else [2])
    device = next(row for row in stored(dataset) if row.format == "wellnest")
    assert device.to_record().signal.tobytes() == read_ecg(wellnest_sample).signal.tobytes()


def test_decoding_processes_none_on_a_small_machine_else_one_per_cpu_unless_set(monkeypatch):
    from ecg_ingestion.decode import IN_PROCESS_MAX_CPUS, decode_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(IN_PROCESS_MAX_CPUS)))
    assert decode_workers(0) == 0 and decode_workers(3) == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    assert decode_workers(0) == 8 and decode_workers(1) == 1


@pytest.mark.parametrize("problem", ["wrong key", "expired"])
def test_bad_sas_token_fails_the_job_with_a_clear_reason_and_no_secret(azurite, cinc_container, problem):
    if problem == "expired":
        sas = make_sas(azurite, cinc_container, expires_in=-timedelta(minutes=5))
    else:
        sas = make_sas(azurite, cinc_container, key="d3JvbmcgYWNjb3VudCBrZXkgZm9yIHRoZSB0ZXN0cyAxMjM0NTY3ODkwMTI=")
    view = run_job(
        dataset=unique_name("badsas"),
        account_url=azurite.account_url,
        container=cinc_container,
        sas_token=sas,
        manifest="manifest.xlsx",
    )
    assert view.status == "failed"
    assert view.error.startswith(
        "access denied while reading the manifest manifest.xlsx: the SAS token is invalid or expired"
    )
    signature = sas.split("sig=")[1].split("&")[0]
    assert signature not in view.model_dump_json()


def test_resume_after_the_job_process_is_killed_stores_every_recording_once(
    azurite, data_dir, cli_env, ingest_settings
):
    container = unique_name("resume")
    total = 160
    upload_dataset(data_dir / "cinc2017", connection_source(azurite, container), "wfdb", limit=total)
    dataset = unique_name("resume")
    env = {
        **cli_env,
        "ECG_INGEST_CONNECTION_STRING": azurite.connection_string,
        "ECG_INGEST_BATCH_SIZE": "5",
        "ECG_INGEST_CONCURRENCY": "1",
        "ECG_INGEST_DECODE_WORKERS": "1",
        "ECG_INGEST_HEARTBEAT_S": "0.5",
        "ECG_INGEST_STALE_AFTER_S": "2",  # --resume takes over a running job only once its heartbeat is stale
    }
    process = subprocess.Popen(
        [*ECG, "ingest", "-d", dataset, "-c", container, "--manifest", "manifest.xlsx"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(lambda: len(stored(dataset)) >= 15, timeout=60, what="the first batches to be stored")
        os.killpg(process.pid, signal.SIGKILL)  # a crash: the process and its decoding processes
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    before = len(stored(dataset))
    assert 15 <= before < total, f"the job was not killed mid-way ({before} of {total} stored)"
    with session_scope() as session:
        job = session.scalars(select(IngestionJob).where(IngestionJob.dataset == dataset)).one()
        assert job.status == "running" and job.stored == before  # counts commit with each batch
        job_id = job.id

    ingest_settings(INGEST_BATCH_SIZE=50)
    time.sleep(2)
    result = subprocess.run(
        [*ECG, "ingest", "--resume", str(job_id), "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    rows = stored(dataset)
    assert len(rows) == total and duplicates(dataset) == 0
    with session_scope() as session:
        view = ingestion_job_view(get_ingestion_job(session, job_id), session)
    assert (view.status, view.attempts, view.listed) == ("succeeded", 2, total)
    assert view.skipped == before and view.stored == total - before and view.downloaded == total - before


def test_overlapping_jobs_store_each_recording_once(azurite, cinc_container, cli_env):
    """Two jobs over the same blobs into the same dataset at the same time: every recording once, never twice."""
    dataset = unique_name("overlap")
    env = {**cli_env, "ECG_INGEST_CONNECTION_STRING": azurite.connection_string, "ECG_INGEST_BATCH_SIZE": "3"}
    command = [*ECG, "ingest", "-d", dataset, "-c", cinc_container, "--manifest", "manifest.xlsx", "--json"]
    jobs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [job.communicate(timeout=120) for job in jobs]
    assert all(job.returncode == 0 for job in jobs), outputs
    views = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert len(stored(dataset)) == 20 and duplicates(dataset) == 0
    assert sum(view["stored"] for view in views) == 20
    assert all(view["stored"] + view["skipped"] == 20 for view in views)


def test_dataset_upload_cli_ptbxl_as_wellnest_blobs_then_ingest(azurite, data_dir, cli_env):
    container = unique_name("wellnest")
    env = {**cli_env, "ECG_INGEST_CONNECTION_STRING": azurite.connection_string}
    upload = subprocess.run(
        [
            *ECG,
            "dataset",
            "upload",
            str(data_dir / "ptbxl"),
            "--container",
            container,
            "--format",
            "wellnest",
            "--limit",
            "6",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upload.returncode == 0, upload.stderr
    assert "uploaded 6 recordings" in upload.stdout and "manifest: manifest.xlsx" in upload.stdout
    source = connection_source(azurite, container)
    names = [blob.name for blob in source.sync_container().list_blobs()]
    devices = [n for n in names if n != "manifest.xlsx"]
    assert len(devices) == 6 and "manifest.xlsx" in names
    assert all(len(n) == 32 and "." not in n for n in devices)  # UUID names, no extension, as the device writes

    dataset = unique_name("wellnest")
    run = subprocess.run(
        [*ECG, "ingest", "-d", dataset, "-c", container, "--manifest", "manifest.xlsx", "--format", "wellnest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "stored 6" in run.stdout
    truth = {p.stem: read_ecg(p).label for p in sorted((data_dir / "ptbxl").glob("*.hea"))[:6]}
    rows = stored(dataset)
    assert {row.metadata_["record"]: row.label for row in rows} == truth
    assert all(row.format == "wellnest" and row.sampling_rate == 500 and len(row.lead_names) == 12 for row in rows)


def test_local_manifest_file_is_sent_as_rows(azurite, cinc_container, cli_env, tmp_path):
    """`ecg ingest --manifest ./file.xlsx`: the local sheet is read by the CLI; its rows travel with the job."""
    from ecg_ingestion.manifest import write_manifest_xlsx
    from ecg_shared.jobs.ingestion import ManifestRow

    sheet = tmp_path / "clinic.xlsx"
    sheet.write_bytes(
        write_manifest_xlsx(
            [ManifestRow(blob="A00006.hea", label="X", metadata={"bed": 3})], blob_column="File", label_column="Rhythm"
        )
    )
    dataset = unique_name("local")
    env = {**cli_env, "ECG_INGEST_SAS_TOKEN": make_sas(azurite, cinc_container)}
    result = subprocess.run(
        [
            *ECG,
            "ingest",
            "-d",
            dataset,
            "-c",
            cinc_container,
            "--account-url",
            azurite.account_url,
            "--manifest",
            str(sheet),
            "--sheet",
            "recordings",
            "--blob-column",
            "File",
            "--label-column",
            "Rhythm",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert '"manifest_rows":1' in result.stdout, result.stdout
    assert '"stored":1' in result.stdout, result.stdout
    (row,) = stored(dataset)
    assert row.label == "X" and row.metadata_["bed"] == 3


def test_a_local_manifest_whose_rows_carry_a_sas_is_refused_before_any_job(azurite, cinc_container, cli_env, tmp_path):
    """`ecg ingest -m local.xlsx` with a SAS URL in a row: exit 2 naming the row, no job row, no signature shown."""
    from openpyxl import Workbook

    sas = make_sas(azurite, cinc_container)
    signature = sas.split("sig=")[1].split("&")[0]
    sheet = tmp_path / "clinic.xlsx"
    workbook = Workbook()
    for row in (
        ["blob", "label"],
        ["A00006.hea", "X"],
        [f"{azurite.account_url}/{cinc_container}/A00007.hea?{sas}", "Y"],
    ):
        workbook.active.append(row)
    workbook.save(sheet)
    with session_scope() as session:
        jobs_before = session.scalar(select(func.count()).select_from(IngestionJob))
    result = subprocess.run(
        [
            *ECG,
            "ingest",
            "-d",
            unique_name("local-sas"),
            "-c",
            cinc_container,
            "--account-url",
            azurite.account_url,
            "--manifest",
            str(sheet),
        ],
        env={**cli_env, "ECG_INGEST_SAS_TOKEN": sas},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "clinic.xlsx, row 3: column 'blob': the blob URL carries a query string (a SAS token?)" in result.stderr
    assert "Traceback" not in result.stderr and signature not in result.stderr + result.stdout
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(IngestionJob)) == jobs_before


def test_cli_reports_bad_input_without_a_traceback(azurite, cli_env, tmp_path):
    env = {**cli_env, "ECG_INGEST_CONNECTION_STRING": "AccountKey=not-a-connection-string-secret"}
    result = subprocess.run(
        [*ECG, "ingest", "-d", "x", "-c", "some-container"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "connection_string is not a valid Azure Storage connection string" in result.stderr
    assert "Traceback" not in result.stderr and "not-a-connection-string-secret" not in result.stderr

    empty = tmp_path / "empty.csv"
    empty.write_text("blob,label\n")
    result = subprocess.run(
        [
            *ECG,
            "ingest",
            "-d",
            "x",
            "-c",
            "some-container",
            "--manifest",
            str(empty),
            "--connection-string",
            azurite.connection_string,
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "has a header row but no recordings" in result.stderr


def test_decoded_signal_read_from_a_zip_equals_wfdb_reader(data_dir):
    """The pair decoding the job uses gives the same samples as reading the files."""
    from ecg_ingestion.decode import decode_parts

    base = data_dir / "cinc2017" / "A00001"
    parts = [(f"x/A00001{suffix}", base.with_suffix(suffix).read_bytes()) for suffix in (".hea", ".mat")]
    decoded = decode_parts(parts, None, "http://example/x/A00001.hea")
    assert decoded.record.signal.tobytes() == read_ecg(base.with_suffix(".hea")).signal.tobytes()
    assert decoded.record.metadata["source"] == "http://example/x/A00001.hea"


def test_a_blob_changed_since_listing_is_not_downloaded(azurite, cinc_container):
    """Downloads carry If-Match on the listed etag: content and stored version always belong together."""
    import asyncio

    from azure.core.exceptions import HttpResponseError

    from ecg_ingestion.plan import BlobInfo
    from ecg_ingestion.runner import JobRun
    from ecg_ingestion.storage import blob_error

    source = connection_source(azurite, cinc_container)
    current = source.sync_container().get_blob_client("A00001.hea").get_blob_properties().etag
    run = JobRun(0, 1, "unused", source, {}, None)

    async def download(etag: str) -> bytes:
        async with source.reader() as reader:
            return await run._download(reader, BlobInfo("A00001.hea", etag))

    assert asyncio.run(download(current)).startswith(b"A00001")
    with pytest.raises(HttpResponseError) as caught:
        asyncio.run(download('"0x8DEADBEEF000000"'))
    assert blob_error(caught.value) == "blob changed while the job ran (etag differs): run the job again"


def test_the_reader_lists_every_page_as_the_sdk_and_raises_its_errors(azurite, cinc_container, monkeypatch):
    """``ecg_ingestion.reader`` (plain GETs, not the SDK's client): a listing over several pages gives the names, etags
    and sizes the SDK lists; a SAS token and a connection string both read; a missing blob and a missing container
    raise the SDK's exception types, which ``blob_error`` and ``access_error`` read."""
    import asyncio

    from azure.core.exceptions import AzureError

    from ecg_ingestion import reader as reader_module
    from ecg_ingestion.storage import BlobSource, access_error, blob_error
    from ecg_shared.jobs.ingestion import StorageCredential

    monkeypatch.setattr(reader_module, "LIST_PAGE", 7)  # 41 blobs: six pages
    by_key = connection_source(azurite, cinc_container)
    by_sas = BlobSource(
        azurite.account_url, cinc_container, StorageCredential(sas_token=make_sas(azurite, cinc_container))
    )
    sdk_listing = by_key.sync_container().list_blobs(name_starts_with="A")
    expected = {blob.name: (blob.etag.strip('"'), blob.size) for blob in sdk_listing}

    async def listing(source: BlobSource, prefix: str):
        async with source.reader() as reader:
            return await reader.list(prefix)

    async def failure(source: BlobSource, name: str) -> AzureError:
        async with source.reader() as reader:
            try:
                await reader.download(source.blob_url(name))
            except AzureError as exc:
                return exc
        raise AssertionError("downloaded")

    for source in (by_key, by_sas):
        listed = asyncio.run(listing(source, "A"))
        assert {name: (info.version, info.size) for name, info in listed.items()} == expected
        assert len(expected) == 40
    assert blob_error(asyncio.run(failure(by_sas, "no-such-blob"))) == "blob not found"
    missing = connection_source(azurite, unique_name("missing"))
    error = access_error(asyncio.run(failure(missing, "x")), missing, "reading x")
    assert error is not None and not error.transient and "not found at" in str(error)
