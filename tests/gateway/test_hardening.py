"""The gateway under hostile input, on the real stack (Procfile inference + gateway): never a 500, never an echoed
secret, a disconnecting client counted as such, one request id in both services' logs."""

from __future__ import annotations

import re
import socket
import time

import httpx
import numpy as np
import pytest

from tests.gateway.conftest import API_KEY
from tests.support.database import create_test_database, drop_test_database
from tests.support.stack import start_stack

KEY = {"X-API-Key": API_KEY}
BEYOND_INT64 = "9223372036854775808"
INT64_MAX = "9223372036854775807"


@pytest.fixture(scope="module")
def client(gateway_url) -> httpx.Client:
    with httpx.Client(base_url=gateway_url, timeout=60) as http:
        yield http


def _csv(values: str = "") -> bytes:
    t = np.arange(0, 10, 1 / 250)
    column = (0.8 * np.sin(2 * np.pi * 1.2 * t) ** 31).round(4).astype(str).tolist()
    return ("II\n" + "\n".join(column) + values).encode()


@pytest.mark.parametrize(
    ("fields", "data"),
    [
        ({"fs": "1"}, _csv()),
        ({"fs": "2147483648"}, _csv()),
        ({"fs": "1e400"}, _csv()),
        ({"fs": "250"}, _csv("\n1e400\n")),
        ({"fs": "-5"}, _csv()),
    ],
    ids=["fs=1", "fs=2**31", "fs=1e400", "sample=1e400", "fs<0"],
)
def test_classify_with_trace_passes_on_the_inference_refusal_instead_of_a_500(client, stack, fields, data):
    direct = httpx.post(stack.url("inference") + "/classify", files={"file": ("x.csv", data)}, data=fields, timeout=30)
    through = client.post("/classify", params={"trace": "true"}, files={"file": ("x.csv", data)}, data=fields)
    assert through.status_code == direct.status_code, through.text
    assert through.status_code < 500 and isinstance(through.json()["detail"], str)
    assert through.json() == direct.json()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/api/recordings/{BEYOND_INT64}"),
        ("GET", f"/api/recordings/{BEYOND_INT64}/signal"),
        ("GET", f"/api/recordings?offset={BEYOND_INT64}"),
        ("GET", f"/api/training-jobs/{BEYOND_INT64}"),
        ("POST", f"/api/training-jobs/{BEYOND_INT64}/cancel"),
        ("GET", f"/api/ingestion-jobs/{BEYOND_INT64}"),
        ("POST", f"/api/models/rhythm-1lead/versions/{BEYOND_INT64}/promote"),
        ("POST", "/api/models/rhythm-1lead/versions/2147483648/promote"),
        ("GET", "/api/recordings/-1"),
    ],
)
def test_integers_beyond_the_database_columns_are_422(client, method, path):
    response = client.request(method, path, headers=KEY)
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert set(problem) == {"loc", "msg", "type"} and problem["type"] in ("less_than_equal", "greater_than_equal")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/api/recordings/{INT64_MAX}"),
        ("GET", f"/api/recordings/{INT64_MAX}/signal"),
        ("GET", f"/api/training-jobs/{INT64_MAX}"),
        ("POST", f"/api/training-jobs/{INT64_MAX}/cancel"),
        ("GET", f"/api/ingestion-jobs/{INT64_MAX}"),
        ("POST", "/api/models/rhythm-1lead/versions/2147483647/promote"),
    ],
)
def test_the_largest_ids_are_simply_not_found(client, method, path):
    response = client.request(method, path, headers=KEY)
    assert response.status_code == 404, response.text
    assert client.get(f"/api/recordings?offset={INT64_MAX}").json()["items"] == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/models/%00"),
        ("GET", "/api/models/rhythm%00"),
        ("POST", "/api/models/%00/versions/1/promote"),
        ("GET", "/api/recordings?dataset=%00"),
        ("GET", "/api/recordings?label=a%00b"),
        ("GET", "/api/training-jobs?limit=1%00"),
    ],
)
def test_nul_characters_in_path_or_query_are_400(client, method, path):
    response = client.request(method, path, headers=KEY)
    assert response.status_code == 400, response.text
    assert "NUL character" in response.json()["detail"]


