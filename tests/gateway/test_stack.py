"""tests/support/stack.py: the Procfile is parsed and its commands run as real processes."""

from __future__ import annotations

import httpx
import pytest

from tests.support.stack import expand_command, read_procfile, start_stack


def test_procfile_names_every_process_of_the_contract():
    entries = read_procfile()
    assert list(entries) == ["azurite", "inference", "gateway", "ingestion-worker", "training-worker"]
    assert entries["gateway"].startswith("python -m ecg_gateway ")
    assert entries["inference"].startswith("python -m ecg_inference ")
    assert "-Q ingestion" in entries["ingestion-worker"]
    assert "-Q training" in entries["training-worker"]


def test_variables_expand_like_the_shell(monkeypatch):
    monkeypatch.delenv("GATEWAY_PORT", raising=False)
    command = "uvicorn ecg_gateway.app:app --host ${GATEWAY_HOST:-0.0.0.0} --port ${GATEWAY_PORT:-8000}"
    assert expand_command(command, {}) == ["uvicorn", "ecg_gateway.app:app", "--host", "0.0.0.0", "--port", "8000"]
    assert expand_command(command, {"GATEWAY_PORT": "1234"})[-1] == "1234"
    with pytest.raises(KeyError, match="NEEDED"):
        expand_command("run $NEEDED", {})
    with pytest.raises(ValueError, match="shell operators"):
        expand_command("a && b", {})


def test_procfile_azurite_runs_on_a_free_port_and_stops(database_url):
    with start_stack(["azurite"], database_url=database_url) as stack:
        assert stack.port("azurite") not in (10000,)
        response = httpx.get(stack.url("azurite") + "/devstoreaccount1?comp=list", timeout=5)
        assert response.status_code in (200, 403)  # the emulator answers (unsigned requests are refused)
        assert "devstoreaccount1" in stack.env["ECG_ARTIFACT_CONNECTION_STRING"]
        assert stack.env["ECG_REDIS_URL"].rsplit("/", 1)[1] != "0"
        process = stack["azurite"]
    assert not process.alive()


def test_procfile_azurite_logs_no_sas_signature(database_url):
    """Azurite's access log would hold every request's URL, SAS signature included: the Procfile runs it silent."""
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import ContainerClient, ContainerSasPermissions, generate_container_sas

    from tests.support.azurite import ACCOUNT

    with start_stack(["azurite"], database_url=database_url) as stack:
        account_url = f"{stack.url('azurite')}/{ACCOUNT}"
        ContainerClient.from_connection_string(stack.env["ECG_ARTIFACT_CONNECTION_STRING"], "signed").create_container()
        sas = generate_container_sas(
            ACCOUNT,
            "signed",
            account_key=stack.env["ECG_ARTIFACT_CONNECTION_STRING"].split("AccountKey=")[1].split(";")[0],
            permission=ContainerSasPermissions(read=True, list=True),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        listed = httpx.get(f"{account_url}/signed?restype=container&comp=list&{sas}", timeout=10)
        assert listed.status_code == 200, listed.text
        azurite = stack["azurite"]
    log = azurite.log()  # read once it stopped: an access log line is written after the answer
    signature = sas.split("sig=")[1].split("&")[0]
    assert "sig=" not in log and signature not in log, log[-2000:]
    assert "Azurite Blob service successfully listens" in log
