"""Azurite (the Azure Storage emulator, installed by ``make install`` from package.json) on a free port."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ecg_shared.settings import AZURITE_ACCOUNT_KEY, REPO_ROOT
from tests.support.ports import free_port, wait_for_port

AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"


@dataclass
class Azurite:
    port: int
    process: subprocess.Popen
    location: Path

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={AZURITE_ACCOUNT_KEY};"
            f"BlobEndpoint={self.account_url};"
        )

    @property
    def account_key(self) -> str:
        return AZURITE_ACCOUNT_KEY

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.location, ignore_errors=True)


def start_azurite() -> Azurite:
    if not AZURITE_BIN.exists():
        raise RuntimeError(f"Azurite is not installed ({AZURITE_BIN} missing): run `make install` (npm ci)")
    port = free_port()
    location = Path(tempfile.mkdtemp(prefix="azurite-"))
    process = subprocess.Popen(
        [
            str(AZURITE_BIN),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(location),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_for_port(port, process=process)
    return Azurite(port, process, location)
