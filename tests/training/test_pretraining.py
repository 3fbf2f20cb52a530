"""A leadwise model whose single-lead encoder is pretrained on real CinC 2017 recordings, then trained on a real PTB-XL
slice: the job's network starts from the pretrained encoder, the exported graph passes the parity gate, and the model
card says what the encoder was pretrained on."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ecg_shared.jobs.training import TrainingJobRequest
from ecg_training.data import load_training_data
from ecg_training.families import build_model, encoder_weights
from ecg_training.trainer import TrainingHooks, fit, pretrain_encoder, train_and_export

LEADS = ["I", "II", "V1"]  # three of the twelve: what matters is more than one lead through one encoder
PER_CLASS = 10


@pytest.fixture(scope="module")
def cinc_slice(data_dir: Path, database_url: str, tmp_path_factory) -> str:
    """Ten real CinC 2017 recordings of each class (N, A, O, ~), stored as their own dataset."""
    from ecg_shared.db import session_scope
    from ecg_shared.db.store import import_directory

    source, folder = data_dir / "cinc2017", tmp_path_factory.mktemp("cinc-slice")
    picked: dict[str, list[str]] = {}
    with (source / "REFERENCE.csv").open() as rows:
        for name, label in csv.reader(rows):
            if (source / f"{name}.hea").is_file() and len(picked.setdefault(label, [])) < PER_CLASS:
                picked[label].append(name)
    with (folder / "REFERENCE.csv").open("w") as reference:
        for label, names in picked.items():
            for name in names:
                shutil.copy(source / f"{name}.hea", folder)
                shutil.copy(source / f"{name}.mat", folder)
                reference.write(f"{name},{label}\n")
    with session_scope(database_url) as session:
        stored, _, failures = import_directory(session, folder, "cinc-slice")
        session.commit()
    assert failures == [] and stored == 4 * PER_CLASS
    return "cinc-slice"


def leadwise_request(ptbxl_slice: str, cinc_slice: str, **fields) -> TrainingJobRequest:
    return TrainingJobRequest(
        **{
            "dataset": ptbxl_slice,
            "name": "leadwise-pretrained",
            "family": "leadwise",
            "normal_classes": ["Normal"],
            "leads": LEADS,
            "sampling_rate": 50,
            "window_s": 4,
            "normalisation": "minmax",
            "epochs": 1,
            "seed": 1,
            "pretrain": {
                "dataset": cinc_slice,
                "classes": ["N", "A", "O", "~"],
                "normal_classes": ["N"],
                "unreadable_classes": ["~"],
                "epochs": 2,
            },
            **fields,
        }
    )


def kernels(weights: list[np.ndarray]) -> list[np.ndarray]:
    """The encoder's convolution kernels (the arrays of three dimensions): what training moves, unlike the batch
    norms' running statistics, which every forward pass in training updates."""
    return [w for w in weights if w.ndim == 3]


def test_the_jobs_network_starts_from_the_pretrained_encoder(db_session, ptbxl_slice, cinc_slice):
    request = leadwise_request(ptbxl_slice, cinc_slice)
    data = load_training_data(db_session, request)
    assert data.pretraining is not None and data.pretraining.classes == ["N", "A", "O", "~"]
    assert data.pretraining.spec.leads == ("II",) and data.pretraining.spec.window_samples == data.spec.window_samples
    pretrained, summary = pretrain_encoder(data, request, TrainingHooks())
    assert summary["dataset"] == cinc_slice and summary["recordings"]["train"] == len(data.pretraining.train)
    assert 1 <= summary["best_epoch"] <= 2
    fresh = encoder_weights(build_model("leadwise", 1, 4, data.spec.window_samples))
    assert not any(np.allclose(a, b) for a, b in zip(kernels(fresh), kernels(pretrained), strict=True))

    # A learning rate too small to move the kernels: what the network holds after its epoch is where it started.
    still = request.model_copy(update={"learning_rate": 1e-12})
    model, _ = fit(data, still, TrainingHooks(), encoder=pretrained)
    started_from = kernels(encoder_weights(model))
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(started_from, kernels(pretrained), strict=True))


def test_a_pretrained_leadwise_job_exports_with_parity_and_a_card_that_names_its_pretraining(
    db_session, ptbxl_slice, cinc_slice
):
    request = leadwise_request(ptbxl_slice, cinc_slice)
    trained = train_and_export(load_training_data(db_session, request), request)
    assert trained.metrics["parity_max_abs_diff"] < 1e-4
    card = json.loads(json.dumps(trained.model_card))  # what the registry stores
    assert card["family"] == "leadwise" and card["hyperparameters"]["pretrain"]["dataset"] == cinc_slice
    assert card["pretraining"]["dataset"] == cinc_slice and card["pretraining"]["lead"] == "II"
    assert card["pretraining"]["classes"] == ["N", "A", "O", "~"] and card["pretraining"]["epochs"] == 2
