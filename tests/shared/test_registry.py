"""The model registry on real Postgres and Azurite: versions, promotion, archive, and seeding the bundled models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from ecg_shared.artifacts import ArtifactStore, sha256
from ecg_shared.cli import app
from ecg_shared.model_metadata import ModelMetadata
from ecg_shared.preprocessing import PreprocessingSpec
from ecg_shared.registry import (
    RegistryError,
    active_versions,
    archive,
    get_version,
    list_versions,
    promote,
    register_version,
    registry_revision,
)
from ecg_shared.registry_cli import read_bundled_model, seed_models


def tiny_onnx(name: str, classes: list[str], leads: tuple[str, ...], scale: float = 1.0) -> bytes:
    """A real (if trivial) classifier: mean over time, a linear layer, softmax; with the platform's metadata."""
    window, n_leads, n_classes = 200, len(leads), len(classes)
    weights = (np.arange(n_leads * n_classes, dtype=np.float32).reshape(n_leads, n_classes) - 1) * scale
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["ecg"], ["mean"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["mean", "weights"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "tiny",
        [helper.make_tensor_value_info("ecg", TensorProto.FLOAT, ["batch", window, n_leads])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_classes])],
        initializer=[
            numpy_helper.from_array(weights, "weights"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    metadata = ModelMetadata(name, "cnn", classes, classes[:1], PreprocessingSpec(100, window, leads))
    for key, value in metadata.to_onnx_props().items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def metadata_of(onnx_bytes: bytes) -> ModelMetadata:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return ModelMetadata.from_onnx_props(session.get_modelmeta().custom_metadata_map)


@pytest.fixture()
def model_name(request) -> str:
    return f"registry-{request.node.name[:40].replace('_', '-')}".lower()


def test_versions_are_numbered_stored_and_promoted_one_at_a_time(db_session, azurite, model_name):
    first, second = tiny_onnx(model_name, ["N", "A"], ("II",)), tiny_onnx(model_name, ["N", "A"], ("II",), 2.0)
    v1 = register_version(db_session, metadata_of(first), first, metrics={"primary": {"name": "f1", "value": 0.7}})
    v2 = register_version(db_session, metadata_of(second), second, model_card={"intended_use": "tests"})
    assert (v1.version, v2.version, v1.stage, v2.stage) == (1, 2, "candidate", "candidate")
    assert v1.artifact_uri.startswith("azure://") and ArtifactStore().get(v2.artifact_uri) == second
    assert v2.artifact_sha256 == sha256(second) and v2.onnx_metadata["classes"] == ["N", "A"]
    assert [v.version for v in list_versions(db_session, model_name)] == [2, 1]

    before = registry_revision(db_session)
    promote(db_session, model_name, 1)
    assert f"{model_name}:1" in registry_revision(db_session) != before
    promote(db_session, model_name, 2)
    assert (get_version(db_session, model_name, 1).stage, get_version(db_session, model_name, 2).stage) == (
        "archived",
        "active",
    )
    assert [v.version for v in active_versions(db_session) if v.name == model_name] == [2]
    archive(db_session, model_name, 2)
    assert not [v for v in active_versions(db_session) if v.name == model_name]
    with pytest.raises(RegistryError, match="has no version 9"):
        promote(db_session, model_name, 9)


def test_seed_registers_and_promotes_once_and_is_idempotent(db_session, azurite, tmp_path: Path):
    rhythm = tiny_onnx("seed-rhythm", ["N", "A", "O", "~"], ("II",))
    twelve = tiny_onnx("seed-12lead", ["Normal", "Abnormal"], ("I", "II", "III"))
    (tmp_path / "seed-rhythm.onnx").write_bytes(rhythm)
    (tmp_path / "seed-rhythm.card.json").write_text(json.dumps({"metrics": {"primary": {"name": "f1", "value": 1}}}))
    (tmp_path / "seed-12lead.onnx").write_bytes(twelve)

    first = seed_models(db_session, tmp_path)
    assert {(r.name, r.version, r.registered, r.promoted) for r in first} == {
        ("seed-rhythm", 1, True, True),
        ("seed-12lead", 1, True, True),
    }
    row = get_version(db_session, "seed-rhythm", 1)
    assert row.stage == "active" and row.metrics == {"primary": {"name": "f1", "value": 1}}
    assert row.model_card["bundled_file"] == "seed-rhythm.onnx" and ArtifactStore().get(row.artifact_uri) == rhythm

    again = seed_models(db_session, tmp_path)
    assert {(r.version, r.registered, r.promoted) for r in again} == {(1, False, False)}
    assert len(list_versions(db_session, "seed-rhythm")) == 1

    # a retrained file under the same name becomes a candidate: the active version stays until promoted by hand
    (tmp_path / "seed-rhythm.onnx").write_bytes(tiny_onnx("seed-rhythm", ["N", "A", "O", "~"], ("II",), 3.0))
    retrained = {r.name: r for r in seed_models(db_session, tmp_path)}["seed-rhythm"]
    assert (retrained.version, retrained.registered, retrained.promoted) == (2, True, False)
    assert (retrained.stage, retrained.active_version, retrained.waits_for_promotion) == ("candidate", 1, True)
    assert get_version(db_session, "seed-rhythm", 1).stage == "active"
    assert {r.name: r for r in first}["seed-rhythm"].waits_for_promotion is False


def test_seed_refuses_files_that_are_not_platform_models(tmp_path: Path):
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        read_bundled_model(tmp_path / "broken.onnx")
    plain = onnx.load_from_string(tiny_onnx("x", ["N", "A"], ("II",)))
    del plain.metadata_props[:]
    (tmp_path / "plain.onnx").write_bytes(plain.SerializeToString())
    with pytest.raises(ValueError, match="no 'ecg_model' metadata"):
        read_bundled_model(tmp_path / "plain.onnx")


def test_models_cli_seeds_lists_shows_and_promotes(database_url, azurite, tmp_path: Path):
    (tmp_path / "cli-model.onnx").write_bytes(tiny_onnx("cli-model", ["N", "A"], ("II",)))
    runner = CliRunner()
    seeded = runner.invoke(app, ["models", "seed", "--dir", str(tmp_path)])
    assert seeded.exit_code == 0 and "cli-model v1: registered, promoted to active" in seeded.output
    assert "already registered" in runner.invoke(app, ["models", "seed", "--dir", str(tmp_path)]).output
    listed = runner.invoke(app, ["models", "list", "cli-model"])
    assert listed.exit_code == 0 and "v1" in listed.output and "active" in listed.output
    shown = json.loads(runner.invoke(app, ["models", "show", "cli-model", "1"]).output)
    assert shown["stage"] == "active" and shown["metadata"]["classes"] == ["N", "A"]
    assert shown["artifact_uri"].startswith("azure://") and "AccountKey" not in json.dumps(shown)
    missing = runner.invoke(app, ["models", "promote", "cli-model", "5"])
    assert missing.exit_code == 1 and "has no version 5" in missing.output
    archived = runner.invoke(app, ["models", "archive", "cli-model", "1"])
    assert archived.exit_code == 0
    assert runner.invoke(app, ["models", "promote", "cli-model", "1"]).output.strip() == "cli-model v1 is active"
    assert runner.invoke(app, ["models", "seed", "--dir", str(tmp_path / "nowhere")]).exit_code == 1

    # an upgrade that changes a bundled file: the operator is told the service still answers with the old version
    (tmp_path / "cli-model.onnx").write_bytes(tiny_onnx("cli-model", ["N", "A"], ("I",)))
    for _ in range(2):  # at every start, until someone decides
        upgraded = runner.invoke(app, ["models", "seed", "--dir", str(tmp_path)])
        assert upgraded.exit_code == 0
        assert "a candidate: v1 stays active until this one is promoted (ecg models promote cli-model 2" in (
            upgraded.output
        )


def test_seed_restores_a_registered_version_whose_file_is_missing_or_differs(db_session, azurite, tmp_path: Path):
    """The blob volume lost, or two checkouts sharing a database: `seed` checks the stored files, not just the rows."""
    from azure.storage.blob import BlobServiceClient

    data = tiny_onnx("seed-restore", ["N", "A"], ("II",))
    (tmp_path / "seed-restore.onnx").write_bytes(data)
    (first,) = seed_models(db_session, tmp_path)
    row = get_version(db_session, "seed-restore", first.version)
    container, blob = row.artifact_uri.removeprefix("azure://").split("/", 1)
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(container)

    blobs.delete_blob(blob)
    (again,) = seed_models(db_session, tmp_path)
    assert (again.registered, again.restored) == (False, f"file missing: {row.artifact_uri}")
    assert ArtifactStore().get(row.artifact_uri) == data

    blobs.upload_blob(blob, b"another file", overwrite=True)
    (again,) = seed_models(db_session, tmp_path)
    assert again.restored.startswith(f"checksum differs: {row.artifact_uri} has sha256 {sha256(b'another file')[:16]}")
    assert ArtifactStore().get(row.artifact_uri) == data
    (intact,) = seed_models(db_session, tmp_path)
    assert intact.restored is None and len(list_versions(db_session, "seed-restore")) == 1


@pytest.fixture()
def own_database(database_url, monkeypatch):
    """A fresh database of this test's own, as ECG_DATABASE_URL: what `ecg models check` sees is only its versions."""
    from ecg_shared.settings import get_settings
    from tests.support.database import create_test_database, drop_test_database

    url = create_test_database()
    monkeypatch.setenv("ECG_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    monkeypatch.setenv("ECG_DATABASE_URL", database_url)
    get_settings.cache_clear()
    drop_test_database(url)


def test_models_check_reports_every_version_whose_file_is_missing_or_differs(own_database, azurite, tmp_path: Path):
    from azure.storage.blob import BlobServiceClient

    from ecg_shared.db import session_scope

    database_url = own_database
    for name in ("check-a", "check-b", "check-c"):
        (tmp_path / f"{name}.onnx").write_bytes(tiny_onnx(name, ["N", "A"], ("II",)))
    runner = CliRunner()
    assert runner.invoke(app, ["models", "seed", "--dir", str(tmp_path)]).exit_code == 0
    healthy = runner.invoke(app, ["models", "check"])
    assert healthy.exit_code == 0, healthy.output
    assert "check-a v1 (active): ok" in healthy.output and "check-c v1 (active): ok" in healthy.output

    with session_scope(database_url) as session:
        uris = {name: get_version(session, name, 1).artifact_uri for name in ("check-a", "check-b")}
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    container, blob = uris["check-a"].removeprefix("azure://").split("/", 1)
    blobs.get_container_client(container).delete_blob(blob)
    container, blob = uris["check-b"].removeprefix("azure://").split("/", 1)
    blobs.get_container_client(container).upload_blob(blob, b"not the model", overwrite=True)

    broken = runner.invoke(app, ["models", "check"])
    assert broken.exit_code == 1
    assert f"check-a v1 (active): file missing: {uris['check-a']}" in broken.output
    assert f"check-b v1 (active): checksum differs: {uris['check-b']}" in broken.output
    assert "check-c v1 (active): ok" in broken.output

    assert runner.invoke(app, ["models", "seed", "--dir", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["models", "check"]).exit_code == 0


def test_seeded_versions_do_not_claim_training_jobs_of_this_database(db_session, azurite):
    """The bundled models name the jobs that trained them in another database (ids 1 and 2): here those ids belong to
    unrelated jobs, so a seeded version links to none and keeps the original in its model card."""
    from ecg_shared.settings import get_settings

    bundled = sorted(get_settings().models_dir.glob("*.onnx"))
    if not bundled:
        pytest.skip(f"no bundled models in {get_settings().models_dir}")
    origins = {read_bundled_model(path)[0].name: read_bundled_model(path)[0].training_job_id for path in bundled}
    assert any(origin is not None for origin in origins.values()), "the bundled models name their training jobs"
    for result in seed_models(db_session, get_settings().models_dir):
        row = get_version(db_session, result.name, result.version)
        assert row.training_job_id is None
        assert row.onnx_metadata["training_job_id"] is None
        assert row.model_card.get("origin_training_job_id") == origins[result.name]


def test_seeded_versions_carry_their_drift_reference(db_session, azurite):
    """The /models page compares a version's live p_abnormal with its validation split's: the bundled versions keep
    that histogram in their metrics once seeded, so the page shows a PSI for them, not "no reference"."""
    from ecg_gateway.routes.drift import version_drift
    from ecg_shared.settings import get_settings

    results = seed_models(db_session, get_settings().models_dir)
    if not results:
        pytest.skip(f"no bundled models in {get_settings().models_dir}")
    for result in results:
        row = get_version(db_session, result.name, result.version)
        reference = row.metrics["validation"]["p_abnormal_histogram"]
        drift = version_drift(row.name, row.version, row.metrics, reference, {})
        assert drift.reference_recordings == row.metrics["validation"]["n"] and drift.psi == 0.0
