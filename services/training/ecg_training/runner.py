"""``run_training_job(job_id)``: the whole life of one training job. The Celery task and ``ecg train`` call it.

Claim the job (safe against redelivery), keep a heartbeat (which also picks up cancellation), load and split the
data, train (from the job's checkpoint, when an earlier attempt left one; a checkpoint after every epoch), evaluate,
export and check parity, then register the version and mark the job succeeded in ONE transaction, so a crash at any
point leaves no half-registered model. With ``auto_promote`` the committed version then goes through the promotion
gate (the inference service scores it and the active version on the same evaluation data) and is promoted only if
it scores at least as well; a crash before that leaves it a candidate.
"""

from __future__ import annotations

import logging
import socket
import threading
import traceback
from collections.abc import Callable

from sqlalchemy import text

from ecg_shared.db import session_scope
from ecg_shared.jobs.training import (
    EpochProgress,
    TrainingJobRequest,
    claim_training_job,
    finish_training_job,
    heartbeat_training_job,
    lock_running_attempt,
    record_epoch,
    record_promotion,
    resume_training_job,
)
from ecg_shared.promotion import ask_gate, unopposed
from ecg_shared.registry import active_versions, promote, register_version
from ecg_shared.settings import get_settings
from ecg_training.checkpoint import Checkpoint, CheckpointStore
from ecg_training.data import TrainingDataError, load_training_data
from ecg_training.export import ParityError
from ecg_training.trainer import TrainedModel, TrainingCancelled, TrainingHooks, train_and_export

log = logging.getLogger(__name__)


class AttemptLost(Exception):
    """Our attempt no longer owns the job: it was queued again after a heartbeat gap, and another attempt has it."""


class _Heartbeat(threading.Thread):
    """Refreshes the job's heartbeat; sets ``cancelled`` when cancellation is requested or the attempt was ``lost``."""

    def __init__(self, job_id: int, attempt: int, interval_s: float) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.job_id, self.attempt, self.interval_s = job_id, attempt, interval_s
        self.cancelled = threading.Event()
        self.lost = False
        self._stopping = threading.Event()

    def beat(self) -> None:
        try:
            with session_scope() as session:
                state = heartbeat_training_job(session, self.job_id, self.attempt)
        except Exception:  # a database hiccup must not kill the training; the next beat retries
            log.warning("heartbeat of training job %s failed", self.job_id, exc_info=True)
            return
        if state == "lost":
            self.lost = True
        if state != "running":
            self.cancelled.set()

    def run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            self.beat()

    def stop(self) -> None:
        self._stopping.set()


def _register(job_id: int, attempt: int, trained: TrainedModel, request: TrainingJobRequest) -> tuple[str, int, bool]:
    """Register the version and finish the job in one transaction; returns (name, version, promoted).

    With auto_promote and no active version yet, the version is promoted here (the gate has nothing to compare
    against); otherwise :func:`_gate_and_promote` decides once the version is committed."""
    with session_scope() as session:
        job = lock_running_attempt(session, job_id, attempt)
        if job.cancel_requested:
            raise TrainingCancelled("cancelled before registration")
        row = register_version(
            session,
            trained.metadata,
            trained.onnx_bytes,
            metrics=trained.metrics,
            model_card={**trained.model_card, "version": trained.metadata.version},
        )
        gate = None
        if request.auto_promote and not any(v.name == row.name for v in active_versions(session)):
            gate = unopposed(row.name, request.promotion_evaluation)
            promote(session, row.name, row.version)
        finish_training_job(
            session,
            job_id,
            attempt,
            "succeeded",
            model_name=row.name,
            model_version=row.version,
            metrics={
                **trained.metrics,
                "promoted": gate is not None,
                "promotion_gate": gate.model_dump() if gate else None,
            },
        )
        return row.name, row.version, gate is not None


def _gate_and_promote(job_id: int, name: str, version: int, evaluation: str) -> bool:
    """auto_promote for a committed version: promote it when the gate passes against the version that is still
    active (a promotion meanwhile voids the comparison); the job's metrics record the gate either way."""
    gate = ask_gate(name, version, evaluation)
    with session_scope() as session:
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
        current = next((v.version for v in active_versions(session) if v.name == name), None)
        compared = gate.active.version if gate.active is not None else None
        promoted = gate.passed and current == compared
        if gate.passed and not promoted:
            gate.reason += f"; but v{current} was promoted meanwhile"
        if promoted:
            promote(session, name, version)
        record_promotion(session, job_id, promoted, gate.model_dump())
    log.info(
        "training job %s: %s v%s %s: %s", job_id, name, version, "promoted" if promoted else "not promoted", gate.reason
    )
    return promoted


