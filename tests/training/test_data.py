"""Training data from Postgres: filters, label mapping, reproducible stratified split by record, crops normalised
exactly like inference windows, and clear errors for data that cannot be trained on."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_shared.jobs.training import TrainingJobRequest
from ecg_shared.preprocessing import prepare, window_batch
from ecg_training.data import (
    RandomCrops,
    TrainingDataError,
    class_weights,
    crop_window,
    load_training_data,
    mean_by_recording,
    recording_windows,
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
    crop = crop_window(signal, data.spec, rng)
    assert crop.shape == (200, 12)
    # a crop is one window_batch window of some slice of the cleaned signal: mean 0 / sd 1 per lead
    assert np.allclose(crop.mean(axis=0), 0, atol=1e-4) and np.allclose(crop.std(axis=0), 1, atol=1e-3)
    starts = [s for s in range(0, 301) if np.allclose(window_batch(signal[s : s + 200], data.spec)[0], crop)]
    assert len(starts) == 1

    # evaluation windows of a test recording are exactly what prepare() gives the inference service
    record_id = data.test.recording_ids[0]
    record = db_session.scalars(select(Recording).where(Recording.id == record_id)).one().to_record()
    windows, owners = recording_windows(data.test, data.spec)
    assert np.array_equal(windows[owners == 0], prepare(record, data.spec))

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
    assert class_weights(np.array([0, 0, 1]), 3)[2] == 1.0  # a class absent from training keeps weight 1
