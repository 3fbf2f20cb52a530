"""Patient privacy on the real stack: every clinical sample file (ECG_DATA_DIR/formats) goes through ingestion from
Azurite (gateway -> Celery ingestion worker -> Postgres) and through the gateway's `POST /classify`; then the stored
rows of every table, the services' logs and every answer are searched for that file's patient fields (names, IDs,
birth dates, physicians, operators, sites), which must appear nowhere."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.slow  # a stack of its own: inference, gateway and the Celery ingestion worker

# What each sample file says of its patient (and of the people and places around the recording), as the file
# spells it, from reading the files themselves (PROVENANCE.md names the files).
PATIENT_FIELDS = {
    "ge_muse_xml/MUSE_20080710_165457_96000.xml": ["159357456", "THE FIRST SITE"],
    "philips_sierra_xml/129DYPRG.XML": ["1112010721168bdc", "GE EMS", "GEILM"],
    "philips_sierra_xml/3191723_ZZDEMOPTONLY_1-04_orig.xml": ["ZZDEMOPTONLY", "1950-01-01", "120190145", "Heart St"],
    "philips_sierra_xml/ecg_900657176_1.xml": ["900657176", "1959-01-20", "DCFVJMK", "4567890", "FGHJK", "Anon Site"],
    "hl7_aecg/Example aECG.xml": ["Clark", "19530508", "1953-05-08", "SBJ-123", "TECH-221", "River City"],
    "dicom_ecg/anonymous_ecg.dcm": ["642341", "19710123", "1971-01-23", "Galliera", "03028041970546"],
    "dicom_ecg/Example.dcm": ["Clark", "19530508", "SBJ-123"],
    "scp_ecg/Example.scp": ["Clark", "SBJ-123"],
    "ishne_holter/ECG_P28.01.ecg": ["ECG_P28.01"],
}
NOT_RECORDINGS = {"ishne_holter/ECG_P28.01.ann"}
# scp_ecg/62.SCP (Healforce) holds the placeholder patient ID "00000", too common a string to search the stored
# rows and logs for; tests/shared/test_binary_formats.py checks that no record of it carries it.
JOB_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def sample_files(data_dir: Path) -> list[str]:
    folder = data_dir / "formats"
    if not folder.is_dir():
        pytest.skip(f"clinical-format samples not found at {folder}")
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.suffix != ".md")


@pytest.fixture(scope="module")
def privacy_database(azurite) -> Iterator[str]:
    """A database of this module's own, so the search sees only what this module's files left (other tests store
    other rows, such as local imports whose file paths name the sample files)."""
    from tests.inference.conftest import register_and_promote
    from tests.inference.onnx_models import rhythm_metadata, tiny_model, twelve_lead_metadata
    from tests.support.database import create_test_database, drop_test_database

    url = create_test_database()
    for metadata in (rhythm_metadata(), twelve_lead_metadata()):
        register_and_promote(url, azurite.connection_string, metadata, tiny_model(metadata))
    yield url
    drop_test_database(url)


@pytest.fixture(scope="module")
def privacy_stack(privacy_database, azurite) -> Iterator[Stack]:
    with start_stack(
        ["inference", "gateway", "ingestion-worker"],
        database_url=privacy_database,
        artifact_connection_string=azurite.connection_string,
        env={
            "ECG_SECRET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "ECG_MODEL_POLL_INTERVAL_S": "1",
            "ECG_MAX_UPLOAD_BYTES": str(8 * 1024 * 1024),
        },
    ) as running:
        yield running


def _stored_text(database_url: str) -> str:
    """Every non-binary column of every row of every table, as text (bytea signals are left out: a digit string
    could turn up in their hex by chance)."""
    from ecg_shared.db import session_scope

    parts = []
    with session_scope(database_url) as session:
        columns = session.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND data_type <> 'bytea' ORDER BY table_name, ordinal_position"
            )
        ).all()
        tables: dict[str, list[str]] = {}
        for table, column in columns:
            tables.setdefault(table, []).append(column)
        for table, names in tables.items():
            joined = ", ".join(f"coalesce(\"{name}\"::text, '')" for name in names)
            rows = session.execute(text(f"SELECT concat_ws(' | ', {joined}) FROM \"{table}\"")).scalars()
            parts.extend(f"{table}: {row}" for row in rows)
    return "\n".join(parts)


def test_no_patient_field_is_stored_logged_or_answered(
    privacy_stack, azurite, data_dir, sample_files, privacy_database
):
    folder = data_dir / "formats"
    assert set(PATIENT_FIELDS) <= set(sample_files)
    client = httpx.Client(
        base_url=privacy_stack.url("gateway"), headers={"X-API-Key": privacy_stack.env["ECG_API_KEY"]}, timeout=120
    )

    # Ingestion: every file as a blob under its own name, with a manifest. Some names carry the patient's ID or name,
    # as hospitals' exports do (ECG_P28.01.ecg, ecg_900657176_1.xml): the stored source masks them.
    from azure.storage.blob import ContainerClient

    container = ContainerClient.from_connection_string(azurite.connection_string, "clinical-privacy")
    container.create_container()
    blobs = {}
    for name in sample_files:
        blob = f"clinic/{name}"
        container.upload_blob(blob, (folder / name).read_bytes())
        blobs[name] = blob
    manifest = "blob,label\n" + "\n".join(f"{blob},test" for blob in blobs.values())
    container.upload_blob("clinic/manifest.csv", manifest.encode())
    created = client.post(
        "/api/ingestion-jobs",
        json={
            "dataset": "clinical-privacy",
            "container": "clinical-privacy",
            "connection_string": azurite.connection_string,
            "manifest": "clinic/manifest.csv",
        },
    )
    assert created.status_code == 201, created.text
    answers = [created.text]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while (job := client.get(f"/api/ingestion-jobs/{created.json()['id']}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    expected_stored = len(sample_files) - len(NOT_RECORDINGS)
    assert (job["status"], job["stored"], job["failed"]) == ("succeeded", expected_stored, len(NOT_RECORDINGS)), job
    answers.append(repr(job))
    answers.append(client.get("/api/recordings", params={"dataset": "clinical-privacy"}).text)

    sources = client.get("/api/recordings", params={"dataset": "clinical-privacy", "limit": 100}).json()
    assert any("ishne_holter/[patient-" in r["source_uri"] for r in sources["items"]), sources

    # POST /classify through the gateway, with the trace and the explanation, under the file's own name.
    for name in sample_files:
        upload = (Path(name).name, (folder / name).read_bytes())
        response = client.post("/classify", params={"trace": "true", "explain": "true"}, files={"file": upload})
        if name in NOT_RECORDINGS:
            assert response.status_code == 422, (name, response.text)
        else:
            assert response.status_code == 200, (name, response.text)
        answers.append(response.text)

    stored = _stored_text(privacy_database)
    assert "clinical-privacy" in stored and "muse_xml" in stored  # the search does look at the stored rows
    logs = "\n".join(privacy_stack[name].log() for name in ("inference", "gateway", "ingestion-worker"))
    assert "POST /classify" in logs or "classify" in logs
    everything = {"stored rows": stored, "service logs": logs, "answers": "\n".join(answers)}
    leaks = [
        (name, value, where)
        for name, values in PATIENT_FIELDS.items()
        for value in values
        for where, haystack in everything.items()
        if value in haystack
    ]
    assert not leaks, leaks


def test_hostile_and_broken_xml_gets_422_naming_the_problem(privacy_stack, data_dir):
    from tests.shared.test_vendor_xml import BILLION_LAUGHS, EXTERNAL_ENTITY

    muse = (data_dir / "formats" / "ge_muse_xml" / "example1.xml").read_bytes()
    rhythm = muse.index(b"<WaveformType>Rhythm")
    data_start = muse.index(b"<WaveFormData>", rhythm) + len(b"<WaveFormData>")
    cases = {
        "billion-laughs.xml": (BILLION_LAUGHS, "entity declarations are refused"),
        "external-entity.xml": (EXTERNAL_ENTITY, "external entities are refused"),
        "truncated.xml": (muse[: len(muse) // 2], "malformed or truncated"),
        "bad-base64.xml": (muse[:data_start] + b"*" + muse[data_start + 1 :], "not valid base64"),
    }
    client = httpx.Client(base_url=privacy_stack.url("gateway"), timeout=60)
    for filename, (content, problem) in cases.items():
        response = client.post(
            "/classify",
            params={"trace": "true"},
            files={"file": (filename, content)},
            headers=privacy_stack_key(privacy_stack),
        )
        assert response.status_code == 422, (filename, response.status_code, response.text)
        assert problem in response.json()["detail"], (filename, response.text)


def privacy_stack_key(stack: Stack) -> dict[str, str]:
    return {"X-API-Key": stack.env["ECG_API_KEY"]}
