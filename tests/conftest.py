"""Fixtures shared by every test: settings, the real data sets, a fresh Postgres database, Azurite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecg_shared.settings import get_settings


def _reset_settings() -> None:
    get_settings.cache_clear()


@pytest.fixture(scope="session", autouse=True)
def training_cache_dir(tmp_path_factory) -> Iterator[Path]:
    """The training workers' cache of cleaned recordings (ECG_TRAINING_CACHE_DIR): a folder of this test run."""
    path = tmp_path_factory.mktemp("training-cache")
    previous = os.environ.get("ECG_TRAINING_CACHE_DIR")
    os.environ["ECG_TRAINING_CACHE_DIR"] = str(path)
    _reset_settings()
    yield path
    if previous is None:
        os.environ.pop("ECG_TRAINING_CACHE_DIR", None)
    else:
        os.environ["ECG_TRAINING_CACHE_DIR"] = previous
    _reset_settings()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = get_settings().data_dir
    if not path.is_dir():
        pytest.skip(
            f"data sets not found at {path}: set ECG_DATA_DIR to the folder holding cinc2017/, ptbxl/, wellnest/"
        )
    return path


@pytest.fixture(scope="session")
def wellnest_sample(data_dir: Path) -> Path:
    path = data_dir / "wellnest" / "sample-10s.raw"
    if not path.is_file():
        pytest.skip(f"real Wellnest recording missing: {path}")
    return path


@pytest.fixture(scope="session")
def formats_dir(data_dir: Path) -> Path:
    """The real clinical-format sample files (GE MUSE, Philips, HL7 aECG, DICOM, SCP-ECG, EDF, ISHNE)."""
    path = data_dir / "formats"
    if not path.is_dir():
        pytest.skip(f"clinical-format samples not found at {path} (see PROVENANCE.md there)")
    return path


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database migrated to head, exported as ECG_DATABASE_URL for this process and its children."""
    from tests.support.database import create_test_database, drop_test_database

    url = create_test_database()
    previous = os.environ.get("ECG_DATABASE_URL")
    os.environ["ECG_DATABASE_URL"] = url
    _reset_settings()
    yield url
    if previous is None:
        os.environ.pop("ECG_DATABASE_URL", None)
    else:
        os.environ["ECG_DATABASE_URL"] = previous
    _reset_settings()
    drop_test_database(url)


@pytest.fixture()
def db_session(database_url: str):
    from ecg_shared.db import session_scope

    with session_scope(database_url) as session:
        yield session


@pytest.fixture(scope="session")
def azurite() -> Iterator:
    """A real Azurite blob service on a free port; the artifact store points at it for the whole run."""
    from tests.support.azurite import start_azurite

    emulator = start_azurite()
    previous = os.environ.get("ECG_ARTIFACT_CONNECTION_STRING")
    os.environ["ECG_ARTIFACT_CONNECTION_STRING"] = emulator.connection_string
    _reset_settings()
    yield emulator
    if previous is None:
        os.environ.pop("ECG_ARTIFACT_CONNECTION_STRING", None)
    else:
        os.environ["ECG_ARTIFACT_CONNECTION_STRING"] = previous
    _reset_settings()
    emulator.stop()
