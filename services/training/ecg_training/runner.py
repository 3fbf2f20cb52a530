"""``run_training_job(job_id)``: the whole life of one training job. The Celery task and ``ecg train`` call it.

Claim the job (safe against redelivery), keep a heartbeat (which also picks up cancellation), load and split the
data, train, evaluate, export and check parity, then register the version and mark the job succeeded in ONE
transaction, so a crash at any point leaves no half-registered model. With ``auto_promote`` the committed version
then goes through the promotion gate (the inference service scores it and the active version on the same evaluation
data) and is promoted only if it scores at least as well; a crash before that leaves it a candidate.
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
)
from ecg_shared.promotion import ask_gate, unopposed
from ecg_shared.registry import active_versions, promote, register_version
from ecg_shared.settings import get_settings
from ecg_training.data import TrainingDataError, load_training_data
from ecg_training.export import ParityError
from ecg_training.trainer import TrainedModel, TrainingCancelled, TrainingHooks, train_and_export

log = logging.getLogger(__name__)


class _Heartbeat(threading.Thread):
    """Refreshes the job's heartbeat and sets ``cancelled`` when cancellation is requested."""

    def __init__(self, job_id: int, attempt: int, interval_s: float) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.job_id, self.attempt, self.interval_s = job_id, attempt, interval_s
        self.cancelled = threading.Event()
        self._stop = threading.Event()

    def beat(self) -> None:
        try:
            with session_scope() as session:
                if heartbeat_training_job(session, self.job_id, self.attempt):
                    self.cancelled.set()
        except Exception:  # a database hiccup must not kill the training; the next beat retries
            log.warning("heartbeat of training job %s failed", self.job_id, exc_info=True)

    def run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat()

    def stop(self) -> None:
        self._stop.set()


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

    def epoch_done(progress: EpochProgress) -> None:
        with session_scope() as session:
            record_epoch(session, job_id, attempt, progress)
        if on_epoch:
            on_epoch(progress)

    try:
        with session_scope() as session:
            data = load_training_data(session, request)
        hooks = TrainingHooks(on_epoch=epoch_done, on_batch=on_batch, cancelled=heartbeat.cancelled)
        trained = train_and_export(data, request, hooks, job_id=job_id)
        heartbeat.beat()
        if heartbeat.cancelled.is_set():
            raise TrainingCancelled("cancelled before registration")
        name, version, promoted = _register(job_id, attempt, trained, request)
        if request.auto_promote and not promoted:
            promoted = _gate_and_promote(job_id, name, version, request.promotion_evaluation)
        log.info("training job %s succeeded: %s v%s%s", job_id, name, version, " (promoted)" if promoted else "")
        return "succeeded"
    except TrainingCancelled as exc:
        _finish(job_id, attempt, "cancelled", str(exc))
        return "cancelled"
    except KeyboardInterrupt:  # Ctrl-C on a foreground `ecg train`: the job must not linger as running
        _finish(job_id, attempt, "cancelled", "interrupted")
        raise
    except (TrainingDataError, ParityError) as exc:
        _finish(job_id, attempt, "failed", f"{type(exc).__name__}: {exc}")
        return "failed"
    except Exception as exc:
        log.error("training job %s failed:\n%s", job_id, traceback.format_exc())
        _finish(job_id, attempt, "failed", f"{type(exc).__name__}: {exc}")
        return "failed"
    finally:
        heartbeat.stop()


def _finish(job_id: int, attempt: int, status: str, error: str) -> None:
    log.info("training job %s %s: %s", job_id, status, error)
    with session_scope() as session:
        finish_training_job(session, job_id, attempt, status, error)