def test_nul_characters_in_json_bodies_are_4xx(client):
    training = client.post(
        "/api/training-jobs", headers=KEY, json={"dataset": "a\u0000b", "normal_classes": ["N"], "name": "nul-model"}
    )
    assert training.status_code == 422, training.text
    assert "NUL" in training.json()["detail"]
    ingestion = client.post(
        "/api/ingestion-jobs",
        headers=KEY,
        json={
            "dataset": "nul",
            "container": "recordings",
            "connection_string": "UseDevelopmentStorage=true",
            "rows": [{"blob": "a\u0000.hea", "label": "N"}],
        },
    )
    assert ingestion.status_code == 422, ingestion.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/training-jobs", '{"dataset": "d", "normal_classes": ["N"], "highpass_hz": 1e400}'),
        ("/api/training-jobs", '{"dataset": "d", "normal_classes": ["N"], "filters": {"min_duration_s": 1e400}}'),
        (
            "/api/ingestion-jobs",
            '{"dataset": "d", "container": "recordings", "connection_string": "UseDevelopmentStorage=true", '
            '"rows": [{"blob": "a.hea", "metadata": {"age": 1e400}}]}',
        ),
    ],
)
def test_infinite_numbers_in_json_bodies_are_refused_not_stored_as_null(client, path, body):
    response = client.post(path, headers={**KEY, "content-type": "application/json"}, content=body)
    assert response.status_code == 422, response.text
    assert "finite_number" in [problem["type"] for problem in response.json()["detail"]]


SECRET_SAS = "sv=2024-01-01&sp=rl&sig=U0VDUkVULXNhcy1zaWduYXR1cmUtMDEyMzQ1Njc4OQ%3D%3D"
SECRET_KEY_VALUE = "U0VDUkVULWFjY291bnQta2V5LTAxMjM0NTY3ODk="
SECRET_CONNECTION = (
    f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={SECRET_KEY_VALUE};EndpointSuffix=core.windows.net"
)
SECRET_FRAGMENTS = ("U0VDUkVU", "sig=", "AccountKey")


@pytest.mark.parametrize(
    "fields",
    [
        {"sas_token": SECRET_SAS, "connection_string": SECRET_CONNECTION},
        {"account_url": f"https://acct.blob.core.windows.net?{SECRET_SAS}", "sas_token": SECRET_SAS},
        {"connection_string": f"AccountKey={SECRET_KEY_VALUE};this is not a connection string"},
        {"connection_string": SECRET_CONNECTION, "account_url": "https://other.blob.core.windows.net"},
        {"sas_token": [SECRET_SAS], "account_url": "https://acct.blob.core.windows.net"},
        {"sas_token": {"sig": SECRET_SAS}, "account_url": "https://acct.blob.core.windows.net"},
        {"connection_string": SECRET_CONNECTION, "password": SECRET_SAS},
        {"connection_string": SECRET_CONNECTION, "container": f"Bad {SECRET_SAS}"},
        {
            "connection_string": SECRET_CONNECTION,
            "rows": [{"blob": f"https://acct.blob.core.windows.net/c/a.hea?{SECRET_SAS}"}],
        },
    ],
    ids=[
        "both credentials",
        "two SAS",
        "malformed connection string",
        "account mismatch",
        "SAS as a list",
        "SAS as an object",
        "unknown field",
        "SAS in a container name",
        "SAS in a row",
    ],
)
def test_422_answers_never_echo_a_submitted_secret(client, fields):
    body = {"dataset": "secrets", "container": "recordings", "prefix": "x/", **fields}
    if "rows" in fields:
        del body["prefix"]
    response = client.post("/api/ingestion-jobs", headers=KEY, json=body)
    assert response.status_code == 422, response.text
    for fragment in SECRET_FRAGMENTS:
        assert fragment not in response.text, response.text
    problems = response.json()["detail"]
    assert problems and all(set(p) == {"loc", "msg", "type"} for p in problems)


def test_a_row_carrying_a_sas_is_refused_naming_the_row(client):
    rows = [{"blob": "A00001.hea"}, {"blob": f"http://127.0.0.1:1/devstoreaccount1/recordings/A00002.hea?{SECRET_SAS}"}]
    response = client.post(
        "/api/ingestion-jobs",
        headers=KEY,
        json={"dataset": "secrets", "container": "recordings", "connection_string": SECRET_CONNECTION, "rows": rows},
    )
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "rows", 1, "blob"] and "query string (a SAS token?)" in problem["msg"]


