"""The whole pipeline through the public API, on the local stack the Procfile describes (issue 7).

Real PTB-XL records go to Azurite twice over — converted into Wellnest device blobs (read with a SAS token) and as
WFDB files (read with a connection string), each with the Excel manifest `ecg dataset upload` writes — then:
ingestion jobs via the gateway -> labelled recordings in Postgres -> a training job via the gateway on the Celery
training worker -> an ONNX version registered, then promoted via the gateway -> `POST /classify` through the gateway
answered by that version, with the probabilities its registered ONNX file gives.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from scipy.signal import resample_poly
from sqlalchemy import select

from ecg_shared.formats import STANDARD_12_LEADS, read_ecg, zip_wfdb_record
from tests.support.stack import start_stack

pytestmark = pytest.mark.slow

DATASET = "e2e-ptbxl"
MODEL = "e2e-normal-12lead"
RECORDS_PER_FORMAT = 24
ACCOUNT = "devstoreaccount1"
JOB_TIMEOUT_S = 240


def wait_for(client: httpx.Client, path: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(path).raise_for_status().json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"{path} still {job['status']} after {timeout} s: {job}"
        time.sleep(0.5)


def linked_slice(folder: Path, headers: list[Path]) -> Path:
    """A folder of symbolic links to some real records (the data sets are read-only and never copied)."""
    folder.mkdir()
    for header in headers:
        for part in (header, header.with_suffix(".dat")):
            (folder / part.name).symlink_to(part)
    return folder


def upload(folder: Path, container: str, fmt: str, connection_string: str) -> None:
    """`ecg dataset upload`, the command a user runs, with the credential in the environment."""
    ecg = Path(sys.executable).with_name("ecg")
    env = {**os.environ, "ECG_INGEST_CONNECTION_STRING": connection_string}
    result = subprocess.run(
        [str(ecg), "dataset", "upload", str(folder), "--container", container, "--format", fmt],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"uploaded {RECORDS_PER_FORMAT} recordings" in result.stdout


def container_sas(container: str, account_key: str) -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    now = datetime.now(UTC)
    return generate_container_sas(
        ACCOUNT,
        container,
        account_key=account_key,
        permission=ContainerSasPermissions(read=True, list=True),
        start=now - timedelta(minutes=5),
        expiry=now + timedelta(hours=1),
    )


@pytest.fixture()
def e2e_database() -> Iterator[str]:
    """A database of its own: this stack's registry points at its own Azurite, which other suites never see."""
    from tests.support.database import create_test_database, drop_test_database

    url = create_test_database()
    yield url
    drop_test_database(url)


@pytest.fixture()
def e2e_session(e2e_database: str):
    from ecg_shared.db import session_scope

    with session_scope(e2e_database) as session:
        yield session


