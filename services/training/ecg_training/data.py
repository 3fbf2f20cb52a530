"""Training data: recordings read from Postgres, cleaned once with the shared preprocessing, split by record.

Each recording is cleaned once (:func:`ecg_shared.preprocessing.clean`: lead selection, filters, resampling) into the
worker's on-disk cache (:mod:`ecg_training.cache`), with its beat features where the model takes them, and read back
from there: memory does not grow with the number of recordings' samples. Training batches
(:class:`RandomCrops`) are random crops of one window per recording, re-drawn every epoch and normalised by
:func:`ecg_shared.preprocessing.window_batch` exactly as inference normalises its windows. Validation and test
recordings go through :func:`window_batch` over the whole recording, as ``prepare(record, spec)`` does for inference
(:class:`RecordingWindows`, streamed in batches), and a recording's probabilities are the mean over its windows.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ecg_shared import beats
from ecg_shared.beats import FeatureSpec, recording_features
from ecg_shared.db.models import Recording, Review
from ecg_shared.formats.record import EcgFormatError
from ecg_shared.jobs.training import TrainingJobRequest
from ecg_shared.preprocessing import PreprocessingSpec, clean, window_batch, window_starts
from ecg_shared.reviews import REVIEWED_DATASET, settled_labels
from ecg_shared.settings import get_settings
from ecg_training.cache import CHUNK_RECORDINGS, CachedSignals, SignalCache, SpecLease

log = logging.getLogger(__name__)
EVALUATION_BATCH = 64


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


def subgroup_info(n_samples: int, sampling_rate: float, age: object, sex: object) -> dict:
    """What the subgroup figures split by, where the recording's metadata carries it (PTB-XL: age and sex)."""
    try:
        age = int(float(age))
    except (TypeError, ValueError):
        age = None
    sex = str(sex).lower() if str(sex or "").lower() in ("male", "female") else None
    return {"duration_s": n_samples / sampling_rate, "age": age, "sex": sex}


SEXES = (None, "male", "female")


class SubgroupInfo:
    """Per recording of a split, :func:`subgroup_info`'s dict, kept as three small arrays."""

    def __init__(self, duration_s: np.ndarray, age: np.ndarray, sex: np.ndarray) -> None:
        self.duration_s, self.age, self.sex = duration_s, age, sex  # age -1: unknown; sex: index into SEXES

    @classmethod
    def of(cls, infos: list[dict]) -> SubgroupInfo:
        return cls(
            np.array([i["duration_s"] for i in infos], dtype=np.float64),
            np.array([-1 if i["age"] is None else i["age"] for i in infos], dtype=np.int32),
            np.array([SEXES.index(i["sex"]) for i in infos], dtype=np.int8),
        )

    def __len__(self) -> int:
        return len(self.duration_s)

    def __getitem__(self, i: int) -> dict:
        age = int(self.age[i])
        return {"duration_s": float(self.duration_s[i]), "age": None if age < 0 else age, "sex": SEXES[self.sex[i]]}

    def __iter__(self) -> Iterator[dict]:
        return (self[i] for i in range(len(self)))

    def subset(self, indices: np.ndarray) -> SubgroupInfo:
        return SubgroupInfo(self.duration_s[indices], self.age[indices], self.sex[indices])


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
    """Cleaned recordings of one split: signals (n_samples, n_leads) at the spec's rate, read from the cache on
    demand, and class indices."""

    recording_ids: list[int]
    signals: CachedSignals
    y: np.ndarray
    info: SubgroupInfo | None = None  # per recording: duration_s, age, sex (for subgroup figures)
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
    # The dataset a leadwise model's encoder is pretrained on first (the request's ``pretrain``), else None.
    pretraining: TrainingData | None = None
    # Held on the cache's specs this data reads, so no eviction deletes them while the job runs: see close().
    leases: list[SpecLease] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Release the cache's leases (the job is done with its signals); the process ending releases them too."""
        for lease in self.leases:
            lease.close()
        if self.pretraining is not None:
            self.pretraining.close()

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
        keep = np.random.default_rng(request.data_seed).choice(len(mapped), filters.max_recordings, replace=False)
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
    """Stratified (where every class has enough members), seeded (``request.data_seed``) train/validation/test split
    of record indices."""
    indices = np.arange(len(y))
    held_out = request.validation_fraction + request.test_fraction
    stratify = y if min(Counter(y.tolist()).values()) >= 4 else None
    train, rest = train_test_split(indices, test_size=held_out, random_state=request.data_seed, stratify=stratify)
    rest_stratify = y[rest] if stratify is not None and min(Counter(y[rest].tolist()).values()) >= 2 else None
    validation, test = train_test_split(
        rest, test_size=request.test_fraction / held_out, random_state=request.data_seed, stratify=rest_stratify
    )
    return np.sort(train), np.sort(validation), np.sort(test)


