"""Training job requests and state changes on the real database (no TensorFlow)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from ecg_shared.jobs.training import (
    EpochProgress,
    TrainingJobNotFound,
    TrainingJobRequest,
    TrainingJobStateError,
    cancel_training_job,
    claim_training_job,
    create_training_job,
    finish_training_job,
    get_training_job,
    heartbeat_training_job,
    list_training_jobs,
    lock_running_attempt,
    record_epoch,
    requeue_stale_training_jobs,
    resume_training_job,
    training_job_view,
)


def request(**fields) -> TrainingJobRequest:
    return TrainingJobRequest(**{"dataset": "cinc2017", "normal_classes": ["N"], **fields})


def test_request_defaults_and_derived_name():
    r = request(family="inception", leads=["ii", "AVR"])
    assert (r.epochs, r.batch_size, r.sampling_rate, r.window_s, r.seed) == (10, 32, 100.0, 10.0, 0)
    assert r.model_name == "cinc2017-inception" and r.leads == ["II", "aVR"] and r.window_samples == 1000


def test_pretraining_request_keeps_the_jobs_preprocessing_with_its_own_data():
    r = request(
        dataset="ptbxl",
        family="leadwise",
        leads=["I", "II", "V1"],
        sampling_rate=100,
        window_s=10,
        normalisation="minmax",
        seed=2,
        split_seed=7,
        normal_classes=["Normal"],
        pretrain={"dataset": "cinc2017", "classes": ["N", "A", "O", "~"], "normal_classes": ["N"], "epochs": 4},
    )
    pre = r.pretraining_request()
    assert (pre.dataset, pre.leads, pre.classes, pre.normal_classes, pre.epochs) == (
        "cinc2017",
        ["II"],
        ["N", "A", "O", "~"],
        ["N"],
        4,
    )
    assert (pre.sampling_rate, pre.window_s, pre.normalisation, pre.seed, pre.family) == (
        100,
        10,
        "minmax",
        2,
        "leadwise",
    )
    assert pre.pretrain is None and pre.features == "none" and pre.split_seed == 7


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"family": "transformer"}, "family"),
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"normal_classes": []}, "normal_classes"),
        ({"window_s": 0.2}, "need >= 64"),
        ({"leads": ["II", "ii"]}, "leads repeat"),
        ({"classes": ["N", "A"], "normal_classes": ["X"]}, "not among classes"),
        ({"unreadable_classes": ["N"]}, "both normal and unreadable"),
        ({"highpass_hz": 50.0, "lowpass_hz": 40.0}, "highpass_hz must be below"),
        ({"name": "Bad Name!"}, "name"),
        ({"validation_fraction": 0.4, "test_fraction": 0.4}, "at least 30%"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"pretrain": {"dataset": "cinc2017", "normal_classes": ["N"]}}, "pretrain needs the leadwise family"),
        ({"family": "leadwise", "pretrain": {"dataset": "cinc2017", "normal_classes": []}}, "normal_classes"),
    ],
)
def test_invalid_requests_name_the_problem(fields, message):
    with pytest.raises(ValidationError) as error:
        request(**fields)
    assert message in str(error.value)


def test_create_list_view_and_cancel_a_queued_job(db_session):
    job = create_training_job(db_session, request(epochs=3))
    db_session.commit()
    assert job.status == "queued" and job.model_name == "cinc2017-resnet"
    assert job.id in [j.id for j in list_training_jobs(db_session)]
    view = training_job_view(get_training_job(db_session, job.id))
    assert (view.status, view.epochs, view.dataset, view.family, view.progress) == (
        "queued",
        3,
        "cinc2017",
        "resnet",
        [],
    )
    cancelled = cancel_training_job(db_session, job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    with pytest.raises(TrainingJobStateError, match="already cancelled"):
        cancel_training_job(db_session, job.id)
    with pytest.raises(TrainingJobNotFound):
        cancel_training_job(db_session, 10**12)
    assert get_training_job(db_session, 10**12) is None
    # a redelivered task of a cancelled job does nothing
    assert claim_training_job(db_session, job.id, "host", 60, 2) is None


def test_running_job_progress_heartbeat_and_cancel_request(db_session):
    job = create_training_job(db_session, request())
    claimed = claim_training_job(db_session, job.id, "worker-a", 60, 2)
    assert (claimed.status, claimed.attempts, claimed.worker_hostname) == ("running", 1, "worker-a")
    record_epoch(db_session, job.id, 1, EpochProgress(epoch=1, loss=0.9, seconds=2.0, validation={"auc": 0.7}))
    assert heartbeat_training_job(db_session, job.id, 1) == "running"
    # a second delivery while the first worker is alive (fresh heartbeat) is skipped
    assert claim_training_job(db_session, job.id, "worker-b", 60, 2) is None
    assert cancel_training_job(db_session, job.id).status == "running"
    assert heartbeat_training_job(db_session, job.id, 1) == "cancel"  # the worker learns of the cancellation
    finish_training_job(db_session, job.id, 1, "cancelled", "cancelled during training")
    view = training_job_view(get_training_job(db_session, job.id))
    assert view.status == "cancelled" and view.progress[0].validation == {"auc": 0.7} and view.epoch == 1


def test_redelivered_job_with_a_dead_worker_is_taken_over_then_given_up(db_session):
    job = create_training_job(db_session, request())
    claim_training_job(db_session, job.id, "worker-a", 60, 2)
    job.heartbeat_at = datetime.now(UTC) - timedelta(minutes=5)
    db_session.flush()
    taken = claim_training_job(db_session, job.id, "worker-b", 60, 2)
    assert (taken.status, taken.attempts, taken.worker_hostname) == ("running", 2, "worker-b")
    # the first worker, if it comes back, no longer owns the job: it can neither register nor finish it
    with pytest.raises(TrainingJobStateError, match="no longer owns"):
        lock_running_attempt(db_session, job.id, 1)
    finish_training_job(db_session, job.id, 1, "failed", "late")
    assert get_training_job(db_session, job.id).status == "running"
    job.heartbeat_at = datetime.now(UTC) - timedelta(minutes=5)
    db_session.flush()
    assert claim_training_job(db_session, job.id, "worker-c", 60, 2) is None
    assert job.status == "failed" and "gave up after 2 attempts" in job.error


def test_jobs_that_lost_their_worker_are_queued_again_until_their_attempts_run_out(db_session):
    fresh = create_training_job(db_session, request())
    stale = create_training_job(db_session, request())
    claim_training_job(db_session, fresh.id, "alive", 60, 2)
    claim_training_job(db_session, stale.id, "gone", 60, 2)
    stale.heartbeat_at = datetime.now(UTC) - timedelta(minutes=2)
    db_session.flush()
    sent: list[int] = []
    assert requeue_stale_training_jobs(db_session, 60, 2, sent.append) == ([stale.id], [])
    assert sent == [stale.id] and stale.status == "queued" and fresh.status == "running"
    # the lost attempt, should it come back, sees that it no longer owns the job
    assert heartbeat_training_job(db_session, stale.id, 1) == "lost"
    assert not finish_training_job(db_session, stale.id, 1, "cancelled", "late")
    # attempt 2 resumes from the checkpoint's epochs
    second = claim_training_job(db_session, stale.id, "successor", 60, 2)
    assert (second.attempts, second.epoch, second.progress) == (2, 0, [])
    resume_training_job(db_session, stale.id, 2, [EpochProgress(epoch=e, loss=1.0, seconds=1.0) for e in (1, 2)])
    assert second.epoch == 2 and [p["epoch"] for p in second.progress] == [1, 2]
    # and loses its worker too: no attempts left
    second.heartbeat_at = datetime.now(UTC) - timedelta(minutes=2)
    db_session.flush()
    assert requeue_stale_training_jobs(db_session, 60, 2, sent.append) == ([], [stale.id])
    assert sent == [stale.id] and stale.status == "failed"
    assert "successor lost during attempt 2" in stale.error and "gave up after 2 attempts" in stale.error
    assert finish_training_job(db_session, fresh.id, 1, "cancelled", "test over")  # none left for a reaper
