"""Ingestion fixtures: real Azurite containers holding real recordings, SAS tokens generated against Azurite."""

from __future__ import annotations

import csv
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ecg_ingestion.storage import BlobSource
from ecg_ingestion.upload import upload_dataset
from ecg_shared.jobs.ingestion import StorageCredential
from ecg_shared.settings import get_settings

ACCOUNT = "devstoreaccount1"


def make_sas(azurite, container: str, expires_in: timedelta = timedelta(hours=1), key: str | None = None) -> str:
    """A real container SAS token (read + list), signed with the emulator's key (or ``key``)."""
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    now = datetime.now(UTC)
    return generate_container_sas(
        ACCOUNT,
        container,
        account_key=key or azurite.account_key,
        permission=ContainerSasPermissions(read=True, list=True),
        start=now - timedelta(hours=2),
        expiry=now + expires_in,
    )


def connection_source(azurite, container: str) -> BlobSource:
    return BlobSource(azurite.account_url, container, StorageCredential(connection_string=azurite.connection_string))


def unique_name(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def reference_labels(data_dir: Path) -> dict[str, str]:
    with open(data_dir / "cinc2017" / "REFERENCE.csv", newline="") as handle:
        return {row[0]: row[1] for row in csv.reader(handle)}


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def cinc_container(azurite, data_dir, database_url) -> str:
    """20 real CinC 2017 records (.hea + .mat blobs) and manifest.xlsx, uploaded by `ecg dataset upload`'s code."""
    container = unique_name("cinc")
    summary = upload_dataset(data_dir / "cinc2017", connection_source(azurite, container), "wfdb", limit=20)
    assert summary.uploaded == 20 and not summary.failures
    return container


@pytest.fixture()
def ingest_settings(monkeypatch):
    """Set ECG_ settings for this test (and its subprocesses): ``ingest_settings(INGEST_BATCH_SIZE=5)``."""

    def apply(**values) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"ECG_{key}", str(value))
        get_settings.cache_clear()

    yield apply
    get_settings.cache_clear()


@pytest.fixture()
def cli_env(azurite, database_url) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECG_INGEST_")}
    env.update(ECG_DATABASE_URL=database_url, PYTHONUNBUFFERED="1")
    return env
