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
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ecg_shared.beats import FeatureSpec, recording_features
from ecg_shared.db.models import Recording, Review
from ecg_shared.formats.record import EcgFormatError
from ecg_shared.jobs.training import TrainingJobRequest
from ecg_shared.preprocessing import PreprocessingSpec, clean, window_batch
from ecg_shared.reviews import REVIEWED_DATASET, settled_labels

log = logging.getLogger(__name__)
LOAD_CHUNK = 500


class TrainingDataError(ValueError):
    """The dataset cannot support the requested training (empty, one class, unknown classes...)."""


def feature_spec(request: TrainingJobRequest) -> FeatureSpec | None:
    """The beat features a request asks for: the rhythm of lead II (else its first lead), and with
    ``beats+morphology`` the median-beat measurements of every lead it trains on."""
    if request.features == "none":
        return None
    rhythm_lead = "II" if "II" in request.leads else request.leads[0]
    morphology = tuple(request.leads) if request.features == "beats+morphology" else ()
    return FeatureSpec(rhythm_lead, morphology)


def subgroup_info(row: Recording) -> dict:
    """What the subgroup figures split by, where the recording's metadata carries it (PTB-XL: age and sex)."""
    metadata = row.metadata_ or {}
    try:
        age = int(float(metadata.get("age")))
    except (TypeError, ValueError):
        age = None
    sex = str(metadata["sex"]).lower() if str(metadata.get("sex", "")).lower() in ("male", "female") else None
    return {"duration_s": row.n_samples / row.sampling_rate, "age": age, "sex": sex}


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
    info: list[dict] = field(default_factory=list)  # per recording: duration_s, age, sex (for subgroup figures)
    features: np.ndarray | None = None  # (n, n_features) recording_features, when the model takes them

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
    sources: dict[str, dict[str, int]] = field(default_factory=dict)  # dataset -> recordings, labelled by review
    # Review-labelled recordings of the train and validation splits: the promotion gate leaves them out of its
    # evaluation of this model (a model is not scored on what it was fitted to).
    fit_on_reviewed: list[int] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "classes": self.classes,
            "sources": self.sources,
            "fit_on_reviewed_recordings": self.fit_on_reviewed,
            "recordings": {name: len(part) for name, part in self.splits().items()},
            "class_counts": {name: part.counts(self.classes) for name, part in self.splits().items()},
            "skipped": self.skipped,
            "fingerprint": self.fingerprint,
        }

    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def _select_candidates(session: Session, request: TrainingJobRequest) -> list[tuple[int, str, str]]:
    """(id, class, content hash) of every recording the request covers, before any signal is read.

    A recording's label is its settled review label (every reviewer gave it) where it has one, else the file's.
    Recordings of the reviewed dataset count only once reviewed; disputed ones wait until their reviewers agree."""
    settled = settled_labels().subquery()
    label = func.coalesce(settled.c.label, Recording.label)
    disputed = Recording.id.in_(select(Review.recording_id)) & settled.c.label.is_(None)
    query = (
        select(Recording.id, label, Recording.content_sha256)
        .outerjoin(settled, settled.c.recording_id == Recording.id)
        .where(Recording.dataset.in_(request.datasets), label.is_not(None), ~disputed)
        .where((Recording.dataset != REVIEWED_DATASET) | settled.c.label.is_not(None))
    )
    filters = request.filters
    if filters.labels:
        query = query.where(label.in_(filters.labels))
    if filters.min_duration_s:
        query = query.where(Recording.n_samples >= filters.min_duration_s * Recording.sampling_rate)
    rows = session.execute(query.order_by(Recording.id)).all()
    if not rows:
        raise TrainingDataError(f"dataset {_names(request)} has no labelled recordings matching the request")
    mapped = [(rid, request.label_mapping.get(label, label), digest) for rid, label, digest in rows]
    if request.classes is not None:
        mapped = [row for row in mapped if row[1] in request.classes]
        if not mapped:
            raise TrainingDataError(f"no recording of {_names(request)} has a class among {request.classes}")
    if filters.max_recordings and len(mapped) > filters.max_recordings:
        keep = np.random.default_rng(request.seed).choice(len(mapped), filters.max_recordings, replace=False)
        mapped = [mapped[i] for i in sorted(keep)]
    return mapped


def _names(request: TrainingJobRequest) -> str:
    return " + ".join(repr(name) for name in request.datasets)


