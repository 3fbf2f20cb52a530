"""Reviews in training and auto-promotion behind the gate, on real PTB-XL recordings in Postgres.

- a settled review label takes precedence over the file's label; disputed recordings wait; kept recordings of the
  reviewed dataset count only once reviewed; the reviewed dataset trains alone or with others;
- ``auto_promote`` registers the version and promotes it only when the promotion gate passes (the runner's own
  path, with small ONNX models standing in for trained ones so no TensorFlow training is needed).
"""

from __future__ import annotations

import uuid

import pytest

from ecg_shared.jobs.training import TrainingJobRequest
from ecg_shared.reviews import REVIEWED_DATASET, ReviewRequest, keep_classification, save_review

TWELVE = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
ANSWER = {"verdict": {"label": "normal", "probability": 0.9, "rule": "test"}, "models": []}


def _request(dataset: str, **fields) -> TrainingJobRequest:
    return TrainingJobRequest(
        dataset=dataset, normal_classes=["Normal"], leads=TWELVE, sampling_rate=50, window_s=4, seed=3, **fields
    )


def _store(session, data_dir, dataset: str, headers) -> list[int]:
    from ecg_shared.db.store import StoreItem, content_hash, store_recordings
    from ecg_shared.formats import read_ecg

    items = []
    for header in headers:
        digest = content_hash(header.read_bytes() + header.with_suffix(".dat").read_bytes())
        items.append(StoreItem(read_ecg(header), header.with_suffix("").as_uri(), digest, digest))
    ids = store_recordings(session, dataset, items)
    session.commit()
    return ids


def test_review_labels_take_precedence_and_the_reviewed_dataset_trains_alone_or_with_others(db_session, data_dir):
    from ecg_shared.formats import read_ecg
    from ecg_training.data import _select_candidates, load_training_data

    headers = sorted((data_dir / "ptbxl").glob("*.hea"))
    dataset = f"relabelled-{uuid.uuid4().hex[:6]}"
    ids = _store(db_session, data_dir, dataset, headers[:30])
    file_labels = {rid: read_ecg(h).label for rid, h in zip(ids, headers[:30], strict=True)}
    corrected, disputed = ids[0], ids[1]
    flipped = "normal" if file_labels[corrected] == "Abnormal" else "abnormal"
    save_review(db_session, corrected, ReviewRequest(reviewer="Dr Ada", label=flipped))
    save_review(db_session, disputed, ReviewRequest(reviewer="Dr Ada", label="normal"))
    save_review(db_session, disputed, ReviewRequest(reviewer="Dr Bo", label="abnormal"))

    # Kept uploads (the reviewed dataset): one reviewed, one not yet.
    marker = uuid.uuid4().bytes
    kept_reviewed, _ = keep_classification(db_session, read_ecg(headers[40]), marker + b"a", ANSWER)
    kept_waiting, _ = keep_classification(db_session, read_ecg(headers[41]), marker + b"b", ANSWER)
    save_review(db_session, kept_reviewed, ReviewRequest(reviewer="Dr Ada", label="abnormal"))
    db_session.commit()

    mapping = {"normal": "Normal", "abnormal": "Abnormal"}
    selected = {rid: cls for rid, cls, _ in _select_candidates(db_session, _request(dataset, label_mapping=mapping))}
    assert selected[corrected] == mapping[flipped] != file_labels[corrected]  # the review wins over the file
    assert disputed not in selected  # reviewers disagree: left out until they agree
    assert all(selected[rid] == file_labels[rid] for rid in ids[2:])
    assert kept_reviewed not in selected  # another dataset

    both = _request(dataset, extra_datasets=[REVIEWED_DATASET], label_mapping=mapping)
    assert both.datasets == [dataset, REVIEWED_DATASET]
    combined = {rid: cls for rid, cls, _ in _select_candidates(db_session, both)}
    assert combined[kept_reviewed] == "Abnormal" and kept_waiting not in combined
    alone = {rid for rid, _, _ in _select_candidates(db_session, _request(REVIEWED_DATASET, label_mapping=mapping))}
    assert kept_reviewed in alone and kept_waiting not in alone and not alone & set(ids)

    data = load_training_data(db_session, both)
    assert data.sources[dataset] == {"recordings": 29, "review_labels": 1}
    assert data.sources[REVIEWED_DATASET]["recordings"] == data.sources[REVIEWED_DATASET]["review_labels"] >= 1
    assert data.summary()["sources"] == data.sources
    fitted = set(data.train.recording_ids + data.validation.recording_ids)
    reviewed_ids = {corrected, kept_reviewed} | set(alone)
    assert data.fit_on_reviewed == sorted(fitted & reviewed_ids)
    assert data.summary()["fit_on_reviewed_recordings"] == data.fit_on_reviewed

    # The gate does not score a version on reviewed recordings it was fitted on.
    from ecg_inference.gate import fitted_on, load_evaluation
    from ecg_shared.db.models import ModelVersion

    version = ModelVersion(
        name="m",
        onnx_metadata={"classes": ["Normal", "Abnormal"], "normal_classes": ["Normal"], "unreadable_classes": []},
        model_card={"data": {**data.summary(), "label_mapping": mapping}},
    )
    excluded = {rid: "fitted on it" for rid in fitted_on(version)}
    evaluation = load_evaluation(db_session, "reviewed", version, 10_000, excluded)
    assert corrected in set(evaluation.ids) ^ set(data.fit_on_reviewed)  # in exactly one of the two
    assert not set(evaluation.ids) & set(data.fit_on_reviewed)
    assert evaluation.skipped.get("fitted on it", 0) == len(data.fit_on_reviewed)
    assert disputed not in evaluation.ids and kept_waiting not in evaluation.ids
    truth = dict(zip(evaluation.ids, evaluation.truth, strict=True))
    assert all(truth[rid] == "abnormal" for rid in {kept_reviewed} & set(truth))

    with pytest.raises(ValueError, match="extra dataset"):
        _request(dataset, extra_datasets=[""])


