"""``ecg train`` in the foreground (the bundled models' path), its refusals, and auto-promotion."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import onnxruntime as ort
import pytest

from ecg_shared.model_metadata import ModelMetadata
from tests.support.ports import free_port
from tests.training.conftest import ECG, unique_name
from tests.training.test_worker import SMALL_JOB


def ecg(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ECG, *args], env=env, capture_output=True, text=True, timeout=300)


def test_invalid_options_are_refused_with_the_field_and_reason(training_env):
    result = ecg(training_env, "train", "-d", "x", "--normal", "N", "--family", "transformer", "--epochs", "0")
    assert result.returncode == 2
    assert "error: family:" in result.stderr and "error: epochs:" in result.stderr
    bad_map = ecg(training_env, "train", "-d", "x", "--normal", "N", "--map", "no-equals-sign")
    assert bad_map.returncode == 2 and "RAW=CLASS" in bad_map.stderr


@pytest.mark.slow
def test_foreground_training_writes_the_bundle_that_seed_registers(training_env, ptbxl_slice, tmp_path):
    name = unique_name("foreground")
    result = ecg(
        training_env,
        "train",
        "-d",
        ptbxl_slice,
        "--name",
        name,
        "--epochs",
        "1",
        "--auto-promote",
        *SMALL_JOB,
        "--output",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"succeeded: {name} v1" in result.stdout and "promoted" in result.stdout
    card = json.loads((tmp_path / f"{name}.card.json").read_text())
    assert card["name"] == name and card["version"] == 1 and card["metrics"]["test"]["n"] > 0
    assert card["intended_use"] and card["limitations"] and card["hyperparameters"]["epochs"] == 1
    # what it was trained on, since another processor gives another network (docs/training.md)
    hardware = card["training"]["hardware"]
    assert hardware["processor"] and hardware["cores"] >= 1 and hardware["gpus"] == []
    assert hardware["numpy_dispatch"] == np.show_config(mode="dicts")["SIMD Extensions"]["found"]
    assert {"numpy", "scipy", "scikit-learn", "tensorflow"} <= set(card["software"])
    session = ort.InferenceSession((tmp_path / f"{name}.onnx").read_bytes(), providers=["CPUExecutionProvider"])
    assert ModelMetadata.from_onnx_props(session.get_modelmeta().custom_metadata_map).name == name
    # the file is the registered version's own file: seeding it again registers nothing new
    seeded = ecg(training_env, "models", "seed", "--dir", str(tmp_path))
    assert seeded.returncode == 0 and f"{name} v1: already registered" in seeded.stdout


def test_a_fused_ensemble_job_exports_what_the_service_then_computes(training_env, ptbxl_slice, tmp_path, data_dir):
    """Beat and morphology features fused with two networks: one ONNX file with two inputs, its card's evaluation
    block, and the probabilities the service path gives equal to the file's own graph, calibrated."""
    import time

    import numpy as np

    from ecg_inference.classify import classify_prepared, prepare_recording
    from ecg_inference.models import ModelSet, load_model
    from ecg_shared.beats import recording_features
    from ecg_shared.calibration import calibrate
    from ecg_shared.formats import read_ecg
    from ecg_shared.preprocessing import clean, window_batch

    name = unique_name("fused")
    args = ["train", "-d", ptbxl_slice, "--name", name, "--epochs", "1", *SMALL_JOB]
    result = ecg(training_env, *args, "--features", "beats+morphology", "--ensemble", "2", "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    card = json.loads((tmp_path / f"{name}.card.json").read_text())
    assert card["hyperparameters"]["ensemble"] == 2 and len(card["history"]) == 2
    assert card["fusion"]["network_weight"] in [round(w / 10, 1) for w in range(11)]
    evaluation = card["evaluation"]
    assert {"figures", "confusion_matrix", "calibration", "subgroups", "operating_point"} <= set(evaluation)
    assert evaluation["calibration"]["p_abnormal"]["bins"] and card["export"]["parity_max_abs_diff"] < 1e-4

    onnx_bytes = (tmp_path / f"{name}.onnx").read_bytes()
    model = load_model(onnx_bytes)
    meta = model.metadata
    assert meta.calibration["method"] == "temperature" and 0 < meta.abnormal_prevalence < 1
    # what explanations set each measurement to (at this job's 50 Hz few beats are found, so no range is asserted)
    assert len(meta.feature_reference) == len(meta.feature_spec.names)
    assert np.isfinite(meta.feature_reference).all()
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    assert sorted(i.name for i in session.get_inputs()) == ["ecg", "features"]
    record = read_ecg(data_dir / "ptbxl" / "00101_lr.hea")
    answer = classify_prepared(
        [prepare_recording(record, ModelSet({name: model}), explain=False)], [time.perf_counter()]
    )
    cleaned = clean(record, meta.preprocessing)
    windows = window_batch(cleaned, meta.preprocessing)
    features = recording_features(
        cleaned, meta.preprocessing.sampling_rate, list(meta.preprocessing.leads), meta.feature_spec
    )
    raw = session.run(["probabilities"], {"ecg": windows, "features": np.repeat(features[None], len(windows), 0)})[0]
    expected = calibrate(raw.mean(axis=0, keepdims=True), meta.calibration)[0]
    assert list(answer[0].models[0].probabilities.values()) == pytest.approx(expected.tolist(), abs=1e-6)
    explained = classify_prepared(
        [prepare_recording(record, ModelSet({name: model}), explain=True)], [time.perf_counter()]
    )[0]
    [explanation] = explained.explanation
    assert explanation.segments
    if meta.network_weight < 1:  # the features count: each one explained
        assert len(explanation.measurements) == len(meta.feature_spec.names)
    else:  # the blend chose the network alone: no measurement moves the answer, and none is listed
        assert explanation.measurements == [] and model.features_part is None


def test_foreground_job_on_missing_data_exits_1_with_the_reason(training_env, database_url):
    result = ecg(training_env, "train", "-d", "nothing-here", "--epochs", "1", *SMALL_JOB)
    assert result.returncode == 1
    assert "failed: TrainingDataError: dataset 'nothing-here' has no labelled recordings" in result.stderr


def test_queueing_without_a_broker_fails_and_leaves_no_queued_job(training_env, database_url):
    from ecg_shared.db import session_scope
    from ecg_shared.jobs.training import list_training_jobs

    env = {**training_env, "ECG_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    result = ecg(env, "train", "--queue", "-d", "x", "--normal", "Normal", "--epochs", "1")
    assert result.returncode == 1 and "could not be queued" in result.stderr
    with session_scope() as session:
        newest = list_training_jobs(session, limit=1)[0]
        assert newest.status == "cancelled"


def test_training_jobs_commands_list_show_and_cancel(db_session):
    import typer
    from typer.testing import CliRunner

    from ecg_shared.jobs.training import TrainingJobRequest, create_training_job
    from ecg_training.cli import register

    app = typer.Typer()
    register(app)
    name = unique_name("jobs-cli")
    job = create_training_job(db_session, TrainingJobRequest(dataset="d", name=name, normal_classes=["N"], epochs=7))
    db_session.commit()
    runner = CliRunner()
    listed = runner.invoke(app, ["training-jobs", "list"])
    assert listed.exit_code == 0 and f"{job.id:>6}  queued" in listed.output and "epoch 0/7" in listed.output
    shown = json.loads(runner.invoke(app, ["training-jobs", "show", str(job.id)]).output)
    assert (shown["id"], shown["status"], shown["model_name"], shown["epochs"]) == (job.id, "queued", name, 7)
    cancelled = runner.invoke(app, ["training-jobs", "cancel", str(job.id)])
    assert cancelled.exit_code == 0 and f"training job {job.id} cancelled" in cancelled.output
    again = runner.invoke(app, ["training-jobs", "cancel", str(job.id)])
    assert again.exit_code == 1 and "already cancelled" in again.output
    missing = runner.invoke(app, ["training-jobs", "show", "999999999"])
    assert missing.exit_code == 1 and "not found" in missing.output


@pytest.mark.slow
def test_ctrl_c_on_a_foreground_job_cancels_it(training_env, ptbxl_slice):
    import signal
    import time

    from ecg_shared.db import session_scope
    from ecg_shared.jobs.training import list_training_jobs

    name = unique_name("interrupted")
    process = subprocess.Popen(
        [ECG, "train", "-d", ptbxl_slice, "--name", name, "--epochs", "400", *SMALL_JOB],
        env=training_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        job = None
        while time.monotonic() < deadline and not (job and job.status == "running" and job.epoch >= 1):
            assert process.poll() is None, process.communicate()[1][-3000:]
            time.sleep(0.3)
            with session_scope() as session:
                job = next((j for j in list_training_jobs(session, 20) if j.model_name == name), None)
        assert job is not None and job.status == "running", "the job never got going"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 1 and "cancelling training job" in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with session_scope() as session:
        job = next(j for j in list_training_jobs(session, 20) if j.model_name == name)
        assert (job.status, job.error) == ("cancelled", "cancelled during training")
