"""The gateway's REST API against real processes (Procfile entries): forwarding, limits, keys, registry, data."""

from __future__ import annotations

import io
import socket

import httpx
import numpy as np
import pytest

from ecg_shared.formats import Record, write_wellnest
from tests.gateway.conftest import API_KEY
from tests.support.stack import start_stack

KEY = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def client(gateway_url) -> httpx.Client:
    with httpx.Client(base_url=gateway_url, timeout=30) as http:
        yield http


def test_health_ready_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok", "inference": "ok"}
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/classify",
        "/api/training-jobs",
        "/api/ingestion-jobs",
        "/api/models",
        "/api/recordings",
        "/api/recordings/{recording_id}/signal",
        "/api/models/{name}/versions/{version}/promote",
    ):
        assert path in paths
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "https://" not in docs.text  # Swagger UI comes from the gateway, not from a CDN
    for asset in ("/static/swagger-ui/swagger-ui-bundle.js", "/static/swagger-ui/swagger-ui.css"):
        assert asset in docs.text and client.get(asset).status_code == 200


def test_classify_real_wellnest_recording_is_forwarded_with_a_trace(client, stack, wellnest_sample):
    data = wellnest_sample.read_bytes()
    direct = httpx.post(stack.url("inference") + "/classify", files={"file": ("sample-10s.raw", data)}, timeout=30)
    assert direct.status_code == 200, direct.text
    response = client.post("/classify", params={"trace": "true"}, files={"file": ("sample-10s.raw", data)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verdict"]["label"] in ("normal", "abnormal", "unreadable")
    assert 0.0 <= body["verdict"]["probability"] <= 1.0
    assert {m["name"] for m in body["models"]} == {"rhythm-1lead", "normal-12lead"}
    assert body["recording"]["format"] == "wellnest"
    trace = body["trace"]
    assert trace["lead_names"] == body["recording"]["leads"] and len(trace["lead_names"]) == 12
    n = len(trace["leads"]["II"])
    assert abs(n / trace["sampling_rate"] - trace["duration_s"]) < 0.05
    assert 0.2 < np.ptp(np.array(trace["leads"]["II"])) < 10, "lead II should show mV-scale R waves"
    # Apart from the trace, the answer is the inference service's own.
    expected = direct.json()
    del body["trace"]
    for part in ("timings",):
        expected.pop(part), body.pop(part)
    assert body == expected


def test_classify_json_samples_are_forwarded(client):
    t = np.arange(0, 10, 1 / 300)
    body = {
        "samples": (0.8 * np.sin(2 * np.pi * 1.2 * t) ** 31).round(4).tolist(),
        "sampling_rate": 300,
        "leads": ["II"],
    }
    response = client.post("/classify", json=body)
    assert response.status_code == 200, response.text
    assert [m["name"] for m in response.json()["models"]] == ["rhythm-1lead"]


@pytest.mark.parametrize(
    ("files", "content", "status", "words"),
    [
        ({"file": ("broken.raw", b"\x00\x01 this is not an ECG recording at all " * 20)}, None, 422, "format"),
        ({"file": ("empty.csv", b"")}, None, 422, "empty"),
        ({"other": ("x.raw", b"abc")}, None, 422, "'file'"),
        (None, b"plain text", 415, "multipart/form-data"),
    ],
)
def test_bad_uploads_get_a_clear_4xx(client, files, content, status, words):
    if files is not None:
        response = client.post("/classify", files=files)
    else:
        response = client.post("/classify", content=content, headers={"content-type": "text/plain"})
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_oversized_upload_is_refused_before_it_is_read(client, stack):
    limit = int(stack.env["ECG_MAX_UPLOAD_BYTES"])
    response = client.post("/classify", files={"file": ("big.raw", b"\0" * (limit + 1))})
    assert response.status_code == 413
    assert "upload too large" in response.json()["detail"]

    # A chunked upload (no Content-Length) is cut off as it streams: the gateway answers 413 long before the
    # client has sent everything (here a 'file' ten times the limit).
    def chunks():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.raw"\r\n\r\n'
        for _ in range(10 * limit // 65536):
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    response = client.post("/classify", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413


def test_classify_answers_503_when_inference_is_down(database_url, azurite, active_models):
    # The gateway alone: its ECG_INFERENCE_URL points at the stack's inference port, where nothing listens.
    with start_stack(
        ["gateway"],
        database_url=database_url,
        artifact_connection_string=azurite.connection_string,
        env={"ECG_INFERENCE_CONNECT_TIMEOUT_S": "1"},
    ) as alone:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", alone.port("inference"))) != 0
        record = Record(np.zeros((5000, 8), np.float32), 500.0, [f"ch{i}" for i in range(8)], {})
        response = httpx.post(
            alone.url("gateway") + "/classify",
            timeout=10,
            files={"file": ("x.raw", io.BytesIO(write_wellnest(_wellnest_like(record))))},
        )
        assert response.status_code == 503
        assert "inference service is unavailable" in response.json()["detail"]
        ready = httpx.get(alone.url("gateway") + "/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["checks"]["inference"] != "ok"
        metrics = httpx.get(alone.url("gateway") + "/metrics", timeout=10).text
        assert 'ecg_gateway_downstream_failures_total{reason="unreachable",service="inference"} 1.0' in metrics


def _wellnest_like(record: Record) -> Record:
    """A record with the eight leads the Wellnest writer stores."""
    return Record(record.signal, record.sampling_rate, ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"], {})


def test_state_changing_endpoints_need_the_api_key(client):
    path = "/api/models/rhythm-1lead/versions/1/promote"
    missing = client.post(path)
    assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
    wrong = client.post(path, headers={"X-API-Key": "not-the-key"})
    assert wrong.status_code == 403
    assert API_KEY not in wrong.text
    for path, body in (
        ("/api/training-jobs", {"dataset": "x", "normal_classes": ["N"]}),
        ("/api/ingestion-jobs", {"dataset": "x", "container": "c"}),
    ):
        assert client.post(path, json=body).status_code == 401
        assert client.post(path, json=body, headers={"X-API-Key": "nope"}).status_code == 403


def test_without_a_configured_key_state_changes_are_refused(database_url, azurite, active_models):
    with start_stack(
        ["gateway"],
        database_url=database_url,
        artifact_connection_string=azurite.connection_string,
        env={"ECG_API_KEY": ""},
    ) as keyless:
        response = httpx.post(
            keyless.url("gateway") + "/api/models/rhythm-1lead/versions/1/promote",
            headers={"X-API-Key": ""},
            timeout=10,
        )
        assert response.status_code == 503
        assert "ECG_API_KEY" in response.json()["detail"]


def test_ingestion_jobs_without_a_secret_key_are_refused_clearly(database_url, azurite, active_models):
    with start_stack(
        ["gateway"],
        database_url=database_url,
        artifact_connection_string=azurite.connection_string,
        api_key=API_KEY,
        env={"ECG_SECRET_KEY": ""},
    ) as no_secret:
        response = httpx.post(
            no_secret.url("gateway") + "/api/ingestion-jobs",
            headers=KEY,
            timeout=10,
            json={
                "dataset": "x",
                "container": "recordings",
                "account_url": azurite.account_url,
                "sas_token": "sv=1&sig=x",
            },
        )
        assert response.status_code == 503
        assert "ECG_SECRET_KEY" in response.json()["detail"] and "sig=x" not in response.text


# --- Recordings ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored_recordings(database_url) -> dict[str, list[int]]:
    """Synthetic recordings in two datasets, with labels, stored through the shared store."""
    from ecg_shared.db import session_scope
    from ecg_shared.db.store import StoreItem, content_hash, store_recordings

    ids: dict[str, list[int]] = {}
    rng = np.random.default_rng(1)
    with session_scope(database_url) as session:
        for dataset, count, rate in (("paging-a", 7, 300.0), ("paging-b", 3, 500.0)):
            items = []
            for i in range(count):
                signal = (rng.standard_normal((int(rate * 20), 1)) * 0.1).astype(np.float32)
                label = "N" if i % 2 == 0 else "A"
                items.append(
                    StoreItem(
                        Record(signal, rate, ["II"], {}),
                        f"mem://{dataset}/{i}",
                        "1",
                        content_hash(signal.tobytes()),
                        label,
                    )
                )
            ids[dataset] = [i for i in store_recordings(session, dataset, items) if i is not None]
    return ids


def test_recordings_are_paged_and_filtered(client, stored_recordings):
    first = client.get("/api/recordings", params={"dataset": "paging-a", "limit": 4}).json()
    second = client.get("/api/recordings", params={"dataset": "paging-a", "limit": 4, "offset": 4}).json()
    assert first["total"] == second["total"] == 7
    assert len(first["items"]) == 4 and len(second["items"]) == 3
    seen = [r["id"] for r in first["items"] + second["items"]]
    assert sorted(seen) == sorted(stored_recordings["paging-a"]) and len(set(seen)) == 7
    labelled = client.get("/api/recordings", params={"dataset": "paging-a", "label": "A"}).json()
    assert labelled["total"] == 3 and {r["label"] for r in labelled["items"]} == {"A"}
    other = client.get("/api/recordings", params={"dataset": "paging-b"}).json()["items"][0]
    assert other["dataset"] == "paging-b" and other["duration_s"] == pytest.approx(20.0)
    assert client.get("/api/recordings", params={"limit": 0}).status_code == 422


def test_one_recording_and_its_plot_signal(client, stored_recordings):
    recording_id = stored_recordings["paging-b"][0]
    detail = client.get(f"/api/recordings/{recording_id}").json()
    assert detail["sampling_rate"] == 500.0 and detail["lead_names"] == ["II"] and detail["n_samples"] == 10000
    full = client.get(f"/api/recordings/{recording_id}/signal").json()
    assert len(full["leads"]["II"]) == 10000 and full["sampling_rate"] == 500.0  # within ECG_PLOT_MAX_POINTS
    small = client.get(f"/api/recordings/{recording_id}/signal", params={"max_points": 1000}).json()
    assert len(small["leads"]["II"]) == 1000 and small["duration_s"] == pytest.approx(20.0)
    assert small["sampling_rate"] == pytest.approx(50.0)
    missing = client.get("/api/recordings/999999999")
    assert missing.status_code == 404 and "999999999" in missing.json()["detail"]
    assert client.get("/api/recordings/999999999/signal").status_code == 404


# --- Models --------------------------------------------------------------------------------------------------------


def test_models_are_listed_and_a_version_promoted(client, database_url, active_models):
    from ecg_shared import registry
    from ecg_shared.db import session_scope
    from tests.inference.onnx_models import tiny_model, twelve_lead_metadata

    with session_scope(database_url) as session:
        metadata = twelve_lead_metadata()
        candidate = registry.register_version(
            session, metadata, tiny_model(metadata, seed=5), model_card={"intended_use": "promotion test"}
        ).version
    listed = {m["name"]: m for m in client.get("/api/models").json()["models"]}
    assert {"rhythm-1lead", "normal-12lead"} <= set(listed)
    twelve = listed["normal-12lead"]
    previous = twelve["active_version"]
    assert {v["version"]: v["stage"] for v in twelve["versions"]}[candidate] == "candidate"
    assert twelve["versions"][0]["classes"] == ["Normal", "Abnormal"] and len(twelve["versions"][0]["leads"]) == 12

    # force: this test is about the registry's bookkeeping; the gate has tests of its own (test_reviews.py).
    promoted = client.post(
        f"/api/models/normal-12lead/versions/{candidate}/promote", params={"force": "true"}, headers=KEY
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["stage"] == "active"
    after = client.get("/api/models/normal-12lead").json()
    stages = {v["version"]: v["stage"] for v in after["versions"]}
    assert after["active_version"] == candidate and stages[previous] == "archived"

    unknown = client.post("/api/models/normal-12lead/versions/999/promote", params={"force": "true"}, headers=KEY)
    assert unknown.status_code == 404 and "999" in unknown.json()["detail"]
    assert client.get("/api/models/no-such-model").status_code == 404


# --- Jobs ----------------------------------------------------------------------------------------------------------


def test_training_job_is_created_listed_and_cancelled(client):
    bad = client.post(
        "/api/training-jobs",
        headers=KEY,
        json={"dataset": "x", "normal_classes": ["N"], "window_s": 0.1, "sampling_rate": 100},
    )
    assert bad.status_code == 422 and "need >= 64" in bad.text
    created = client.post(
        "/api/training-jobs", headers=KEY, json={"dataset": "no-such-dataset", "normal_classes": ["N"], "epochs": 1}
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["status"] in ("queued", "running", "failed") and job["dataset"] == "no-such-dataset"
    assert client.get(f"/api/training-jobs/{job['id']}").json()["id"] == job["id"]
    assert job["id"] in [j["id"] for j in client.get("/api/training-jobs").json()["jobs"]]
    cancelled = client.post(f"/api/training-jobs/{job['id']}/cancel", headers=KEY)
    if cancelled.status_code == 200:  # still queued (no training worker in this stack): cancelled at once
        assert cancelled.json()["status"] == "cancelled"
        again = client.post(f"/api/training-jobs/{job['id']}/cancel", headers=KEY)
        assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
    else:
        assert cancelled.status_code == 409
    assert client.get("/api/training-jobs/999999").status_code == 404
    assert client.post("/api/training-jobs/999999/cancel", headers=KEY).status_code == 404


def test_ingestion_job_is_created_without_echoing_its_secret(client, azurite):
    sas = "sv=2024-01-01&ss=b&srt=co&sp=rl&sig=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D"
    created = client.post(
        "/api/ingestion-jobs",
        headers=KEY,
        json={
            "dataset": "gateway-ingest",
            "container": "recordings",
            "account_url": azurite.account_url,
            "sas_token": sas,
            "prefix": "none/",
        },
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["status"] == "queued" and job["auth"] == "sas_token"
    fetched = client.get(f"/api/ingestion-jobs/{job['id']}")
    listed = client.get("/api/ingestion-jobs")
    for response in (created, fetched, listed):
        assert "c2VjcmV0" not in response.text and "sig=" not in response.text
    assert job["id"] in [j["id"] for j in listed.json()["jobs"]]
    missing = client.post("/api/ingestion-jobs", headers=KEY, json={"dataset": "x", "container": "recordings"})
    assert missing.status_code == 422 and "credentials missing" in missing.text
    assert client.get("/api/ingestion-jobs/999999").status_code == 404


def test_a_silent_inference_service_gives_503_after_the_timeout_and_classify_can_require_the_key(
    database_url, azurite, active_models, wellnest_sample
):
    import time

    with socket.socket() as silent:  # accepts connections (kernel backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        env = {
            "ECG_INFERENCE_URL": f"http://127.0.0.1:{silent.getsockname()[1]}",
            "ECG_INFERENCE_TIMEOUT_S": "1",
            "ECG_CLASSIFY_REQUIRES_KEY": "true",
        }
        with start_stack(
            ["gateway"],
            database_url=database_url,
            api_key=API_KEY,
            artifact_connection_string=azurite.connection_string,
            env=env,
        ) as keyed:
            url = keyed.url("gateway") + "/classify"
            files = {"file": ("sample-10s.raw", wellnest_sample.read_bytes())}
            assert httpx.post(url, files=files, timeout=10).status_code == 401
            assert httpx.post(url, files=files, headers={"X-API-Key": "wrong"}, timeout=10).status_code == 403
            started = time.monotonic()
            response = httpx.post(url, files=files, headers=KEY, timeout=30)
            assert response.status_code == 503
            assert "did not answer in time" in response.json()["detail"]
            assert time.monotonic() - started < 15, "the gateway must give up after its timeout, not hang"


def test_metrics_count_requests_by_route_template(client, stored_recordings):
    recording_id = stored_recordings["paging-a"][0]
    for _ in range(3):
        assert client.get(f"/api/recordings/{recording_id}").status_code == 200
    text = client.get("/metrics").text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("ecg_gateway_requests_total{")
        and 'route="/api/recordings/{recording_id}"' in line
        and 'status="200"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) >= 3
    assert f'/api/recordings/{recording_id}"' not in text  # no label per id
    assert "ecg_gateway_request_duration_seconds_bucket" in text


def test_a_job_that_cannot_be_queued_is_closed_and_answered_with_503(database_url, azurite, active_models):
    from ecg_shared.db import session_scope
    from ecg_shared.jobs.training import get_training_job, list_training_jobs

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_redis = f"redis://127.0.0.1:{closed.getsockname()[1]}/0"  # bound, not listening: connection refused
        with start_stack(
            ["gateway"],
            database_url=database_url,
            api_key=API_KEY,
            artifact_connection_string=azurite.connection_string,
            env={"ECG_REDIS_URL": dead_redis},
        ) as no_queue:
            base = no_queue.url("gateway")
            response = httpx.post(
                base + "/api/training-jobs",
                headers=KEY,
                timeout=60,
                json={"dataset": "queue-down", "normal_classes": ["N"], "name": "queue-down-model"},
            )
            assert response.status_code == 503, response.text
            assert "job queue (Redis) is unreachable" in response.json()["detail"]
            ready = httpx.get(base + "/readyz", timeout=30).json()
            assert ready["checks"]["redis"] != "ok" and ready["checks"]["postgres"] == "ok"
    with session_scope(database_url) as session:
        job = next(j for j in list_training_jobs(session, 500) if j.model_name == "queue-down-model")
        job = get_training_job(session, job.id)
        assert job.status == "cancelled" and "could not be queued" in job.error