def run_training_job(
    job_id: int,
    on_epoch: Callable[[EpochProgress], None] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> str:
    """Run job ``job_id`` to a final state and return it (or 'skipped' when it must not run here)."""
    settings = get_settings()
    hostname = socket.gethostname()
    with session_scope() as session:
        job = claim_training_job(
            session, job_id, hostname, settings.training_stale_after_s, settings.training_max_attempts
        )
        if job is None:
            log.info("training job %s not run: already finished, cancelled or running elsewhere", job_id)
            return "skipped"
        request = TrainingJobRequest.model_validate(job.request)
        attempt = job.attempts
    log.info("training job %s attempt %s on %s: %s %s", job_id, attempt, hostname, request.family, request.dataset)
    heartbeat = _Heartbeat(job_id, attempt, settings.training_heartbeat_s)
    heartbeat.start()
    checkpoints = CheckpointStore()

    def epoch_done(progress: EpochProgress) -> None:
        with session_scope() as session:
            record_epoch(session, job_id, attempt, progress)
        if on_epoch:
            on_epoch(progress)

    def save_checkpoint(checkpoint: Checkpoint) -> None:
        try:
            checkpoints.save(job_id, checkpoint)
        except Exception:  # without it a later attempt starts earlier; no reason to stop this one
            log.warning("training job %s: epoch %d checkpoint not saved", job_id, checkpoint.epoch, exc_info=True)

    data = None
    try:
        with session_scope() as session:
            data = load_training_data(session, request)
        resume_from = _checkpoint_to_resume(checkpoints, job_id, attempt, data.fingerprint)
        hooks = TrainingHooks(
            on_epoch=epoch_done,
            on_batch=on_batch,
            cancelled=heartbeat.cancelled,
            on_checkpoint=save_checkpoint,
            resume_from=resume_from,
            attempt=attempt,
        )
        trained = train_and_export(data, request, hooks, job_id=job_id)
        heartbeat.beat()
        if heartbeat.lost:
            raise AttemptLost()
        if heartbeat.cancelled.is_set():
            raise TrainingCancelled("cancelled before registration")
        name, version, promoted = _register(job_id, attempt, trained, request)
        if request.auto_promote and not promoted:
            promoted = _gate_and_promote(job_id, name, version, request.promotion_evaluation)
        log.info("training job %s succeeded: %s v%s%s", job_id, name, version, " (promoted)" if promoted else "")
        _forget_checkpoint(checkpoints, job_id)
        return "succeeded"
    except (AttemptLost, TrainingCancelled) as exc:
        if heartbeat.lost or isinstance(exc, AttemptLost):
            log.warning("training job %s: attempt %s lost the job to a newer attempt; stopped", job_id, attempt)
            return "lost"
        _finish(job_id, attempt, "cancelled", str(exc), checkpoints)
        return "cancelled"
    except KeyboardInterrupt:  # Ctrl-C on a foreground `ecg train`: the job must not linger as running
        _finish(job_id, attempt, "cancelled", "interrupted", checkpoints)
        raise
    except (TrainingDataError, ParityError) as exc:
        _finish(job_id, attempt, "failed", f"{type(exc).__name__}: {exc}", checkpoints)
        return "failed"
    except Exception as exc:
        log.error("training job %s failed:\n%s", job_id, traceback.format_exc())
        _finish(job_id, attempt, "failed", f"{type(exc).__name__}: {exc}", checkpoints)
        return "failed"
    finally:
        heartbeat.stop()
        if data is not None:
            data.close()


def _checkpoint_to_resume(checkpoints: CheckpointStore, job_id: int, attempt: int, fingerprint: str):
    """The checkpoint an earlier attempt left, if it was made on the same data; the job's progress becomes its."""
    if attempt == 1:
        return None
    try:
        checkpoint = checkpoints.load(job_id)
    except Exception:
        log.warning("training job %s: its checkpoint cannot be read; starting again", job_id, exc_info=True)
        return None
    if checkpoint is None:
        log.info("training job %s attempt %s: no checkpoint; starting from epoch 0", job_id, attempt)
        return None
    if checkpoint.fingerprint != fingerprint:
        log.warning("training job %s: the data changed since its checkpoint; starting from epoch 0", job_id)
        return None
    with session_scope() as session:
        resume_training_job(session, job_id, attempt, checkpoint.history)
    log.info("training job %s attempt %s: resuming from epoch %d (checkpoint)", job_id, attempt, checkpoint.epoch)
    return checkpoint


def _forget_checkpoint(checkpoints: CheckpointStore, job_id: int) -> None:
    try:
        checkpoints.delete(job_id)
    except Exception:
        log.warning("training job %s: could not delete its checkpoint %s", job_id, checkpoints.uri(job_id))


def _finish(job_id: int, attempt: int, status: str, error: str, checkpoints: CheckpointStore) -> None:
    log.info("training job %s %s: %s", job_id, status, error)
    with session_scope() as session:
        finished = finish_training_job(session, job_id, attempt, status, error)
    if finished:  # else another attempt owns the job, and the checkpoint
        _forget_checkpoint(checkpoints, job_id)