def _classes(request: TrainingJobRequest, labels: list[str]) -> list[str]:
    found = sorted(set(labels))
    classes = list(request.classes) if request.classes is not None else found
    if len(found) < 2:
        raise TrainingDataError(f"dataset {_names(request)} has only one class ({found[0]!r}); need at least two")
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
    ids, signals, labels, infos, skipped = [], [], [], [], Counter()
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
            infos.append(subgroup_info(row))
        session.expunge_all()
    if len(signals) < 10:
        reasons = "; ".join(f"{n} x {reason}" for reason, n in skipped.most_common(3))
        raise TrainingDataError(
            f"only {len(signals)} usable recordings in {_names(request)}; need at least 10"
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

    features = feature_spec(request)
    leads = list(spec.leads)

    def part(indices: np.ndarray) -> Split:
        chosen = [signals[i] for i in indices]
        vectors = None
        if features is not None:
            vectors = np.stack([recording_features(x, spec.sampling_rate, leads, features) for x in chosen])
        return Split([ids[i] for i in indices], chosen, y[indices], [infos[i] for i in indices], vectors)

    data = TrainingData(spec, classes, part(train), part(validation), part(test), digest.hexdigest(), dict(skipped))
    data.sources = _sources(session, ids)
    data.fit_on_reviewed = _reviewed(session, data.train.recording_ids + data.validation.recording_ids)
    log.info("training data %s: %s", _names(request), data.summary()["recordings"])
    return data


def _reviewed(session: Session, ids: list[int]) -> list[int]:
    """Those of ``ids`` whose label is a settled review label."""
    settled = settled_labels().subquery()
    return sorted(session.scalars(select(settled.c.recording_id).where(settled.c.recording_id.in_(ids))))


def _sources(session: Session, ids: list[int]) -> dict[str, dict[str, int]]:
    """Per dataset: how many of the recordings used came from it, and how many of those carry a review's label."""
    settled = settled_labels().subquery()
    rows = session.execute(
        select(Recording.dataset, func.count(), func.count(settled.c.label))
        .outerjoin(settled, settled.c.recording_id == Recording.id)
        .where(Recording.id.in_(ids))
        .group_by(Recording.dataset)
    ).all()
    return {dataset: {"recordings": n, "review_labels": reviewed} for dataset, n, reviewed in rows}


def crop_window(
    signal: np.ndarray, spec: PreprocessingSpec, rng: np.random.Generator, augment: bool = False
) -> np.ndarray:
    """One randomly placed window of a cleaned signal (augmented if asked), normalised (and padded) by
    ``window_batch``."""
    excess = signal.shape[0] - spec.window_samples
    start = int(rng.integers(0, excess + 1)) if excess > 0 else 0
    crop = signal[start : start + spec.window_samples]
    return window_batch(augment_crop(crop, spec.sampling_rate, rng) if augment else crop, spec)[0]


def augment_crop(crop: np.ndarray, sampling_rate: float, rng: np.random.Generator) -> np.ndarray:
    """A cleaned crop (mV) as another recording of the same heart might look: each lead's gain scaled by 0.8-1.2,
    a slow baseline wander (0.05-0.5 Hz, up to 0.2 mV), white noise (up to 0.03 mV SD) and, with 12 leads, each lead
    lost with probability 0.1 (a flat lead, as a detached electrode gives)."""
    n, leads = crop.shape
    t = np.arange(n) / sampling_rate
    frequency, phase = rng.uniform(0.05, 0.5), rng.uniform(0, 2 * np.pi)
    wander = rng.uniform(0, 0.2) * np.sin(2 * np.pi * frequency * t + phase)
    out = crop * rng.uniform(0.8, 1.2, (1, leads)) + wander[:, None]
    out = out + rng.normal(0.0, rng.uniform(0, 0.03), out.shape)
    if leads > 1:
        lost = rng.random(leads) < 0.1
        if lost.all():
            lost[rng.integers(leads)] = False
        out[:, lost] = 0.0
    return out.astype(np.float32)


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

    def __init__(
        self, split: Split, spec: PreprocessingSpec, n_classes: int, batch_size: int, seed: int, augment: bool = False
    ) -> None:
        super().__init__()
        self.split, self.spec, self.n_classes, self.batch_size = split, spec, n_classes, batch_size
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self.weights = class_weights(split.y, n_classes).astype(np.float32)
        self.order = self.rng.permutation(len(split))

    def __len__(self) -> int:
        return int(np.ceil(len(self.split) / self.batch_size))

    def __getitem__(self, index: int):
        members = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        x = np.stack([crop_window(self.split.signals[i], self.spec, self.rng, self.augment) for i in members])
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