def test_device_blobs_to_a_promoted_model_answering_classify(data_dir, e2e_database, e2e_session, tmp_path):
    from ecg_shared.artifacts import ArtifactStore
    from ecg_shared.db.models import Recording
    from ecg_shared.model_metadata import ModelMetadata
    from ecg_shared.preprocessing import prepare
    from ecg_shared.registry import get_version
    from ecg_shared.settings import AZURITE_ACCOUNT_KEY

    headers = sorted((data_dir / "ptbxl").glob("*.hea"))
    wellnest_headers = headers[:RECORDS_PER_FORMAT]
    wfdb_headers = headers[RECORDS_PER_FORMAT : 2 * RECORDS_PER_FORMAT]
    held_out = headers[-1]
    originals = {h.stem: read_ecg(h) for h in wellnest_headers + wfdb_headers}
    assert set(Counter(r.label for r in originals.values())) == {"Normal", "Abnormal"}

    secret_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    with start_stack(
        ["azurite", "inference", "gateway", "ingestion-worker", "training-worker"],
        database_url=e2e_database,
        env={"ECG_SECRET_KEY": secret_key, "ECG_MODEL_POLL_INTERVAL_S": "1"},
    ) as stack:
        blob_connection = stack.env["ECG_ARTIFACT_CONNECTION_STRING"]
        account_url = f"{stack.url('azurite')}/{ACCOUNT}"
        client = httpx.Client(
            base_url=stack.url("gateway"), headers={"X-API-Key": stack.env["ECG_API_KEY"]}, timeout=60
        )

        # 1. The data set in blob storage: Wellnest device blobs and WFDB files, each container with its manifest.
        upload(linked_slice(tmp_path / "wellnest", wellnest_headers), "e2e-wellnest", "wellnest", blob_connection)
        upload(linked_slice(tmp_path / "wfdb", wfdb_headers), "e2e-wfdb", "wfdb", blob_connection)

        # 2. Ingestion jobs through the gateway, run by the ingestion worker.
        sources = [
            {
                "container": "e2e-wellnest",
                "account_url": account_url,
                "format": "wellnest",
                "sas_token": container_sas("e2e-wellnest", AZURITE_ACCOUNT_KEY),
            },
            {"container": "e2e-wfdb", "connection_string": blob_connection},
        ]
        for source in sources:
            created = client.post(
                "/api/ingestion-jobs", json={"dataset": DATASET, "manifest": "manifest.xlsx", **source}
            )
            assert created.status_code == 201, created.text
            assert "sig=" not in created.text and "AccountKey" not in created.text  # secrets never come back
            job = wait_for(client, f"/api/ingestion-jobs/{created.json()['id']}", JOB_TIMEOUT_S)
            assert (job["status"], job["stored"], job["failed"]) == ("succeeded", RECORDS_PER_FORMAT, 0), job

        # 3. Labelled recordings in Postgres, true to the source records.
        rows = e2e_session.scalars(select(Recording).where(Recording.dataset == DATASET)).all()
        assert Counter(row.format for row in rows) == {"wellnest": RECORDS_PER_FORMAT, "wfdb": RECORDS_PER_FORMAT}
        for row in rows:
            original = originals[row.metadata_["record"]]
            assert row.label == original.label, row.source_uri
            assert row.source_uri.startswith(f"{account_url}/e2e-")
            if row.format == "wellnest":  # 100 Hz PTB-XL became a 500 Hz device blob: same trace in mV
                stored = row.to_record()
                assert (stored.sampling_rate, stored.lead_names) == (500, list(STANDARD_12_LEADS))
                upsampled = resample_poly(original.lead("II"), 5, 1)[: stored.n_samples]
                ours = stored.lead("II")[: upsampled.size]
                assert np.corrcoef(ours, upsampled)[0, 1] > 0.95, row.source_uri
        listed = client.get("/api/recordings", params={"dataset": DATASET}).json()
        assert listed["total"] == 2 * RECORDS_PER_FORMAT

        # 4. A short training job through the gateway, run by the training worker.
        created = client.post(
            "/api/training-jobs",
            json={
                "dataset": DATASET,
                "name": MODEL,
                "classes": ["Normal", "Abnormal"],
                "normal_classes": ["Normal"],
                "family": "cnn",
                "epochs": 1,
                "batch_size": 16,
                "window_s": 5,
                "sampling_rate": 100,
                "leads": list(STANDARD_12_LEADS),
            },
        )
        assert created.status_code == 201, created.text
        job = wait_for(client, f"/api/training-jobs/{created.json()['id']}", JOB_TIMEOUT_S)
        assert job["status"] == "succeeded", job
        version = job["model_version"]
        assert job["model_name"] == MODEL and version >= 1

        # 5. The ONNX version is registered (a candidate) and promoted through the gateway.
        model = client.get(f"/api/models/{MODEL}").json()
        assert [(v["version"], v["stage"]) for v in model["versions"]] == [(version, "candidate")]
        promoted = client.post(f"/api/models/{MODEL}/versions/{version}/promote")
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["stage"] == "active"

        # 6. POST /classify through the gateway, answered by the new version once inference has reloaded.
        deadline = time.monotonic() + 30
        while True:
            response = client.post(
                "/classify",
                params={"model": MODEL, "explain": "false"},
                files={"file": (f"{held_out.stem}.zip", zip_wfdb_record(held_out))},
            )
            served = [m for m in response.json().get("models", [])] if response.status_code == 200 else []
            if served and served[0]["name"] == MODEL and served[0]["version"] == version:
                break
            assert time.monotonic() < deadline, f"{MODEL} v{version} not served: {response.status_code} {response.text}"
            time.sleep(0.5)
        answer = served[0]
        assert set(answer["probabilities"]) == {"Normal", "Abnormal"}
        assert answer["predicted_class"] in {"Normal", "Abnormal"}
        registered = get_version(e2e_session, MODEL, version)
        onnx_bytes = ArtifactStore(connection_string=blob_connection).get(registered.artifact_uri)

    # The answer is the registered ONNX file's own output on the shared preprocessing of that recording, mean over
    # windows, with the calibration the file carries.
    import onnxruntime as ort

    from ecg_shared.calibration import calibrate

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    metadata = ModelMetadata.from_onnx_props(session.get_modelmeta().custom_metadata_map)
    assert (metadata.name, metadata.classes, metadata.normal_classes) == (MODEL, ["Normal", "Abnormal"], ["Normal"])
    inputs = prepare(read_ecg(held_out), metadata.preprocessing)
    raw = session.run(None, {session.get_inputs()[0].name: inputs})[0]
    expected = calibrate(raw.mean(axis=0, keepdims=True), metadata.calibration)[0]
    assert metadata.calibration["method"] == "temperature"
    assert [answer["probabilities"][c] for c in metadata.classes] == pytest.approx(expected.tolist(), abs=1e-4)