def load_training_data(
    session: Session, request: TrainingJobRequest, features: FeatureSpec | None = None
) -> TrainingData:
    """Read, clean (once: the worker's cache keeps it) and split the recordings a request names. Raises
    :class:`TrainingDataError` with the reason. The data holds a lease on the cache's spec until ``close()``; once it
    is loaded, the cache is brought under ``training_cache_max_size`` by evicting what no job uses. ``features``:
    an existing model's own feature spec (its version), to score it on its data; by default the request's, at this
    code's version (:func:`feature_spec`)."""
    settings = get_settings()
    cache = SignalCache(settings.training_cache_dir)
    spec = preprocessing_spec(request)
    lease = cache.lease(spec)
    try:
        data = _load(session, request, spec, cache, features or feature_spec(request))
    except BaseException:
        lease.close()
        raise
    data.leases.append(lease)
    if settings.training_cache_max_size > 0:
        cache.evict(int(settings.training_cache_max_size))
    return data


def _load(
    session: Session,
    request: TrainingJobRequest,
    spec: PreprocessingSpec,
    cache: SignalCache,
    features: FeatureSpec | None,
) -> TrainingData:
    candidates = _select_candidates(session, request)
    classes = _classes(request, [c for _, c, _ in candidates])
    class_index = {name: i for i, name in enumerate(classes)}
    feature_key = None if features is None else _feature_key(features)
    chunks, ids, chunk_of, row_of, labels, vectors, infos = [], [], [], [], [], [], []
    skipped: Counter = Counter()
    digest = hashlib.sha256()
    for start in range(0, len(candidates), CHUNK_RECORDINGS):
        part = candidates[start : start + CHUNK_RECORDINGS]
        members = [(rid, content) for rid, _, content in part]
        chunk = cache.open(spec, members) or cache.write(spec, members, _cleaned(session, members, spec))
        usable = chunk.usable
        skipped.update(chunk.skipped.values())
        if features is not None and len(usable):
            vectors.append(chunk.features(feature_key, _features_of(spec, features)))
        infos.extend(_subgroup_infos(session, chunk.ids[usable].tolist()))
        for row in usable.tolist():
            rid, label, content = part[row]
            ids.append(rid)
            chunk_of.append(len(chunks))
            row_of.append(row)
            labels.append(class_index[label])
            digest.update(f"{rid}:{content}:{label}\n".encode())
        chunks.append(chunk)
    if len(labels) < 10:
        reasons = "; ".join(f"{n} x {reason}" for reason, n in skipped.most_common(3))
        raise TrainingDataError(
            f"only {len(labels)} usable recordings in {_names(request)}; need at least 10"
            + (f" (skipped: {reasons})" if reasons else "")
        )
    y = np.array(labels, dtype=np.int64)
    present = sorted(set(y.tolist()))
    if len(present) < 2:
        raise TrainingDataError(f"only class {classes[present[0]]!r} is left after preprocessing; need two")
    signals = CachedSignals(chunks, np.array(chunk_of), np.array(row_of))
    ids = np.array(ids, dtype=np.int64)
    info = SubgroupInfo.of(infos)
    all_features = np.concatenate(vectors) if features is not None else None
    train, validation, test = _split_indices(y, request)

    def part(indices: np.ndarray) -> Split:
        return Split(
            ids[indices].tolist(),
            signals.subset(indices),
            y[indices],
            info.subset(indices),
            None if all_features is None else all_features[indices],
        )

    data = TrainingData(spec, classes, part(train), part(validation), part(test), digest.hexdigest(), dict(skipped))
    every = ids.tolist()
    data.sources = _sources(session, every)
    data.fit_on_reviewed = _reviewed(session, data.train.recording_ids + data.validation.recording_ids)
    log.info("training data %s: %s", _names(request), data.summary()["recordings"])
    if request.pretrain is not None:
        data.pretraining = load_training_data(session, request.pretraining_request())
    return data


