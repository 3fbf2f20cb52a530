"""Fixtures for the training tests: a small real PTB-XL slice in Postgres, a Redis database of our own, and a real
Celery training worker process."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecg_shared.settings import REPO_ROOT
from tests.support.stack import claim_redis_db, redis_base_url

PTBXL_SLICE_SIZE = 60
ECG = str(REPO_ROOT / ".venv" / "bin" / "ecg")


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def store_ptbxl_slice(session, data_dir: Path, dataset: str, n: int = PTBXL_SLICE_SIZE) -> int:
    """The first ``n`` PTB-XL records (about half Normal, half Abnormal) stored as ``dataset``."""
    from ecg_shared.db.store import StoreItem, content_hash, store_recordings
    from ecg_shared.formats import read_ecg

    headers = sorted((data_dir / "ptbxl").glob("*.hea"))[:n]
    items = []
    for header in headers:
        record = read_ecg(header)
        digest = content_hash(header.read_bytes() + header.with_suffix(".dat").read_bytes())
        items.append(StoreItem(record, header.with_suffix("").as_uri(), digest, digest))
    store_recordings(session, dataset, items)
    session.commit()
    return len(items)


@pytest.fixture(scope="session")
def ptbxl_slice(data_dir: Path, database_url: str) -> str:
    """Dataset name of a 60-record real PTB-XL slice in the test database."""
    from ecg_shared.db import session_scope

    dataset = "ptbxl-slice"
    with session_scope(database_url) as session:
        assert store_ptbxl_slice(session, data_dir, dataset) == PTBXL_SLICE_SIZE
    return dataset


@pytest.fixture(scope="session")
def training_env(database_url: str, azurite, training_cache_dir: Path) -> Iterator[dict[str, str]]:
    """Environment of the worker and of ``ecg`` subprocesses: test database, Azurite, a Redis database claimed for
    these tests alone (another suite's stack may be running workers on the others)."""
    claim = claim_redis_db()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECG_")}
    env.update(
        ECG_DATABASE_URL=database_url,
        ECG_ARTIFACT_CONNECTION_STRING=azurite.connection_string,
        ECG_REDIS_URL=f"{redis_base_url()}/{claim.index}",
        ECG_TRAINING_HEARTBEAT_S="0.5",
        ECG_TRAINING_CACHE_DIR=str(training_cache_dir),
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
    )
    yield env
    claim.release()


def start_training_worker(name: str, env: dict[str, str]):
    """A real ``celery -A ecg_training.worker`` process on the training queue, with a unique node name."""
    from tests.support.processes import start_process

    argv = ["celery", "-A", "ecg_training.worker", "worker", "-Q", "training", "--concurrency", "1"]
    argv += ["--loglevel", "INFO", "--without-gossip", "--without-mingle", "-n", f"{unique_name(name)}@%h"]
    return start_process(unique_name(name), argv, env=env)


@pytest.fixture(scope="module")
def training_worker(training_env):
    worker = start_training_worker("training-worker", training_env)
    yield worker
    worker.stop()
