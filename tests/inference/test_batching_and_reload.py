"""Micro-batching under concurrent requests gives the one-at-a-time answers; new promotions are served without a
restart; no model, or no registry, gives a clear 503."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import httpx
import pytest

from ecg_shared.formats import read_ecg, zip_wfdb_record
from tests.inference.conftest import register_and_promote, start_inference
from tests.inference.onnx_models import rhythm_metadata, tiny_model, twelve_lead_metadata, write_models_dir
from tests.inference.test_service import assert_same_probabilities, in_process_answer
from tests.support.database import create_test_database, drop_test_database
from tests.support.ports import free_port


def _uploads(data_dir, wellnest_sample) -> list[tuple[str, bytes]]:
    cinc = [data_dir / "cinc2017" / f"A0000{i}.hea" for i in (1, 2, 3, 4, 6)]
    ptbxl = [data_dir / "ptbxl" / f"0000{i}_lr.hea" for i in (1, 2, 3, 4, 6)]
    return [("wellnest.raw", wellnest_sample.read_bytes())] + [
        (h.stem + ".zip", zip_wfdb_record(h)) for h in cinc + ptbxl
    ]


def _batched_requests(metrics: str) -> tuple[float, float]:
    """(onnxruntime calls, calls that served a single request) from the batch-size histogram."""
    count = float(re.search(r"^ecg_inference_batch_requests_count (\S+)$", metrics, re.M).group(1))
    single = float(re.search(r'^ecg_inference_batch_requests_bucket\{le="1.0"\} (\S+)$', metrics, re.M).group(1))
    return count, single


def test_concurrent_requests_are_batched_and_answer_as_one_at_a_time(inference_service, data_dir, wellnest_sample):
    uploads = _uploads(data_dir, wellnest_sample)
    with httpx.Client(base_url=inference_service.url, timeout=60) as client:
        alone = [client.post("/classify", files={"file": upload}).json() for upload in uploads]
        before = _batched_requests(client.get("/metrics").text)

    async def together() -> list[dict]:
        async with httpx.AsyncClient(base_url=inference_service.url, timeout=120) as client:
            responses = await asyncio.gather(
                *(client.post("/classify", files={"file": upload}) for upload in uploads * 3)
            )
        return [r.json() for r in responses]

    concurrent = asyncio.run(together())
    with httpx.Client(base_url=inference_service.url, timeout=60) as client:
        after = _batched_requests(client.get("/metrics").text)
    calls, single = after[0] - before[0], after[1] - before[1]
    assert calls > single, "no onnxruntime call served more than one request"

    for i, answer in enumerate(concurrent):
        expected = alone[i % len(uploads)]
        assert answer["verdict"] == expected["verdict"]
        for got, want in zip(answer["models"], expected["models"], strict=True):
            assert got["name"] == want["name"] and got["predicted_class"] == want["predicted_class"]
            for label, p in want["probabilities"].items():
                assert got["probabilities"][label] == pytest.approx(p, abs=1e-5)
        for got, want in zip(answer["explanation"], expected["explanation"], strict=True):
            for lead, score in want["leads"].items():
                assert got["leads"][lead] == pytest.approx(score, abs=1e-5)
            assert [s["importance"] for s in got["segments"]] == pytest.approx(
                [s["importance"] for s in want["segments"]], abs=1e-5
            )


def _wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _versions(client: httpx.Client) -> dict[str, int]:
    return {m["name"]: m["version"] for m in client.get("/healthz").json()["models"]}


def _rhythm_version(response: httpx.Response) -> int | None:
    return next((m["version"] for m in response.json().get("models", []) if m["name"] == "rhythm-1lead"), None)


def test_hot_reload_from_empty_registry_to_promoted_versions(azurite, wellnest_sample):
    """Empty registry: 503. Promote v1 of both models: served. Promote rhythm v2, archive the 12-lead model: the
    next answers use rhythm v2 alone, without a restart."""
    from ecg_shared.db import session_scope
    from ecg_shared.registry import archive

    database = create_test_database()
    service = start_inference("inference-reload", database, azurite.connection_string)
    blob = wellnest_sample.read_bytes()
    try:
        with httpx.Client(base_url=service.url, timeout=60) as client:
            response = client.post("/classify", files={"file": ("x.raw", blob)})
            assert response.status_code == 503 and "no active model" in response.json()["detail"]
            assert client.get("/readyz").status_code == 503

            first = {m.name: tiny_model(m, seed=0) for m in (rhythm_metadata(), twelve_lead_metadata())}
            register_and_promote(database, azurite.connection_string, rhythm_metadata(), first["rhythm-1lead"])
            register_and_promote(database, azurite.connection_string, twelve_lead_metadata(), first["normal-12lead"])
            _wait_for(lambda: _versions(client) == {"rhythm-1lead": 1, "normal-12lead": 1}, what="v1 served")
            assert client.get("/readyz").status_code == 200
            answer = client.post("/classify", files={"file": ("x.raw", blob)}).json()
            assert_same_probabilities(answer, in_process_answer(read_ecg(blob), first))

            # Requests keep arriving while the new version is promoted: none fails, each is answered wholly by
            # one version (probabilities of the version it names).
            during: list[httpx.Response] = []
            stop_sending = threading.Event()

            def keep_sending() -> None:
                with httpx.Client(base_url=service.url, timeout=60) as sender:
                    while not stop_sending.is_set():
                        during.append(sender.post("/classify", files={"file": ("x.raw", blob)}))

            sender = threading.Thread(target=keep_sending)
            sender.start()
            second = tiny_model(rhythm_metadata(), seed=7)
            try:
                assert register_and_promote(database, azurite.connection_string, rhythm_metadata(), second) == 2
                with session_scope(database) as session:
                    archive(session, "normal-12lead", 1)
                _wait_for(lambda: _versions(client) == {"rhythm-1lead": 2}, what="rhythm v2 alone served")
                # Each worker process reloads on its own poll: wait until the sender's worker serves v2 too.
                _wait_for(lambda: during and _rhythm_version(during[-1]) == 2, what="the sender answered by v2")
            finally:
                stop_sending.set()
                sender.join()
            assert during and all(r.status_code == 200 for r in during), [r.text for r in during if r.is_error][:2]
            record = read_ecg(blob)
            by_version = {1: in_process_answer(record, first), 2: in_process_answer(record, {"rhythm-1lead": second})}
            versions_seen = set()
            for response in during:
                rhythm = next(m for m in response.json()["models"] if m["name"] == "rhythm-1lead")
                versions_seen.add(rhythm["version"])
                expected = next(m for m in by_version[rhythm["version"]].models if m.name == "rhythm-1lead")
                assert rhythm["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)
            assert 2 in versions_seen
            answer = client.post("/classify", files={"file": ("x.raw", blob)}).json()
            assert [(m["name"], m["version"]) for m in answer["models"]] == [("rhythm-1lead", 2)]
            assert_same_probabilities(answer, in_process_answer(read_ecg(blob), {"rhythm-1lead": second}))
            assert service.alive()
    finally:
        service.stop()
        drop_test_database(database)
    assert "serving models rhythm-1lead:2" in service.log()


def test_registry_unreachable_means_not_ready_and_503(azurite, wellnest_sample):
    unreachable = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    service = start_inference("inference-nodb", unreachable, azurite.connection_string)
    try:
        with httpx.Client(base_url=service.url, timeout=60) as client:
            assert client.get("/healthz").status_code == 200
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "registry unavailable" in " ".join(ready.json()["problems"])
            response = client.post("/classify", files={"file": ("x.raw", wellnest_sample.read_bytes())})
            assert response.status_code == 503 and "no active model" in response.json()["detail"]
    finally:
        service.stop()


def test_bundled_models_without_a_registry(tmp_path, data_dir):
    models_dir = write_models_dir(tmp_path / "models", seed=3)
    unreachable = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    service = start_inference(
        "inference-bundled",
        unreachable,
        "UseDevelopmentStorage=true",
        ECG_INFERENCE_MODEL_SOURCE="bundled",
        ECG_MODELS_DIR=str(models_dir),
    )
    try:
        with httpx.Client(base_url=service.url, timeout=60) as client:
            assert client.get("/readyz").status_code == 200
            header = data_dir / "ptbxl" / "00002_lr.hea"
            answer = client.post("/classify", files={"file": ("r.zip", zip_wfdb_record(header))}).json()
            expected = {p.stem: p.read_bytes() for p in models_dir.glob("*.onnx")}
            assert_same_probabilities(answer, in_process_answer(read_ecg(header), expected))
    finally:
        service.stop()


def test_a_missing_model_file_does_not_take_the_other_models_down(azurite, wellnest_sample):
    """The 12-lead model's file is gone from the artifact store: the rhythm model is still served, /readyz names the
    missing one, and once the file is back the next poll loads it."""
    from azure.storage.blob import BlobServiceClient

    database = create_test_database()
    rhythm = tiny_model(rhythm_metadata(), seed=0)
    twelve = tiny_model(twelve_lead_metadata(), seed=0)
    register_and_promote(database, azurite.connection_string, rhythm_metadata(), rhythm)
    register_and_promote(database, azurite.connection_string, twelve_lead_metadata(), twelve)
    from ecg_shared.db import session_scope
    from ecg_shared.registry import get_version

    blobs = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client("models")
    with session_scope(database) as session:
        uri = get_version(session, "normal-12lead", 1).artifact_uri
    blob_name = uri.split("/", 3)[3]
    blobs.delete_blob(blob_name)
    service = start_inference("inference-missing-file", database, azurite.connection_string)
    try:
        with httpx.Client(base_url=service.url, timeout=60) as client:
            _wait_for(lambda: _versions(client) == {"rhythm-1lead": 1}, what="rhythm served alone")
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "normal-12lead" in " ".join(ready.json()["problems"])
            answer = client.post("/classify", files={"file": ("x.raw", wellnest_sample.read_bytes())}).json()
            assert [m["name"] for m in answer["models"]] == ["rhythm-1lead"]

            blobs.upload_blob(blob_name, twelve, overwrite=True)
            _wait_for(lambda: _versions(client) == {"rhythm-1lead": 1, "normal-12lead": 1}, what="both served")
            assert client.get("/readyz").status_code == 200
    finally:
        service.stop()
        drop_test_database(database)
