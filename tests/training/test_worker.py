"""A real Celery training worker on real Redis, Postgres and Azurite runs short jobs on a real PTB-XL slice."""

from __future__ import annotations

import re
import subprocess
import time

import numpy as np
import onnxruntime as ort
import pytest
from sqlalchemy import select

from ecg_shared.artifacts import ArtifactStore
from ecg_shared.db import session_scope
from ecg_shared.db.models import ModelVersion, Recording
from ecg_shared.jobs.training import cancel_training_job, get_training_job, training_job_view
from ecg_shared.model_metadata import ModelMetadata
from ecg_shared.preprocessing import prepare
from ecg_shared.registry import get_version
from tests.training.conftest import ECG, unique_name

pytestmark = pytest.mark.slow

TWELVE_LEADS = "I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6"
SMALL_JOB = [
    "--family",
    "cnn",
    "--normal",
    "Normal",
    "--classes",
    "Normal,Abnormal",
    "--leads",
    TWELVE_LEADS,
    "--window-s",
    "5",
    "--sampling-rate",
    "50",
    "--batch-size",
    "16",
    "--seed",
    "1",
]


def enqueue(env: dict[str, str], *args: str) -> int:
    result = subprocess.run([ECG, "train", "--queue", *args], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    match = re.search(r"training job (\d+) queued", result.stdout)
    assert match, result.stdout
    return int(match.group(1))


def wait_for(job_id: int, done, worker, timeout: float = 120.0, seen: list | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope() as session:
            view = training_job_view(get_training_job(session, job_id))
        if seen is not None and (not seen or seen[-1] != (view.status, view.epoch)):
            seen.append((view.status, view.epoch))
        if done(view):
            return view
        assert worker.alive(), f"worker died:\n{worker.log()[-3000:]}"
        time.sleep(0.2)
    log = worker.log()[-3000:]
    raise AssertionError(f"job {job_id} still {view.status} after {timeout} s\n--- worker log ---\n{log}")


def test_job_runs_queued_to_succeeded_and_registers_a_verified_onnx_model(training_worker, training_env, ptbxl_slice):
    name = unique_name("ptbxl-cnn")
    job_id = enqueue(training_env, "-d", ptbxl_slice, "--name", name, "--epochs", "2", *SMALL_JOB)
    seen: list = []
    view = wait_for(job_id, lambda v: v.status in ("succeeded", "failed", "cancelled"), training_worker, seen=seen)

    assert view.status == "succeeded", view.error
    statuses = [status for status, _ in seen]
    assert statuses[0] in ("queued", "running") and "running" in statuses
    assert [p.epoch for p in view.progress] == [1, 2]
    assert all(np.isfinite(p.loss) and "auc_abnormal" in p.validation for p in view.progress)
    assert view.worker_hostname and view.attempts == 1 and view.finished_at >= view.started_at

    with session_scope() as session:
        version = get_version(session, name, view.model_version)
        assert version.stage == "candidate" and version.training_job_id == job_id
        metrics = version.metrics
        assert metrics["parity_max_abs_diff"] < 1e-4
        test = metrics["test"]
        assert set(test["per_class"]) == {"Normal", "Abnormal"}
        assert sum(map(sum, test["confusion_matrix"]["matrix"])) == test["n"] > 0
        # the validation split's p_abnormal distribution, the drift reference (ecg_shared.drift)
        histogram = metrics["validation"]["p_abnormal_histogram"]
        assert len(histogram) == 10 and sum(histogram) == version.model_card["data"]["recordings"]["validation"]
        assert version.model_card["data"]["dataset"] == ptbxl_slice
        assert sum(version.model_card["data"]["recordings"].values()) == 60
        onnx_bytes = ArtifactStore().get(version.artifact_uri)
        record = session.scalars(select(Recording).where(Recording.dataset == ptbxl_slice).limit(1)).one().to_record()

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    metadata = ModelMetadata.from_onnx_props(session.get_modelmeta().custom_metadata_map)
    assert (metadata.name, metadata.classes, metadata.normal_classes) == (name, ["Normal", "Abnormal"], ["Normal"])
    assert metadata.training_job_id == job_id and len(metadata.dataset_fingerprint) == 64
    assert metadata.preprocessing.window_samples == 250 and len(metadata.preprocessing.leads) == 12
    assert [i.name for i in session.get_inputs()] == ["ecg"] and [o.name for o in session.get_outputs()] == [
        "probabilities"
    ]
    windows = prepare(record, metadata.preprocessing)
    probabilities = session.run(["probabilities"], {"ecg": windows})[0]
    assert probabilities.shape == (2, 2) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_running_job_is_cancelled_and_registers_nothing(training_worker, training_env, ptbxl_slice):
    name = unique_name("ptbxl-cancel")
    job_id = enqueue(training_env, "-d", ptbxl_slice, "--name", name, "--epochs", "400", *SMALL_JOB)
    wait_for(job_id, lambda v: v.status == "running" and v.epoch >= 1, training_worker)
    with session_scope() as session:
        assert cancel_training_job(session, job_id).status == "running"  # asked to stop; the worker stops it
    view = wait_for(job_id, lambda v: v.status != "running", training_worker, timeout=30)
    assert view.status == "cancelled" and view.epoch < 400
    with session_scope() as session:
        assert session.scalars(select(ModelVersion).where(ModelVersion.name == name)).all() == []


def test_job_on_an_empty_dataset_fails_with_the_reason(training_worker, training_env, ptbxl_slice):
    job_id = enqueue(training_env, "-d", "no-such-dataset", "--epochs", "1", *SMALL_JOB)
    view = wait_for(job_id, lambda v: v.status in ("succeeded", "failed"), training_worker)
    assert view.status == "failed"
    assert "no-such-dataset" in view.error and "no labelled recordings" in view.error