# --- auto_promote behind the gate ---------------------------------------------------------------------------------


def _constant(metadata, says_abnormal: bool) -> bytes:
    from tests.inference.onnx_models import tiny_model

    return tiny_model(metadata, scale=0.0, bias=[-3.0, 3.0] if says_abnormal else [3.0, -3.0])


def _trained(metadata, onnx: bytes):
    from ecg_training.trainer import TrainedModel

    metrics = {"primary": {"name": "auc_abnormal", "value": 0.99}}  # its own test split: not what the gate uses
    card = {"data": {"dataset": "x", "label_mapping": {}}}
    return TrainedModel(metadata, onnx, metrics, card, keras_model=None)


@pytest.fixture(scope="module")
def inference_service(database_url, azurite):
    """The real inference service (the Procfile's entry): where auto_promote's gate scores the versions."""
    from tests.support.stack import start_stack

    with start_stack(
        ["inference"], database_url=database_url, artifact_connection_string=azurite.connection_string
    ) as stack:
        yield stack.url("inference")


@pytest.fixture()
def gate_at(inference_service, monkeypatch):
    from ecg_shared.settings import get_settings

    monkeypatch.setenv("ECG_INFERENCE_URL", inference_service)
    get_settings.cache_clear()
    yield inference_service
    monkeypatch.undo()
    get_settings.cache_clear()


def _auto_promote(session, trained, evaluation: str):
    """What run_training_job does once a model is trained: register it (job succeeded), then the gate."""
    from ecg_shared.jobs.training import claim_training_job, create_training_job, get_training_job
    from ecg_training.runner import _gate_and_promote, _register

    request = _request("x", auto_promote=True, promotion_evaluation=evaluation, name=trained.metadata.name)
    job = create_training_job(session, request)
    claim_training_job(session, job.id, "test-host", 60, 2)
    session.commit()
    name, version, promoted = _register(job.id, 1, trained, request)
    if not promoted:
        promoted = _gate_and_promote(job.id, name, version, evaluation)
    session.expire_all()
    return version, promoted, get_training_job(session, job.id).metrics


