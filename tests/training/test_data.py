"""Training data from Postgres: filters, label mapping, reproducible stratified split by record, crops normalised
exactly like inference windows, and clear errors for data that cannot be trained on."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_shared.jobs.training import TrainingJobRequest
from ecg_shared.preprocessing import PreprocessingSpec, prepare, window_batch
from ecg_training.data import (
    RandomCrops,
    RecordingWindows,
    TrainingDataError,
    class_weights,
    crop_window,
    load_training_data,
    mean_by_recording,
)

TWELVE = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def ptbxl_request(dataset: str, /, **fields) -> TrainingJobRequest:
    return TrainingJobRequest(
        **{
            "dataset": dataset,
            "normal_classes": ["Normal"],
            "leads": TWELVE,
            "sampling_rate": 50,
            "window_s": 4,
            "seed": 3,
            **fields,
        }
    )


def test_split_is_by_record_stratified_disjoint_and_reproducible(db_session, ptbxl_slice):
    data = load_training_data(db_session, ptbxl_request(ptbxl_slice))
    again = load_training_data(db_session, ptbxl_request(ptbxl_slice))
    parts = [data.train.recording_ids, data.validation.recording_ids, data.test.recording_ids]
    assert sum(map(len, parts)) == 60 and len(set().union(*map(set, parts))) == 60
    assert [p.recording_ids for p in again.splits().values()] == parts
    assert data.fingerprint == again.fingerprint and len(data.fingerprint) == 64
    assert data.classes == ["Abnormal", "Normal"]
    for split in data.splits().values():
        assert set(split.counts(data.classes).values()) != {0}  # both classes in every split
    other_seed = load_training_data(db_session, ptbxl_request(ptbxl_slice, seed=4))
    assert other_seed.test.recording_ids != data.test.recording_ids
    assert data.train.signals[0].shape == (500, 12)  # 10 s at 50 Hz, cleaned once


def test_split_seed_keeps_the_split_while_the_seed_changes(db_session, ptbxl_slice):
    """A change is measured over seeds on one split: with split_seed fixed the recordings of each split stay, whatever
    the seed; without it the seed chooses the split, as it always did."""
    base = load_training_data(db_session, ptbxl_request(ptbxl_slice))
    fixed = [load_training_data(db_session, ptbxl_request(ptbxl_slice, seed=seed, split_seed=3)) for seed in (4, 5)]
    for data in fixed:
        assert [p.recording_ids for p in data.splits().values()] == [p.recording_ids for p in base.splits().values()]
    moved = load_training_data(db_session, ptbxl_request(ptbxl_slice, split_seed=4))
    assert moved.test.recording_ids != base.test.recording_ids
    assert ptbxl_request(ptbxl_slice, seed=4).data_seed == 4 and ptbxl_request(ptbxl_slice, split_seed=9).data_seed == 9


def test_label_mapping_filters_and_explicit_class_order(db_session, ptbxl_slice):
    request = ptbxl_request(
        ptbxl_slice, label_mapping={"Abnormal": "ABN"}, classes=["Normal", "ABN"], filters={"max_recordings": 30}
    )
    data = load_training_data(db_session, request)
    assert data.classes == ["Normal", "ABN"] and sum(len(s) for s in data.splits().values()) == 30
    only_normal = ptbxl_request(ptbxl_slice, filters={"labels": ["Normal"]})
    with pytest.raises(TrainingDataError, match="only one class"):
        load_training_data(db_session, only_normal)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"dataset": "nothing-here"}, "no labelled recordings"),
        ({"classes": ["X", "Y"], "normal_classes": ["X"]}, "no recording of"),
        ({"normal_classes": ["Healthy"]}, "not found among the dataset's classes"),
        ({"leads": ["V7"]}, "recording lacks lead"),
        ({"filters": {"min_duration_s": 60}}, "no labelled recordings"),
    ],
)
def test_data_that_cannot_be_trained_on_is_refused_with_the_reason(db_session, ptbxl_slice, fields, message):
    with pytest.raises(TrainingDataError, match=message):
        load_training_data(db_session, ptbxl_request(ptbxl_slice, **fields))


def test_crops_and_evaluation_windows_match_the_inference_preprocessing(db_session, ptbxl_slice):
    from sqlalchemy import select

    from ecg_shared.db.models import Recording

    request = ptbxl_request(ptbxl_slice)
    data = load_training_data(db_session, request)
    rng = np.random.default_rng(0)
    signal = data.train.signals[0]
    crop = crop_window(data.train.signals, 0, data.spec, rng)
    assert crop.shape == (200, 12)
    # a crop is one window_batch window of some slice of the cleaned signal: mean 0 / sd 1 per lead
    assert np.allclose(crop.mean(axis=0), 0, atol=1e-4) and np.allclose(crop.std(axis=0), 1, atol=1e-3)
    starts = [s for s in range(0, 301) if np.allclose(window_batch(signal[s : s + 200], data.spec)[0], crop)]
    assert len(starts) == 1

    # evaluation windows of the test recordings, streamed from the cache, are exactly what prepare() gives the
    # inference service (3 windows each here: 0-200, 200-400 and the last one aligned to the end, 300-500)
    windows = RecordingWindows(data.test, data.spec, batch_size=5)
    streamed = np.concatenate([windows[b] for b in range(len(windows))])
    assert len(streamed) == len(windows.owners) == 3 * len(data.test)
    for owner, record_id in enumerate(data.test.recording_ids):
        record = db_session.scalars(select(Recording).where(Recording.id == record_id)).one().to_record()
        assert np.array_equal(streamed[windows.owners == owner], prepare(record, data.spec))

    probabilities = np.array([[0.2, 0.8], [0.4, 0.6], [1.0, 0.0]])
    assert np.allclose(mean_by_recording(probabilities, np.array([0, 0, 1]), 2), [[0.3, 0.7], [1.0, 0.0]])


def test_batches_carry_balanced_class_weights_and_fresh_crops_each_epoch(db_session, ptbxl_slice):
    data = load_training_data(db_session, ptbxl_request(ptbxl_slice))
    batches = RandomCrops(data.train, data.spec, 2, batch_size=8, seed=0)
    x, y, w = batches[0]
    assert x.shape == (8, 200, 12) and y.shape == (8, 2) and np.allclose(y.sum(axis=1), 1)
    weights = class_weights(data.train.y, 2)
    counts = np.bincount(data.train.y, minlength=2)
    assert np.allclose(weights * counts, len(data.train.y) / 2)  # each class weighs the same in total
    assert np.allclose(w, weights[y.argmax(axis=1)])
    seen = {int(i) for b in range(len(batches)) for i in batches.order[b * 8 : (b + 1) * 8]}
    assert seen == set(range(len(data.train)))
    first = batches.order.copy()
    batches.on_epoch_end()
    assert not np.array_equal(first, batches.order)
    # a batch depends on (seed, epoch, index) alone: not on the order batches are asked for, nor on other batches
    later = [batches[i][0] for i in reversed(range(len(batches)))][::-1]
    again = RandomCrops(data.train, data.spec, 2, batch_size=8, seed=0)
    again.restore(batches.state(), epoch=1)
    assert all(np.array_equal(a, again[i][0]) for i, a in enumerate(later))
    assert not np.array_equal(later[0], x)  # fresh crops in the new epoch
    # so k workers (each its own RandomCrops) that take batches i mod k draw, together, exactly one worker's epoch
    for k in (2, 4):
        shards = [RandomCrops(data.train, data.spec, 2, batch_size=8, seed=0) for _ in range(k)]
        for shard in shards:
            shard.on_epoch_end()
        assert all(np.array_equal(later[i], shards[i % k][i][0]) for i in range(len(batches)))
    assert class_weights(np.array([0, 0, 1]), 3)[2] == 1.0  # a class absent from training keeps weight 1


def test_recordings_are_cleaned_once_into_the_cache_keyed_by_spec_and_content(db_session, ptbxl_slice, tmp_path):
    from sqlalchemy import select

    from ecg_shared.beats import recording_features
    from ecg_shared.db.models import Recording
    from ecg_shared.preprocessing import clean
    from ecg_shared.settings import get_settings
    from ecg_training.cache import SignalCache, spec_key
    from ecg_training.data import preprocessing_spec

    root = get_settings().training_cache_dir
    request = ptbxl_request(ptbxl_slice, features="beats")
    data = load_training_data(db_session, request)
    (chunk,) = data.train.signals.chunks  # 60 recordings: one chunk
    assert chunk.path.parent == root / spec_key(data.spec)
    assert (chunk.path / "signals.f32").stat().st_size == 60 * 500 * 12 * 4  # 10 s at 50 Hz, 12 leads, float32
    written = {p: p.stat().st_mtime_ns for p in chunk.path.iterdir() if p.name != "index.json"}
    used = (chunk.path / "index.json").stat().st_mtime_ns
    again = load_training_data(db_session, request)
    # read back, not cleaned again; the index's mtime is the chunk's last use, which eviction goes by
    assert {p: p.stat().st_mtime_ns for p in chunk.path.iterdir() if p.name != "index.json"} == written
    assert (chunk.path / "index.json").stat().st_mtime_ns > used
    assert np.array_equal(again.train.features, data.train.features)

    # what the cache holds is the shared clean() of the recording, and its beat features
    row = db_session.scalars(select(Recording).where(Recording.id == data.train.recording_ids[0])).one()
    assert np.array_equal(data.train.signals[0], clean(row.to_record(), data.spec))
    expected = recording_features(data.train.signals[0], data.spec.sampling_rate, list(data.spec.leads), _beats())
    assert np.array_equal(data.train.features[0], expected.astype(np.float32))

    # another spec is another folder; the same ids with other content are another chunk
    other = preprocessing_spec(ptbxl_request(ptbxl_slice, lowpass_hz=20))
    assert spec_key(other) != spec_key(data.spec)
    cache = SignalCache(tmp_path)
    members = [(1, "a" * 64), (2, "b" * 64)]
    cache.write(data.spec, members, {1: np.ones((10, 12), np.float32), 2: "recording lacks lead(s) V7"})
    chunk = cache.open(data.spec, members)
    assert chunk.usable.tolist() == [0] and chunk.skipped == {2: "recording lacks lead(s) V7"}
    assert np.array_equal(chunk.read(0, 3, 20), np.ones((7, 12), np.float32))
    assert cache.open(data.spec, [(1, "a" * 64), (2, "c" * 64)]) is None
    assert cache.open(other, members) is None
    # a second writer of the same chunk (another worker, at the same time) keeps the first one's copy
    again = cache.write(data.spec, members, {1: np.ones((10, 12), np.float32), 2: "recording lacks lead(s) V7"})
    assert again.path == chunk.path
    assert sorted(p.name for p in chunk.path.parent.iterdir()) == sorted([chunk.path.name, "spec.json"])
    # a damaged chunk is not used: it is cleaned again
    with open(chunk.path / "signals.f32", "r+b") as handle:
        handle.truncate(100)
    assert cache.open(data.spec, members) is None and not chunk.path.exists()


def _beats():
    from ecg_shared.beats import FeatureSpec

    return FeatureSpec("II", ())


def test_an_existing_models_features_are_loaded_at_its_own_version(db_session, ptbxl_slice):
    """Scoring a stored model on its card's data (drift reference, rate check) needs the features it was trained on:
    a beats-1 model's 72 values for 12 leads, where a new job gets beats-2's 111, the same 72 first."""
    from ecg_shared.beats import FeatureSpec

    request = ptbxl_request(ptbxl_slice, features="beats+morphology")
    current = load_training_data(db_session, request)
    old = load_training_data(db_session, request, FeatureSpec("II", tuple(TWELVE), "beats-1"))
    assert current.train.features.shape[1] == len(FeatureSpec("II", tuple(TWELVE)).names) == 111
    assert old.train.features.shape[1] == 72
    assert old.train.recording_ids == current.train.recording_ids
    assert np.array_equal(old.train.features, current.train.features[:, :72])


def test_short_crops_are_ten_seconds_padded_as_the_service_pads_a_short_recording():
    """``short_crops``: that share of a 30 s model's training crops is 10 s of signal, normalised on its own samples
    and zero-padded, exactly what the service gives the model for a 10 s recording; with 0, the crops are those of
    a run without the option (no random number drawn for it)."""

    class Signals:  # the two methods crop_window reads a cached signal with
        def __init__(self, signal):
            self.signal = signal

        def length(self, i):
            return len(self.signal)

        def read(self, i, start=0, stop=None):
            return self.signal[start:stop]

    spec = PreprocessingSpec(sampling_rate=50.0, window_samples=1500, leads=("I",))  # 30 s windows
    signals = Signals(np.random.default_rng(3).standard_normal((3000, 1)).astype(np.float32))  # 60 s, no repeats
    plain = crop_window(signals, 0, spec, np.random.default_rng(7))
    assert np.array_equal(crop_window(signals, 0, spec, np.random.default_rng(7), short_crops=0.0), plain)
    rng = np.random.default_rng(0)
    crops = [crop_window(signals, 0, spec, rng, short_crops=0.5) for _ in range(200)]
    short = [c for c in crops if not c[500:].any()]
    assert 70 <= len(short) <= 130 and all(c.shape == (1500, 1) for c in crops)
    for crop in short[:5]:
        starts = [s for s in range(0, 2501) if np.array_equal(window_batch(signals.signal[s : s + 500], spec)[0], crop)]
        assert len(starts) == 1  # 10 s of the signal, normalised and padded as window_batch does a short recording
    full = [c for c in crops if c[500:].any()]
    assert len(short) + len(full) == 200
    ten_second_model = PreprocessingSpec(sampling_rate=50.0, window_samples=500, leads=("I",))
    assert all(crop_window(signals, 0, ten_second_model, rng, short_crops=0.9).any(axis=1).all() for _ in range(20))
