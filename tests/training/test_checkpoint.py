"""Checkpoints on the real PTB-XL slice and Azurite: what an epoch leaves is what the next attempt resumes from."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_training.checkpoint import Checkpoint, CheckpointStore
from ecg_training.data import load_training_data
from ecg_training.trainer import TrainingHooks, fit
from tests.training.test_data import ptbxl_request


@pytest.fixture(scope="module")
def slice_data(database_url, ptbxl_slice):
    from ecg_shared.db import session_scope

    request = ptbxl_request(ptbxl_slice, family="cnn", epochs=3, batch_size=16, classes=["Normal", "Abnormal"])
    with session_scope(database_url) as session:
        return request, load_training_data(session, request)


def test_a_resumed_run_goes_on_from_the_checkpoint_epoch_with_its_optimizer_and_best_so_far(slice_data, azurite):
    request, data = slice_data
    saved: list[Checkpoint] = []
    fit(data, request.model_copy(update={"epochs": 1}), TrainingHooks(on_checkpoint=saved.append))
    (first,) = saved
    store = CheckpointStore()
    store.save(987654321, first)
    loaded = store.load(987654321)
    assert loaded.epoch == 1 and loaded.fingerprint == data.fingerprint and len(loaded.history) == 1
    assert all(np.array_equal(a, b) for a, b in zip(first.weights, loaded.weights, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(first.optimizer, loaded.optimizer, strict=True))
    assert loaded.crops == first.crops and loaded.best_epoch == 1

    saved.clear()
    epochs: list[int] = []
    hooks = TrainingHooks(
        on_checkpoint=saved.append, on_epoch=lambda p: epochs.append(p.epoch), resume_from=loaded, attempt=2
    )
    model, monitor = fit(data, request, hooks, resume_from=hooks.resume_from)
    steps = len(data.train) // request.batch_size + (len(data.train) % request.batch_size > 0)
    assert epochs == [2, 3]  # epoch 1 is not run again
    assert int(np.asarray(model.optimizer.iterations)) == 3 * steps  # the optimizer's step count went on
    assert [(p.epoch, p.attempt) for p in monitor.history] == [(1, 1), (2, 2), (3, 2)]
    assert monitor.history[0] == first.history[0]
    assert saved[-1].epoch == 3 and 1 <= monitor.best_epoch <= 3

    store.delete(987654321)
    assert store.load(987654321) is None
    store.delete(987654321)  # already gone: fine