def test_auto_promote_is_gated_on_the_evaluation_data(db_session, data_dir, gate_at):
    from ecg_shared import registry
    from ecg_shared.formats import read_ecg
    from tests.inference.onnx_models import twelve_lead_metadata

    name = f"gated-{uuid.uuid4().hex[:6]}"
    abnormal = [h for h in sorted((data_dir / "ptbxl").glob("*.hea")) if read_ecg(h).label == "Abnormal"][:5]
    evaluation = f"gate-eval-{uuid.uuid4().hex[:6]}"
    _store(db_session, data_dir, evaluation, abnormal)

    # The first version of a model has nothing to be compared with: promoted at registration.
    says_abnormal = _trained(twelve_lead_metadata(name=name), _constant(twelve_lead_metadata(name=name), True))
    first, promoted, metrics = _auto_promote(db_session, says_abnormal, evaluation)
    assert promoted is True and metrics["promotion_gate"]["reason"] == "no active version to compare with"

    worse = _trained(twelve_lead_metadata(name=name), _constant(twelve_lead_metadata(name=name), False))
    version, promoted, metrics = _auto_promote(db_session, worse, evaluation)
    worse_version = version
    assert promoted is False and metrics["promoted"] is False
    gate = metrics["promotion_gate"]
    assert gate["passed"] is False and gate["metric"] == "agreement" and gate["n"] == 5
    assert gate["candidate"]["version"] == version and gate["candidate"]["agreement"] == 0.0
    assert gate["active"]["version"] == first and gate["active"]["agreement"] == 1.0
    assert registry.get_version(db_session, name, version).stage == "candidate"
    assert registry.get_version(db_session, name, first).stage == "active"

    # Nothing to compare on: not promoted either; the job has still succeeded, with the reason.
    version, promoted, metrics = _auto_promote(db_session, worse, "no-such-dataset")
    assert promoted is False and "nothing to compare on" in metrics["promotion_gate"]["reason"]

    as_good = _trained(twelve_lead_metadata(name=name), _constant(twelve_lead_metadata(name=name), True))
    version, promoted, metrics = _auto_promote(db_session, as_good, evaluation)
    assert promoted is True and metrics["promotion_gate"]["passed"] is True
    db_session.expire_all()
    assert registry.get_version(db_session, name, version).stage == "active"
    assert registry.get_version(db_session, name, first).stage == "archived"

    # `ecg models promote` goes through the same gate; --force overrides it.
    from typer.testing import CliRunner

    from ecg_shared.cli import app

    runner = CliRunner()
    refused = runner.invoke(app, ["models", "promote", name, str(worse_version), "--evaluation", evaluation])
    assert refused.exit_code == 1 and "not promoted: candidate agreement 0.000 < active" in refused.output
    db_session.expire_all()
    assert registry.get_version(db_session, name, worse_version).stage == "candidate"
    forced = runner.invoke(app, ["models", "promote", name, str(worse_version), "--force"])
    assert forced.exit_code == 0 and forced.output.strip() == f"{name} v{worse_version} is active"
    # leave no test model active: a stack sharing this database would serve it to the tests after this one
    registry.archive(db_session, name, worse_version)
    db_session.commit()


def test_auto_promote_refuses_when_the_gate_cannot_be_asked(db_session, monkeypatch):
    from ecg_shared.promotion import ask_gate
    from ecg_shared.settings import get_settings
    from tests.support.ports import free_port

    monkeypatch.setenv("ECG_INFERENCE_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    get_settings.cache_clear()
    try:
        gate = ask_gate("any-model", 2, "reviewed")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert gate.passed is False and "could not run: inference unreachable" in gate.reason
