"""Per-request resource bounds: archives that expand beyond what an ECG needs are refused before inflating, long
recordings go without an explanation (and the answer says so) and through the long-recordings lane, and a short
request's onnxruntime call goes before the slices of a long one."""

from __future__ import annotations

import asyncio
import io
import zipfile

import httpx
import numpy as np
import pytest

from ecg_inference.batcher import MicroBatcher
from ecg_inference.classify import ClassificationError, classify_prepared, prepare_recording, read_upload
from ecg_inference.models import ModelSet, load_model
from ecg_shared.formats import read_ecg, zip_wfdb_record
from ecg_shared.settings import get_settings
from tests.inference.conftest import start_inference
from tests.inference.onnx_models import rhythm_metadata, tiny_model, twelve_lead_metadata
from tests.inference.test_service import assert_same_probabilities, in_process_answer

BOMB_BYTES = 70 * 1024 * 1024  # over the 64 MiB default of ECG_MAX_UNZIPPED_BYTES


@pytest.fixture(scope="module")
def models() -> ModelSet:
    loaded = {m.name: load_model(tiny_model(m, seed=2), version=1) for m in (rhythm_metadata(), twelve_lead_metadata())}
    return ModelSet(loaded, "test")


@pytest.fixture
def setting(monkeypatch):
    def apply(**values) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"ECG_{key}", str(value))
        get_settings.cache_clear()

    yield apply
    get_settings.cache_clear()


def wfdb_zip_bomb(data_dir) -> bytes:
    """A real PTB-XL header beside a signal file of 70 MiB of zeros: about 70 KB zipped."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("00003_lr.hea", (data_dir / "ptbxl" / "00003_lr.hea").read_bytes())
        archive.writestr("00003_lr.dat", bytes(BOMB_BYTES))
    return buffer.getvalue()


def test_a_zip_bomb_is_refused_by_the_service_before_it_expands(client, data_dir):
    bomb = wfdb_zip_bomb(data_dir)
    assert len(bomb) < 1024 * 1024
    response = client.post("/classify", files={"file": ("record.zip", bomb, "application/zip")})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert f"expands to {BOMB_BYTES + len((data_dir / 'ptbxl' / '00003_lr.hea').read_bytes())} bytes" in detail
    assert "ECG_MAX_UNZIPPED_BYTES" in detail
    assert client.get("/healthz").status_code == 200


def test_an_npz_bomb_is_refused_and_a_real_zip_still_reads(data_dir):
    buffer = io.BytesIO()
    np.savez_compressed(buffer, signal=np.zeros((BOMB_BYTES // 4, 1), np.float32), fs=np.array(300.0))
    refused = r"the \.npz archive expands to \d+ bytes.*ECG_MAX_UNZIPPED_BYTES"
    with pytest.raises(ClassificationError, match=refused) as caught:
        read_upload(buffer.getvalue(), "bomb.npz")
    assert caught.value.status == 422
    record = read_upload(zip_wfdb_record(data_dir / "ptbxl" / "00003_lr.hea"), "record.zip")
    assert record.n_leads == 12


def test_a_recording_longer_than_the_explanation_bound_is_answered_without_one_and_says_why(models, data_dir, setting):
    setting(EXPLAIN_MAX_DURATION_S=20)
    long = read_ecg(data_dir / "cinc2017" / "A00001.hea")
    short = read_ecg(data_dir / "ptbxl" / "00003_lr.hea")
    assert long.duration_s > 20 > short.duration_s
    answer = classify_prepared([prepare_recording(long, models, explain=True)], [0.0])[0]
    assert answer.explanation is None and answer.models
    assert f"the recording lasts {long.duration_s:.0f} s" in answer.explanation_note
    assert "up to 20 s (setting ECG_EXPLAIN_MAX_DURATION_S)" in answer.explanation_note
    explained = classify_prepared([prepare_recording(short, models, explain=True)], [0.0])[0]
    assert explained.explanation and explained.explanation_note is None
    unasked = classify_prepared([prepare_recording(long, models, explain=False)], [0.0])[0]
    assert unasked.explanation is None and unasked.explanation_note is None


def test_a_short_requests_call_goes_before_the_slices_of_a_long_one(models):
    model = models.models["normal-12lead"]
    rng = np.random.default_rng(3)
    long = rng.standard_normal((40, 1000, 12)).astype(np.float32)  # five slices of 8
    short = rng.standard_normal((1, 1000, 12)).astype(np.float32)
    calls: list[int] = []
    original = model.predict

    def counting_predict(inputs):
        calls.append(len(inputs))
        return original(inputs)

    async def main():
        batcher = MicroBatcher(wait_ms=0, max_size=8)
        finished: list[str] = []
        try:
            long_future = batcher.submit(model, long)
            short_future = batcher.submit(model, short)
            long_future.add_done_callback(lambda _: finished.append("long"))
            short_future.add_done_callback(lambda _: finished.append("short"))
            return await long_future, await short_future, finished
        finally:
            batcher.close()

    model.predict = counting_predict
    try:
        long_out, short_out, finished = asyncio.run(main())
    finally:
        del model.predict
    assert finished == ["short", "long"]
    assert calls[:2] == [8, 1]  # the short request waited for one slice, not for the long request
    assert sum(calls) == 41 and max(calls) <= 8
    np.testing.assert_allclose(long_out, original(long), atol=1e-6)
    np.testing.assert_allclose(short_out, original(short), atol=1e-6)


def test_long_recordings_through_the_long_lane_get_the_same_answer(inference_registry, azurite, data_dir, tiny_models):
    service = start_inference(
        "inference-long-lane", inference_registry, azurite.connection_string, ECG_LONG_RECORDING_S="5"
    )
    try:
        path = data_dir / "cinc2017" / "A00001"
        upload = ("A00001.zip", zip_wfdb_record(path))
        with httpx.Client(base_url=service.url, timeout=60) as http:
            answer = http.post("/classify", files={"file": upload}, params={"explain": "true"})
        assert answer.status_code == 200, answer.text
        expected = in_process_answer(read_ecg(path.with_suffix(".hea")), tiny_models)
        assert_same_probabilities(answer.json(), expected)
        assert answer.json()["explanation"] is not None
    finally:
        service.stop()