def _cleaned(session: Session, members: list[tuple[int, str]], spec: PreprocessingSpec) -> dict[int, np.ndarray | str]:
    """Each of ``members`` cleaned (or the reason it cannot be), read from Postgres."""
    cleaned: dict[int, np.ndarray | str] = {}
    ids = [rid for rid, _ in members]
    for row in session.scalars(select(Recording).where(Recording.id.in_(ids)).order_by(Recording.id)):
        try:
            cleaned[row.id] = clean(row.to_record(), spec)
        except EcgFormatError as exc:
            cleaned[row.id] = str(exc)
    session.expunge_all()
    for rid in ids:
        cleaned.setdefault(rid, "recording deleted while training data was read")
    return cleaned


def _feature_key(features: FeatureSpec) -> str:
    """The cached features' key: the feature spec and the code that computes them (a change to
    :mod:`ecg_shared.beats` computes them again)."""
    code = Path(beats.__file__).read_bytes()
    return hashlib.sha256(json.dumps(features.to_dict(), sort_keys=True).encode() + code).hexdigest()[:16]


def _features_of(spec: PreprocessingSpec, features: FeatureSpec):
    leads = list(spec.leads)
    return lambda signal: recording_features(signal, spec.sampling_rate, leads, features)


def _subgroup_infos(session: Session, ids: list[int]) -> list[dict]:
    """:func:`subgroup_info` of each of ``ids``, in their order, without reading the signals."""
    metadata = Recording.metadata_
    rows = session.execute(
        select(
            Recording.id,
            Recording.n_samples,
            Recording.sampling_rate,
            metadata["age"].astext,
            metadata["sex"].astext,
        ).where(Recording.id.in_(ids))
    ).all()
    found = {rid: subgroup_info(n, rate, age, sex) for rid, n, rate, age, sex in rows}
    if len(found) < len(ids):
        raise TrainingDataError("recordings were deleted while the training data was read; start the job again")
    return [found[rid] for rid in ids]


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


SHORT_CROP_S = 10.0  # a 12-lead recording's usual length


def crop_window(
    signals: CachedSignals,
    i: int,
    spec: PreprocessingSpec,
    rng: np.random.Generator,
    augment: bool = False,
    short_crops: float = 0.0,
) -> np.ndarray:
    """One randomly placed window of cleaned recording ``i`` (only that window is read; augmented if asked),
    normalised (and padded) by ``window_batch``; with probability ``short_crops`` only :data:`SHORT_CROP_S` of it
    (windows longer than that), padded as a recording that short is at inference. With ``short_crops`` 0 no extra
    random number is drawn: the crops are those of a run without the option."""
    length = spec.window_samples
    if short_crops and spec.window_s > SHORT_CROP_S and rng.random() < short_crops:
        length = round(SHORT_CROP_S * spec.sampling_rate)
    excess = signals.length(i) - length
    start = int(rng.integers(0, excess + 1)) if excess > 0 else 0
    crop = signals.read(i, start, start + length)
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


