"""Training data: recordings read from Postgres, cleaned once with the shared preprocessing, split by record.

Each recording is cleaned once (:func:`ecg_shared.preprocessing.clean`: lead selection, filters, resampling) and kept
in memory. Training batches are random crops of one window per recording, re-drawn every epoch and normalised by
:func:`ecg_shared.preprocessing.window_batch` exactly as inference normalises its windows. Validation and test
recordings go through :func:`window_batch` over the whole recording, as ``prepare(record, spec)`` does for inference,
and a recording's probabilities are the mean over its windows.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field

import keras
import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight
from sqlalchemy import select
from sqlalchemy.orm import Session

from ecg_shared.db.models import Recording
from ecg_shared.formats.record import EcgFormatError
from ecg_shared.jobs.training import TrainingJobRequest
from ecg_shared.preprocessing import PreprocessingSpec, clean, window_batch

log = logging.getLogger(__name__)
LOAD_CHUNK = 500


class TrainingDataError(ValueError):
    """The dataset cannot support the requested training (empty, one class, unknown classes...)."""


def preprocessing_spec(request: TrainingJobRequest) -> PreprocessingSpec:
    return PreprocessingSpec(
        sampling_rate=request.sampling_rate,
        window_samples=request.window_samples,
        leads=tuple(request.leads),
        highpass_hz=request.highpass_hz,
        lowpass_hz=request.lowpass_hz,
        notch_hz=request.notch_hz,
        normalisation=request.normalisation,
    )


@dataclass
class Split:
    """Cleaned recordings of one split: signals (n_samples, n_leads) at the spec's rate and class indices."""

    recording_ids: list[int]
    signals: list[np.ndarray]
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.signals)

    def counts(self, classes: list[str]) -> dict[str, int]:
        found = Counter(int(i) for i in self.y)
        return {name: found.get(i, 0) for i, name in enumerate(classes)}


@dataclass
class TrainingData:
    spec: PreprocessingSpec
    classes: list[str]
    train: Split
    validation: Split
    test: Split
    fingerprint: str
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count

    def summary(self) -> dict:
        return {
            "classes": self.classes,
            "recordings": {name: len(part) for name, part in self.splits().items()},
            "class_counts": {name: part.counts(self.classes) for name, part in self.splits().items()},
            "skipped": self.skipped,
            "fingerprint": self.fingerprint,
        }

    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def _select_candidates(session: Session, request: TrainingJobRequest) -> list[tuple[int, str, str]]:
    """(id, class, content hash) of every recording the request covers, before any signal is read."""
    query = select(Recording.id, Recording.label, Recording.content_sha256).where(
        Recording.dataset == request.dataset, Recording.label.is_not(None)
    )
    filters = request.filters
    if filters.labels:
        query = query.where(Recording.label.in_(filters.labels))
    if filters.min_duration_s:
        query = query.where(Recording.n_samples >= filters.min_duration_s * Recording.sampling_rate)
    rows = session.execute(query.order_by(Recording.id)).all()
    if not rows:
        raise TrainingDataError(f"dataset {request.dataset!r} has no labelled recordings matching the request")
    mapped = [(rid, request.label_mapping.get(label, label), digest) for rid, label, digest in rows]
    if request.classes is not None:
        mapped = [row for row in mapped if row[1] in request.classes]
        if not mapped:
            raise TrainingDataError(f"no recording of {request.dataset!r} has a class among {request.classes}")
    if filters.max_recordings and len(mapped) > filters.max_recordings:
        keep = np.random.default_rng(request.seed).choice(len(mapped), filters.max_recordings, replace=False)
        mapped = [mapped[i] for i in sorted(keep)]
    return mapped


def _classes(request: TrainingJobRequest, labels: list[str]) -> list[str]:
    found = sorted(set(labels))
    classes = list(request.classes) if request.classes is not None else found
    if len(found) < 2:
        raise TrainingDataError(f"dataset {request.dataset!r} has only one class ({found[0]!r}); need at least two")
    missing = sorted(set(request.normal_classes + request.unreadable_classes) - set(classes))
    if missing:
        raise TrainingDataError(f"normal/unreadable classes {missing} not found among the dataset's classes {classes}")
    if not [c for c in classes if c not in request.normal_classes and c not in request.unreadable_classes]:
        raise TrainingDataError("no abnormal class: every class is normal or unreadable")
    return classes


