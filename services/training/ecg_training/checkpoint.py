"""Checkpoints: what a training job needs to go on from its last completed epoch on another worker.

After every epoch the trainer hands the runner a :class:`Checkpoint` (the model's weights, the optimizer's state, the
validation monitor's best-so-far, the epochs' progress and the crop generator's state); :class:`CheckpointStore`
keeps the latest one per job in the artifact store (blob storage), which every worker on every machine reaches. A
new attempt of the job loads it and resumes; the runner deletes it once the job is finished.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecg_shared.artifacts import ArtifactNotFound, ArtifactStore
from ecg_shared.jobs.training import EpochProgress

log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    epoch: int  # epochs completed
    weights: list[np.ndarray]
    optimizer: list[np.ndarray]  # optimizer.variables: the step count and the moments
    best_score: float
    best_epoch: int
    best_weights: list[np.ndarray] | None
    history: list[EpochProgress]
    crops: dict[str, Any]  # RandomCrops.state(): its generator and the next epoch's order
    fingerprint: str  # of the training data: a checkpoint of other data is not resumed
    member: int = 0  # the network of an ensemble being trained
    finished: list[list[np.ndarray]] = field(default_factory=list)  # the earlier members' best weights

    def to_bytes(self) -> bytes:
        arrays = {f"w{i}": w for i, w in enumerate(self.weights)}
        arrays |= {f"o{i}": v for i, v in enumerate(self.optimizer)}
        arrays |= {f"b{i}": w for i, w in enumerate(self.best_weights or [])}
        arrays |= {f"f{m}_{i}": w for m, weights in enumerate(self.finished) for i, w in enumerate(weights)}
        meta = {
            "epoch": self.epoch,
            "counts": [len(self.weights), len(self.optimizer), len(self.best_weights or [])],
            "has_best": self.best_weights is not None,
            "best_score": self.best_score if np.isfinite(self.best_score) else None,
            "best_epoch": self.best_epoch,
            "history": [p.model_dump() for p in self.history],
            "crops": self.crops,
            "fingerprint": self.fingerprint,
            "member": self.member,
            "finished": [len(weights) for weights in self.finished],
        }
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            meta = json.loads(arrays["meta"].tobytes())
            n_weights, n_optimizer, n_best = meta["counts"]
            return cls(
                epoch=meta["epoch"],
                weights=[arrays[f"w{i}"] for i in range(n_weights)],
                optimizer=[arrays[f"o{i}"] for i in range(n_optimizer)],
                best_score=-np.inf if meta["best_score"] is None else meta["best_score"],
                best_epoch=meta["best_epoch"],
                best_weights=[arrays[f"b{i}"] for i in range(n_best)] if meta["has_best"] else None,
                history=[EpochProgress(**p) for p in meta["history"]],
                crops=meta["crops"],
                fingerprint=meta["fingerprint"],
                member=meta.get("member", 0),
                finished=[[arrays[f"f{m}_{i}"] for i in range(n)] for m, n in enumerate(meta.get("finished", []))],
            )


class CheckpointStore:
    """The latest checkpoint of each job, as the blob ``checkpoints/training-job-<id>.npz`` of the artifact store."""

    def __init__(self, store: ArtifactStore | None = None) -> None:
        self.store = store or ArtifactStore()

    def _blob(self, job_id: int) -> str:
        return f"checkpoints/training-job-{job_id}.npz"

    def uri(self, job_id: int) -> str:
        return f"azure://{self.store.container}/{self._blob(job_id)}"

    def save(self, job_id: int, checkpoint: Checkpoint) -> None:
        self.store.put(self._blob(job_id), checkpoint.to_bytes())

    def load(self, job_id: int) -> Checkpoint | None:
        try:
            return Checkpoint.from_bytes(self.store.get(self.uri(job_id)))
        except ArtifactNotFound:
            return None

    def delete(self, job_id: int) -> None:
        self.store.delete(self.uri(job_id))
