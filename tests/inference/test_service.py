"""The inference service as a real uvicorn process on real onnxruntime, models from a real registry (Postgres +
Azurite): uploads of real recordings, JSON input, every kind of bad input, health, metrics."""

from __future__ import annotations

import json
import select
import socket
import time

import numpy as np
import pytest

from ecg_inference.classify import classify_prepared, prepare_recording
from ecg_inference.models import ModelSet, load_model
from ecg_shared.formats import read_ecg, write_wellnest, zip_wfdb_record


def in_process_answer(record, tiny_models, explain=True, version=1):
    """What the service must answer, computed here from the same ONNX bytes and the same pipeline."""
    models = {name: load_model(data, version=version) for name, data in tiny_models.items()}
    prepared = prepare_recording(record, ModelSet(models, "local"), explain)
    return classify_prepared([prepared], [time.perf_counter()])[0]


def assert_same_probabilities(answer: dict, expected, tolerance=1e-5):
    got = {m["name"]: m["probabilities"] for m in answer["models"]}
    want = {m.name: m.probabilities for m in expected.models}
    assert got.keys() == want.keys()
    for name, probabilities in want.items():
        for label, p in probabilities.items():
            assert got[name][label] == pytest.approx(p, abs=tolerance), (name, label)


def test_wellnest_upload_gets_both_models_with_explanation(client, wellnest_sample, tiny_models):
    response = client.post("/classify", files={"file": ("sample-10s.raw", wellnest_sample.read_bytes())})
    assert response.status_code == 200, response.text
    answer = response.json()
    recording = answer["recording"]
    assert recording["format"] == "wellnest" and recording["sampling_rate"] == 500
    assert recording["leads"][:2] == ["I", "II"] and len(recording["leads"]) == 12
    assert recording["duration_s"] == pytest.approx(10.0)
    assert 65 <= recording["heart_rate_bpm"] <= 85  # the recording's regular rhythm at about 75 bpm
    assert recording["quality"]["usable"] is True
    models = {m["name"]: m for m in answer["models"]}
    assert set(models) == {"rhythm-1lead", "normal-12lead"}
    assert models["rhythm-1lead"]["leads"] == ["II"] and len(models["normal-12lead"]["leads"]) == 12
    assert models["normal-12lead"]["version"] == 1 and models["normal-12lead"]["windows"] == 1
    for model in models.values():
        assert sum(model["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert model["predicted_class"] == max(model["probabilities"], key=model["probabilities"].get)
    assert answer["verdict"]["label"] in ("normal", "abnormal") and answer["verdict"]["rule"]
    assert_same_probabilities(answer, in_process_answer(read_ecg(wellnest_sample), tiny_models))

    explanation = {e["model"]: e for e in answer["explanation"]}
    twelve = explanation["normal-12lead"]
    assert list(twelve["leads"]) == recording["leads"]
    assert [s["start_s"] for s in twelve["segments"]] == [float(i) for i in range(10)]
    assert any(abs(s["importance"]) > 1e-4 for s in twelve["segments"])
    timings = answer["timings"]
    assert timings["providers"] == ["CPUExecutionProvider"]
    assert timings["total_ms"] >= timings["inference_ms"] > 0


def test_cinc_wfdb_zip_gets_the_rhythm_model_only(client, data_dir, tiny_models):
    header = data_dir / "cinc2017" / "A00001.hea"
    response = client.post(
        "/classify", files={"file": ("A00001.zip", zip_wfdb_record(header))}, params={"explain": "false"}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["recording"]["sampling_rate"] == 300 and answer["recording"]["duration_s"] == pytest.approx(30.0)
    assert [m["name"] for m in answer["models"]] == ["rhythm-1lead"]
    assert set(answer["models"][0]["probabilities"]) == {"N", "A", "O", "~"}
    assert answer["explanation"] is None and answer["timings"]["explain_ms"] == 0
    assert_same_probabilities(answer, in_process_answer(read_ecg(header), tiny_models, explain=False))


def test_long_recording_is_windowed_and_averaged(client, data_dir, tiny_models):
    header = data_dir / "cinc2017" / "A00003.hea"  # 60 s: two 30 s windows
    answer = client.post("/classify", files={"file": ("A00003.zip", zip_wfdb_record(header))}).json()
    assert answer["models"][0]["windows"] == 2
    segments = answer["explanation"][0]["segments"]
    assert segments[0]["start_s"] == 0 and segments[-1]["end_s"] == pytest.approx(60.0)
    assert_same_probabilities(answer, in_process_answer(read_ecg(header), tiny_models))


def test_ptbxl_record_at_100_hz(client, data_dir, tiny_models):
    header = data_dir / "ptbxl" / "00001_lr.hea"
    response = client.post("/classify", files={"file": ("00001_lr.zip", zip_wfdb_record(header))})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["recording"]["sampling_rate"] == 100
    assert {m["name"] for m in answer["models"]} == {"rhythm-1lead", "normal-12lead"}
    assert_same_probabilities(answer, in_process_answer(read_ecg(header), tiny_models))


def test_model_parameter_restricts_to_one_model(client, wellnest_sample):
    response = client.post(
        "/classify", params={"model": "normal-12lead"}, files={"file": ("x.raw", wellnest_sample.read_bytes())}
    )
    assert [m["name"] for m in response.json()["models"]] == ["normal-12lead"]
    response = client.post(
        "/classify", params={"model": "nope"}, files={"file": ("x.raw", wellnest_sample.read_bytes())}
    )
    assert response.status_code == 404 and "nope" in response.json()["detail"]


def test_json_samples_equal_the_same_file_upload(client, data_dir, tiny_models):
    record = read_ecg(data_dir / "ptbxl" / "00001_lr.hea")
    body = {"samples": record.signal.tolist(), "sampling_rate": record.sampling_rate, "leads": record.lead_names}
    response = client.post("/classify", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["recording"]["format"] == "json" and answer["recording"]["n_samples"] == 1000
    assert_same_probabilities(answer, in_process_answer(record, tiny_models))


def test_json_single_lead_flat_list_at_another_rate(client, data_dir):
    record = read_ecg(data_dir / "cinc2017" / "A00001.hea")
    lead = record.signal[::2, 0]  # 150 Hz: resampled to the model's 300 Hz
    response = client.post("/classify", json={"samples": lead.tolist(), "sampling_rate": 150, "leads": ["II"]})
    assert response.status_code == 200, response.text
    assert [m["name"] for m in response.json()["models"]] == ["rhythm-1lead"]


def test_upload_resampled_from_any_rate(client, wellnest_sample):
    record = read_ecg(wellnest_sample)
    csv = (
        "# fs=250\n"
        + ",".join(record.lead_names)
        + "\n"
        + "\n".join(",".join(f"{v:.4f}" for v in row) for row in record.signal[::2])
    )
    answer = client.post("/classify", files={"file": ("ecg.csv", csv.encode())}).json()
    assert answer["recording"]["format"] == "csv" and answer["recording"]["sampling_rate"] == 250
    assert len(answer["models"]) == 2


# --- Bad input: always a 4xx that names the problem --------------------------------------------------------------


def _detail(response) -> str:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    return response.json()["detail"]


def test_empty_file(client):
    assert "empty" in _detail(client.post("/classify", files={"file": ("empty.raw", b"")}))


def test_unknown_format(client):
    response = client.post("/classify", files={"file": ("notes.bin", bytes(range(256)) * 10)})
    assert response.status_code == 422 and "unknown ECG format" in _detail(response)


def test_unknown_format_field(client, wellnest_sample):
    response = client.post("/classify", data={"format": "gdf"}, files={"file": ("x", wellnest_sample.read_bytes())})
    assert response.status_code == 422 and "gdf" in _detail(response)


def test_bad_fs_field(client):
    response = client.post("/classify", data={"fs": "fast"}, files={"file": ("x.csv", b"II\n1\n2\n")})
    assert response.status_code == 422 and "fs" in _detail(response)


def test_truncated_wellnest_blob(client, wellnest_sample):
    data = wellnest_sample.read_bytes()
    one_second = client.post("/classify", files={"file": ("cut.raw", data[:8000])})
    assert one_second.status_code == 422 and "too short" in _detail(one_second)
    mid_frame = client.post("/classify", files={"file": ("cut.raw", data[: 16 * 1500 + 7])})  # 3 s, a torn frame
    assert mid_frame.status_code == 422 and "too short" in _detail(mid_frame)


def test_nan_samples(client):
    samples = np.sin(np.linspace(0, 60, 3000))
    samples[100:110] = np.nan
    body = json.dumps({"samples": samples.tolist(), "sampling_rate": 300, "leads": ["II"]}).encode()
    response = client.post("/classify", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422 and "NaN" in _detail(response)
    csv = "II\n" + "\n".join("nan" if 100 <= i < 110 else f"{v:.3f}" for i, v in enumerate(samples))
    response = client.post("/classify", data={"fs": "300"}, files={"file": ("x.csv", csv.encode())})
    assert response.status_code == 422 and "NaN" in _detail(response)


def test_flat_line(client):
    response = client.post(
        "/classify",
        json={
            "samples": [[0.2] * 12] * 5000,
            "sampling_rate": 500,
            "leads": ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"],
        },
    )
    assert response.status_code == 422 and "flat line" in _detail(response)


def test_one_second_recording(client):
    wave = np.sin(np.linspace(0, 8, 300)).tolist()
    response = client.post("/classify", json={"samples": wave, "sampling_rate": 300, "leads": ["II"]})
    assert response.status_code == 422
    assert "too short" in _detail(response) and "1.00 s" in _detail(response)


def test_upload_over_the_limit_declared_in_content_length_is_refused_before_reading(inference_service):
    """A client announcing 200 MB gets 413 at once; the service reads none of it."""
    boundary = "xyz"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.raw"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    request = (
        (
            f"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {200_000_000}\r\n\r\n"
        ).encode()
        + head
        + b"\0" * 65536
    )
    with socket.create_connection(("127.0.0.1", inference_service.port), timeout=10) as sock:
        sock.sendall(request)
        reply = _read_reply(sock)
    assert reply.startswith("HTTP/1.1 413") and "upload too large" in reply


def _read_reply(sock: socket.socket, received: str = "") -> str:
    """The status line, headers and body of one HTTP response (the body may arrive in a later packet)."""
    while "\r\n\r\n" not in received or "}" not in received.split("\r\n\r\n", 1)[1]:
        data = sock.recv(65536)
        if not data:
            break
        received += data.decode(errors="replace")
    return received


def test_streamed_upload_over_the_limit_is_cut_off(inference_service):
    """Without Content-Length (chunked), the body is counted as it streams and refused past the limit (20 MB)."""
    boundary = "xyz"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.raw"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    chunk = b"\0" * (1 << 20)
    sent = 0
    with socket.create_connection(("127.0.0.1", inference_service.port), timeout=30) as sock:
        sock.sendall(
            (
                f"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}"
                "\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        sock.sendall(f"{len(head):x}\r\n".encode() + head + b"\r\n")
        reply = ""
        try:
            while sent < 200 * (1 << 20) and not reply:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
                if select.select([sock], [], [], 0)[0]:  # the service has answered while we are still sending
                    reply = sock.recv(65536).decode(errors="replace")
        except OSError:  # the service answered and closed: stop sending
            pass
        reply = _read_reply(sock, reply)
    assert reply.startswith("HTTP/1.1 413") and "upload too large" in reply
    assert sent < 40 * (1 << 20)  # answered soon after the 20 MB limit, not after the whole 200 MB


def test_missing_file_field_wrong_content_type_and_bad_json(client):
    assert "'file'" in _detail(client.post("/classify", files={"upload": ("x.raw", b"abc")}))
    response = client.post("/classify", content=b"abc", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "text/plain" in _detail(response)
    response = client.post("/classify", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "invalid JSON" in _detail(response)


def test_json_shape_errors_name_the_field(client):
    detail = _detail(
        client.post("/classify", json={"samples": [[1, 2], [3]], "sampling_rate": 100, "leads": ["I", "II"]})
    )
    assert "rows differ in length" in detail
    detail = _detail(
        client.post("/classify", json={"samples": [[1, 2, 3]] * 2000, "sampling_rate": 100, "leads": ["I", "II"]})
    )
    assert "3 values but 2 lead names" in detail
    detail = _detail(client.post("/classify", json={"samples": [1.0] * 2000, "sampling_rate": -5, "leads": ["II"]}))
    assert "sampling_rate" in detail
    detail = _detail(client.post("/classify", json={"samples": [1.0, None], "sampling_rate": 100, "leads": ["II"]}))
    assert "samples" in detail


def test_recording_without_the_leads_of_any_model(client):
    wave = np.sin(np.linspace(0, 200, 5000))
    body = {"samples": np.column_stack([wave, wave]).tolist(), "sampling_rate": 500, "leads": ["I", "V1"]}
    detail = _detail(client.post("/classify", json=body))
    assert "no model applies" in detail and "rhythm-1lead needs II" in detail


def test_noisy_recording_is_answered_unreadable(client):
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(300 * 10)  # white noise: most power outside 0.5-40 Hz
    response = client.post("/classify", json={"samples": noise.tolist(), "sampling_rate": 300, "leads": ["II"]})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["recording"]["quality"]["usable"] is False
    assert answer["verdict"]["label"] == "unreadable" and "quality check failed" in answer["verdict"]["rule"]
    assert answer["verdict"]["probability"] is None  # decided by rule: no probability stands behind it


# --- Health, readiness, metrics ----------------------------------------------------------------------------------


def test_healthz_reports_the_providers_each_session_uses(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok"
    assert health["providers"] == {"normal-12lead": ["CPUExecutionProvider"], "rhythm-1lead": ["CPUExecutionProvider"]}
    assert {m["name"]: m["version"] for m in health["models"]} == {"normal-12lead": 1, "rhythm-1lead": 1}


def test_readyz_and_metrics(client, wellnest_sample):
    assert client.get("/readyz").json() == {"ready": True, "problems": [], "revision": "normal-12lead:1;rhythm-1lead:1"}
    client.post("/classify", files={"file": ("x.raw", wellnest_sample.read_bytes())})
    metrics = client.get("/metrics").text
    assert 'ecg_inference_requests_total{status="200"}' in metrics
    assert "ecg_inference_batch_rows_bucket" in metrics and "ecg_inference_models_loaded 2.0" in metrics


def test_wellnest_written_back_reads_the_same(client, wellnest_sample, tiny_models):
    """A recording re-encoded by the project's own Wellnest writer classifies like the original."""
    record = read_ecg(wellnest_sample)
    answer = client.post("/classify", files={"file": ("copy.raw", write_wellnest(record))}).json()
    assert_same_probabilities(answer, in_process_answer(read_ecg(write_wellnest(record)), tiny_models))