def input_workers() -> dict:
    """PyDataset arguments: ``ECG_TRAINING_INPUT_WORKERS`` threads read and crop batches ahead of the model."""
    workers = get_settings().training_input_workers
    return {"workers": max(workers, 1), "use_multiprocessing": False, "max_queue_size": 2 * max(workers, 1)}


class RandomCrops(keras.utils.PyDataset):
    """Batches of (windows, one-hot labels, class weights): one fresh random crop per recording every epoch.

    What batch ``index`` of epoch ``e`` holds depends on ``(seed, e, index)`` alone (the epoch's order from a generator
    seeded with ``(seed, e)``, the batch's crops from one seeded with ``(seed, e, index)``), so the worker threads
    that prepare batches ahead of the model, and the order Keras asks for them in, change nothing."""

    def __init__(
        self,
        split: Split,
        spec: PreprocessingSpec,
        n_classes: int,
        batch_size: int,
        seed: int,
        augment: bool = False,
        short_crops: float = 0.0,
    ) -> None:
        super().__init__(**input_workers())
        self.split, self.spec, self.n_classes, self.batch_size = split, spec, n_classes, batch_size
        self.augment, self.short_crops, self.seed = augment, short_crops, seed
        self.weights = class_weights(split.y, n_classes).astype(np.float32)
        self.epoch = 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.split))

    def __len__(self) -> int:
        return int(np.ceil(len(self.split) / self.batch_size))

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        members = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        signals = self.split.signals
        x = np.stack([crop_window(signals, int(i), self.spec, rng, self.augment, self.short_crops) for i in members])
        y = self.split.y[members]
        return x, np.eye(self.n_classes, dtype=np.float32)[y], self.weights[y]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()

    def state(self) -> dict:
        """What a checkpoint keeps to draw the same crops on resuming: the next epoch's number."""
        return {"epoch": self.epoch}

    def restore(self, state: dict, epoch: int) -> None:
        """Go on at the crops of ``state`` (a checkpoint made after ``epoch`` epochs; older checkpoints kept the
        generator's state instead, and go on with this epoch's crops)."""
        self.epoch = int(state.get("epoch", epoch))
        self.order = self._order()


class RecordingWindows(keras.utils.PyDataset):
    """The inference windows (``window_batch``) of every recording of a split, in order, in batches of
    :data:`EVALUATION_BATCH` windows, read from the cache a window at a time; ``owners[k]`` is window k's
    recording."""

    def __init__(self, split: Split, spec: PreprocessingSpec, batch_size: int = EVALUATION_BATCH) -> None:
        super().__init__(**input_workers())
        self.split, self.spec, self.batch_size = split, spec, batch_size
        step = spec.window_samples
        starts = [window_starts(split.signals.length(i), step, step) for i in range(len(split))]
        self.owners = np.repeat(np.arange(len(split)), [len(s) for s in starts])
        self.starts = np.fromiter((s for each in starts for s in each), dtype=np.int64, count=len(self.owners))

    def __len__(self) -> int:
        return int(np.ceil(len(self.owners) / self.batch_size))

    def window(self, k: int) -> np.ndarray:
        """Window k: what ``window_batch`` gives for it over the whole recording (each window is normalised on its
        own samples, so reading only those gives the same values)."""
        start = int(self.starts[k])
        chunk = self.split.signals.read(int(self.owners[k]), start, start + self.spec.window_samples)
        return window_batch(chunk, self.spec)[0]

    def windows(self, ks: np.ndarray) -> np.ndarray:
        return np.stack([self.window(int(k)) for k in ks])

    def __getitem__(self, index: int) -> np.ndarray:
        return self.windows(np.arange(index * self.batch_size, min((index + 1) * self.batch_size, len(self.owners))))