def _split_indices(y: np.ndarray, request: TrainingJobRequest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified (where every class has enough members), seeded train/validation/test split of record indices."""
    indices = np.arange(len(y))
    held_out = request.validation_fraction + request.test_fraction
    stratify = y if min(Counter(y.tolist()).values()) >= 4 else None
    train, rest = train_test_split(indices, test_size=held_out, random_state=request.seed, stratify=stratify)
    rest_stratify = y[rest] if stratify is not None and min(Counter(y[rest].tolist()).values()) >= 2 else None
    validation, test = train_test_split(
        rest, test_size=request.test_fraction / held_out, random_state=request.seed, stratify=rest_stratify
    )
    return np.sort(train), np.sort(validation), np.sort(test)


def load_training_data(session: Session, request: TrainingJobRequest) -> TrainingData:
    """Read, clean and split the recordings a request names. Raises :class:`TrainingDataError` with the reason."""
    spec = preprocessing_spec(request)
    candidates = _select_candidates(session, request)
    classes = _classes(request, [c for _, c, _ in candidates])
    class_index = {name: i for i, name in enumerate(classes)}
    wanted = {rid: (label, digest) for rid, label, digest in candidates}
    ids, signals, labels, skipped = [], [], [], Counter()
    candidate_ids = [rid for rid, _, _ in candidates]
    for start in range(0, len(candidate_ids), LOAD_CHUNK):
        chunk = candidate_ids[start : start + LOAD_CHUNK]
        for row in session.scalars(select(Recording).where(Recording.id.in_(chunk)).order_by(Recording.id)):
            try:
                signals.append(clean(row.to_record(), spec))
            except EcgFormatError as exc:
                skipped[str(exc)] += 1
                continue
            ids.append(row.id)
            labels.append(class_index[wanted[row.id][0]])
        session.expunge_all()
    if len(signals) < 10:
        reasons = "; ".join(f"{n} x {reason}" for reason, n in skipped.most_common(3))
        raise TrainingDataError(
            f"only {len(signals)} usable recordings in {request.dataset!r}; need at least 10"
            + (f" (skipped: {reasons})" if reasons else "")
        )
    y = np.array(labels, dtype=np.int64)
    present = sorted(set(y.tolist()))
    if len(present) < 2:
        raise TrainingDataError(f"only class {classes[present[0]]!r} is left after preprocessing; need two")
    digest = hashlib.sha256()
    for rid in ids:
        digest.update(f"{rid}:{wanted[rid][1]}:{wanted[rid][0]}\n".encode())
    train, validation, test = _split_indices(y, request)

    def part(indices: np.ndarray) -> Split:
        return Split([ids[i] for i in indices], [signals[i] for i in indices], y[indices])

    data = TrainingData(spec, classes, part(train), part(validation), part(test), digest.hexdigest(), dict(skipped))
    log.info("training data %s: %s", request.dataset, data.summary()["recordings"])
    return data


def crop_window(signal: np.ndarray, spec: PreprocessingSpec, rng: np.random.Generator) -> np.ndarray:
    """One randomly placed window of a cleaned signal, normalised (and padded) by ``window_batch``."""
    excess = signal.shape[0] - spec.window_samples
    start = int(rng.integers(0, excess + 1)) if excess > 0 else 0
    return window_batch(signal[start : start + spec.window_samples], spec)[0]


def recording_windows(split: Split, spec: PreprocessingSpec) -> tuple[np.ndarray, np.ndarray]:
    """All inference-style windows of a split and, for each, the index of its recording."""
    batches = [window_batch(signal, spec) for signal in split.signals]
    owners = np.concatenate([np.full(len(b), i) for i, b in enumerate(batches)])
    return np.concatenate(batches), owners


def mean_by_recording(window_probabilities: np.ndarray, owners: np.ndarray, n_recordings: int) -> np.ndarray:
    sums = np.zeros((n_recordings, window_probabilities.shape[1]))
    np.add.at(sums, owners, window_probabilities)
    return sums / np.bincount(owners, minlength=n_recordings)[:, None]


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """'Balanced' weights (n / (k * count)) for the classes present; 1 for any class absent from training."""
    weights = np.ones(n_classes)
    present = np.unique(y)
    weights[present] = compute_class_weight("balanced", classes=present, y=y)
    return weights


class RandomCrops(keras.utils.PyDataset):
    """Batches of (windows, one-hot labels, class weights): one fresh random crop per recording every epoch."""

    def __init__(self, split: Split, spec: PreprocessingSpec, n_classes: int, batch_size: int, seed: int) -> None:
        super().__init__()
        self.split, self.spec, self.n_classes, self.batch_size = split, spec, n_classes, batch_size
        self.rng = np.random.default_rng(seed)
        self.weights = class_weights(split.y, n_classes).astype(np.float32)
        self.order = self.rng.permutation(len(split))

    def __len__(self) -> int:
        return int(np.ceil(len(self.split) / self.batch_size))

    def __getitem__(self, index: int):
        members = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        x = np.stack([crop_window(self.split.signals[i], self.spec, self.rng) for i in members])
        y = self.split.y[members]
        return x, np.eye(self.n_classes, dtype=np.float32)[y], self.weights[y]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.split))

    def state(self) -> dict:
        """What a checkpoint keeps to draw the same crops on resuming: the generator and the next epoch's order."""
        return {"rng": self.rng.bit_generator.state, "order": self.order.tolist()}

    def restore(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order = np.asarray(state["order"], dtype=np.int64)