def _counted(client: httpx.Client, route: str, status: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if (
            line.startswith("ecg_gateway_requests_total{")
            and f'route="{route}"' in line
            and f'status="{status}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_client_that_disconnects_mid_upload_is_counted_as_499_not_an_error(client, stack):
    before = _counted(client, "/classify", "499")
    with socket.create_connection(("127.0.0.1", stack.port("gateway"))) as raw:
        raw.sendall(
            b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n"
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.raw"\r\n\r\n' + b"\0" * 1000
        )
        time.sleep(0.3)
    deadline = time.monotonic() + 20
    while _counted(client, "/classify", "499") < before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _counted(client, "/classify", "499") == before + 1
    log = stack["gateway"].log()
    assert "client disconnected before its request was read: POST /classify" in log
    assert "ClientDisconnect" not in log and "unhandled error" not in log


def _inference_counted(stack, status: str) -> float:
    text = httpx.get(stack.url("inference") + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("ecg_inference_requests_total{") and f'status="{status}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_client_that_disconnects_from_inference_is_counted_as_499(stack):
    before = _inference_counted(stack, "499")
    with socket.create_connection(("127.0.0.1", stack.port("inference"))) as raw:
        raw.sendall(
            b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
            + b'{"samples": [' * 10
        )
        time.sleep(0.3)
    deadline = time.monotonic() + 20
    while _inference_counted(stack, "499") < before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _inference_counted(stack, "499") == before + 1
    assert "unexpected error" not in stack["inference"].log()


def test_one_request_id_in_the_answer_and_both_services_logs(client, stack, wellnest_sample):
    given = "trace-me-0123456789"
    answer = client.post(
        "/classify", files={"file": ("x.raw", wellnest_sample.read_bytes())}, headers={"X-Request-ID": given}
    )
    assert answer.status_code == 200 and answer.headers["x-request-id"] == given
    fresh = client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])
    odd = client.get("/healthz", headers={"X-Request-ID": "not ok\tat all"})
    assert odd.headers["x-request-id"] != "not ok\tat all"
    deadline = time.monotonic() + 10
    while given not in stack["inference"].log() and time.monotonic() < deadline:
        time.sleep(0.1)
    for service in ("gateway", "inference"):
        lines = [line for line in stack[service].log().splitlines() if f"[{given}]" in line]
        assert any('"POST /classify HTTP/1.1" 200' in line for line in lines), (service, lines)


def test_the_azure_sdk_does_not_log_every_request_s_headers(client, stack, wellnest_sample):
    assert client.post("/classify", files={"file": ("x.raw", wellnest_sample.read_bytes())}).status_code == 200
    log = stack["inference"].log()  # the models were loaded from Azurite through the SDK
    assert "rhythm-1lead" in log or "loaded" in log.lower()
    assert "Request headers:" not in log and "Response headers:" not in log and "Request URL:" not in log


def test_not_ready_while_inference_has_no_model_loaded(azurite):
    database = create_test_database()
    try:
        with start_stack(
            ["inference", "gateway"], database_url=database, artifact_connection_string=azurite.connection_string
        ) as empty:
            ready = httpx.get(empty.url("gateway") + "/readyz", timeout=30)
            assert ready.status_code == 503, ready.text
            checks = ready.json()["checks"]
            assert checks["postgres"] == "ok" and "no model loaded" in checks["inference"]
    finally:
        drop_test_database(database)


def test_openapi_documents_the_error_answers_and_the_shape_of_detail(client):
    spec = client.get("/openapi.json").json()
    detail = spec["components"]["schemas"]["ErrorAnswer"]["properties"]["detail"]
    assert {"type": "string"} in detail["anyOf"]
    assert {"type": "array", "items": {"$ref": "#/components/schemas/ValidationProblem"}} in detail["anyOf"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # FastAPI's default 422 shape is not answered
    expected = {
        ("post", "/classify"): {"400", "401", "403", "404", "413", "415", "422", "503"},
        ("get", "/api/recordings/{recording_id}"): {"400", "404", "422", "503"},
        ("post", "/api/models/{name}/versions/{version}/promote"): {"400", "401", "403", "404", "422", "503"},
        ("post", "/api/training-jobs/{job_id}/cancel"): {"400", "401", "403", "404", "409", "422", "503"},
        ("post", "/api/ingestion-jobs"): {"400", "401", "403", "422", "503"},
    }
    for (method, path), codes in expected.items():
        responses = spec["paths"][path][method]["responses"]
        assert codes <= set(responses), (method, path, sorted(responses))
        for code in codes:
            schema = responses[code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorAnswer"}, (method, path, code)
