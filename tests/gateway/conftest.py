"""Gateway tests run against real processes: the Procfile's inference and gateway entries on free ports, a fresh
Postgres database, Azurite, and two tiny ONNX models registered and promoted in the registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.inference.onnx_models import rhythm_metadata, tiny_model, twelve_lead_metadata
from tests.support.stack import Stack, start_stack

API_KEY = "gateway-test-key-0123456789"
# A Fernet key: queued ingestion jobs keep their storage credential encrypted with it.
SECRET_KEY = "pT0H4M3i3FJ0ZJ2mTQ2Vd4vtuHnH6ZrUPz2m8E1Jc0E="


@pytest.fixture(scope="session")
def active_models(database_url, azurite) -> list[tuple[str, int]]:
    """rhythm-1lead and normal-12lead, registered (artifacts in Azurite) and promoted."""
    from ecg_shared import registry
    from ecg_shared.db import session_scope

    promoted = []
    with session_scope(database_url) as session:
        for metadata in (rhythm_metadata(), twelve_lead_metadata()):
            row = registry.register_version(
                session,
                metadata,
                tiny_model(metadata),
                metrics={"macro_f1": 0.5},
                model_card={"intended_use": "tests only", "data": "none"},
            )
            registry.promote(session, row.name, row.version)
            promoted.append((row.name, row.version))
    return promoted


@pytest.fixture(scope="session")
def stack(database_url, azurite, active_models) -> Iterator[Stack]:
    """inference + gateway, started from the Procfile, the gateway pointed at this inference service."""
    with start_stack(
        ["inference", "gateway"],
        database_url=database_url,
        artifact_connection_string=azurite.connection_string,
        api_key=API_KEY,
        env={
            "ECG_MODEL_POLL_INTERVAL_S": "1",
            "ECG_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
            "ECG_SECRET_KEY": SECRET_KEY,
        },
    ) as running:
        yield running


@pytest.fixture(scope="session")
def gateway_url(stack: Stack) -> str:
    return stack.url("gateway")
