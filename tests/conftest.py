"""Fixtures shared by every test: settings, the real data sets, a fresh Postgres database, Azurite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ecg_shared.settings import get_settings, overridden_setting


@pytest.fixture(scope="session", autouse=True)
def training_cache_dir(tmp_path_factory) -> Iterator[Path]:
    """The training workers' cache of cleaned recordings (ECG_TRAINING_CACHE_DIR): a folder of this test run."""
    path = tmp_path_factory.mktemp("training-cache")
    with overridden_setting("ECG_TRAINING_CACHE_DIR", str(path)):
        yield path


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
    with overridden_setting("ECG_DATABASE_URL", url):
        yield url
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
    with overridden_setting("ECG_ARTIFACT_CONNECTION_STRING", emulator.connection_string):
        yield emulator
    emulator.stop()
