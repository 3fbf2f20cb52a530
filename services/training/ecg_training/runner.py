"""``run_training_job(job_id)``: the whole life of one training job. The Celery task and ``ecg train`` call it.

Claim the job (safe against redelivery), keep a heartbeat (which also picks up cancellation), load and split the
data, train, evaluate, export and check parity, then register the version and mark the job succeeded in ONE
transaction, so a crash at any point leaves no half-registered model.
"""

from __future__ import annotations

import logging
import socket
import threading
import traceback
from collections.abc import Callable

from ecg_shared.db import session_scope
from ecg_shared.db.models import ModelVersion
from ecg_shared.jobs.training import (
    EpochProgress,
    TrainingJobRequest,
    claim_training_job,
    finish_training_job,
    heartbeat_training_job,
    lock_running_attempt,
    record_epoch,
)
from ecg_shared.promotion import GateResult
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


def _register(job_id: int, attempt: int, trained: TrainedModel, gate: GateResult | None) -> tuple[str, int, bool]:
    """Register the version and finish the job in one transaction; returns (name, version, promoted).

    With a ``gate`` (auto_promote), the version is promoted when the gate passed against the version that is still
    active now (a promotion meanwhile voids the comparison)."""
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
        promoted, promotion = False, None
        if gate is not None:
            if gate.candidate is not None:
                gate.candidate.version = row.version
            compared = gate.active.version if gate.active is not None else None
            current = next((v.version for v in active_versions(session) if v.name == row.name), None)
            promoted = gate.passed and (compared == current or (gate.active is None and current is None))
            why = (
                gate.reason if promoted or not gate.passed else f"{gate.reason}; but v{current} was promoted meanwhile"
            )
            promotion = {**gate.model_dump(), "reason": why}
        if promoted:
            promote(session, row.name, row.version)
        finish_training_job(
            session,
            job_id,
            attempt,
            "succeeded",
            model_name=row.name,
            model_version=row.version,
            metrics={**trained.metrics, "promoted": promoted, "promotion_gate": promotion},
        )
        return row.name, row.version, promoted


def _promotion_gate(trained: TrainedModel, request: TrainingJobRequest) -> GateResult:
    """The promotion gate for a trained, not yet registered version, run in this process (``ecg_inference.gate``)."""
    from ecg_inference.gate import gate
    from ecg_inference.models import load_model

    candidate = load_model(trained.onnx_bytes, version=None)
    candidate.version = None
    unregistered = ModelVersion(
        name=trained.metadata.name, onnx_metadata=trained.metadata.to_dict(), model_card=trained.model_card
    )
    try:
        with session_scope() as session:
            return gate(
                session,
                trained.metadata.name,
                request.promotion_evaluation,
                candidate=candidate,
                candidate_row=unregistered,
            )
    except Exception as exc:  # e.g. the active version's file is gone: not promoted, and the job still succeeds
        log.warning("promotion gate for %s could not run: %s: %s", trained.metadata.name, type(exc).__name__, exc)
        return GateResult(
            name=trained.metadata.name,
            evaluation=request.promotion_evaluation,
            metric=None,
            n=0,
            labels={},
            skipped={},
            candidate=None,
            active=None,
            passed=False,
            reason=f"the promotion gate could not run: {type(exc).__name__}: {exc}",
        )


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
        gate = _promotion_gate(trained, request) if request.auto_promote else None
        name, version, promoted = _register(job_id, attempt, trained, gate)
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
