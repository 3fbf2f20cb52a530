"""Fixtures for the inference service: tiny ONNX models in a registry of their own, and the service as a process."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.inference.onnx_models import rhythm_metadata, tiny_model, twelve_lead_metadata
from tests.support.database import create_test_database, drop_test_database
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess, start_process


def register_and_promote(database_url: str, connection_string: str, metadata, onnx_bytes: bytes) -> int:
    from ecg_shared.artifacts import ArtifactStore
    from ecg_shared.db import session_scope
    from ecg_shared.registry import promote, register_version

    with session_scope(database_url) as session:
        row = register_version(session, metadata, onnx_bytes, store=ArtifactStore(connection_string=connection_string))
        promote(session, row.name, row.version)
        return row.version


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, bytes]:
    """name -> ONNX bytes of the two tiny models (seed 0) that the registry service serves."""
    return {m.name: tiny_model(m, seed=0) for m in (rhythm_metadata(), twelve_lead_metadata())}


def start_inference(name: str, database_url: str, connection_string: str, **env: str) -> ManagedProcess:
    port = free_port()
    settings = {
        "ECG_DATABASE_URL": database_url,
        "ECG_ARTIFACT_CONNECTION_STRING": connection_string,
        "ECG_INFERENCE_MODEL_SOURCE": "registry",
        "ECG_MODEL_POLL_INTERVAL_S": "0.5",
        **env,
    }
    return start_process(
        name, ["python", "-m", "ecg_inference", "--host", "127.0.0.1", "--port", str(port)], env=settings, port=port
    )


@pytest.fixture(scope="session")
def inference_registry(azurite, tiny_models) -> Iterator[str]:
    """A database of its own (other suites register models too) holding the tiny models, promoted."""
    url = create_test_database()
    for metadata in (rhythm_metadata(), twelve_lead_metadata()):
        register_and_promote(url, azurite.connection_string, metadata, tiny_models[metadata.name])
    yield url
    drop_test_database(url)


@pytest.fixture(scope="session")
def inference_service(inference_registry, azurite) -> Iterator[ManagedProcess]:
    # Batches of up to 64 windows (CPU default: 1) and a 20 ms wait, so concurrent requests really share calls.
    service = start_inference(
        "inference", inference_registry, azurite.connection_string, ECG_BATCH_WAIT_MS="20", ECG_BATCH_MAX_SIZE="64"
    )
    yield service
    service.stop()


@pytest.fixture()
def client(inference_service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=inference_service.url, timeout=60) as http:
        yield http
