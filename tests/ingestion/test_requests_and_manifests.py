"""Job requests (validation, secrets), manifests (xlsx/csv parsing) and planning, without storage."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from ecg_ingestion.manifest import ManifestError, read_manifest, write_manifest_xlsx
from ecg_ingestion.plan import BlobInfo, listing_prefix, plan_manifest, plan_prefix
from ecg_ingestion.storage import BlobSource
from ecg_shared.jobs.ingestion import (
    IngestionJobRequest,
    ManifestRow,
    SecretKeyMissing,
    StorageCredential,
    create_ingestion_job,
    ingestion_job_view,
    job_credential,
    redact,
)

AZURITE = "http://127.0.0.1:10000/devstoreaccount1"
SAS = (
    "sv=2025-01-05&st=2026-01-01T00%3A00%3A00Z&se=2030-01-01T00%3A00%3A00Z&sr=c&sp=rl&sig=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D"
)


def test_account_url_carrying_a_sas_is_split_and_the_token_is_hidden():
    request = IngestionJobRequest(dataset="d", container="ecgs", account_url=f"{AZURITE}?{SAS}", prefix="")
    assert request.account_url == AZURITE
    assert request.sas_token.get_secret_value() == SAS
    assert "c2VjcmV0" not in repr(request) and "c2VjcmV0" not in str(request.spec())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "credentials missing"),
        ({"account_url": AZURITE}, "credentials missing"),
        ({"account_url": "ftp://x", "sas_token": SAS}, "account_url must be an http(s) URL"),
        ({"connection_string": "AccountKey=abc"}, "not a valid Azure Storage connection string"),
        ({"account_url": AZURITE, "sas_token": SAS, "manifest": "m.xlsx", "prefix": "a/"}, "not manifest and prefix"),
        ({"account_url": AZURITE, "sas_token": SAS, "manifest": "m.json"}, "manifest must be an .xlsx or .csv blob"),
        ({"account_url": AZURITE, "sas_token": SAS, "rows": []}, "rows is empty"),
        ({"account_url": AZURITE, "sas_token": SAS, "manifest": f"{AZURITE}/c/m.xlsx?{SAS}&x=.csv"}, "not a URL"),
        ({"account_url": AZURITE, "sas_token": SAS, "rows": [{"blob": f"{AZURITE}/c/a.hea?{SAS}"}]}, "a SAS token?"),
        ({"account_url": AZURITE, "sas_token": SAS, "format": "mp3"}, "Input should be"),
    ],
)
def test_bad_requests_name_the_problem(fields, message):
    with pytest.raises(ValidationError) as caught:
        IngestionJobRequest(dataset="d", container="ecgs", **fields)
    assert message in str(caught.value)


def test_container_and_dataset_names_are_checked():
    with pytest.raises(ValidationError, match="container"):
        IngestionJobRequest(dataset="d", container="Bad_Name", account_url=AZURITE, sas_token=SAS)
    with pytest.raises(ValidationError, match="dataset"):
        IngestionJobRequest(dataset="../etc", container="ecgs", account_url=AZURITE, sas_token=SAS)


def test_queued_job_needs_a_secret_key_and_keeps_the_credential_encrypted(db_session, ingest_settings):
    request = IngestionJobRequest(dataset="d", container="ecgs", account_url=AZURITE, sas_token=SAS, prefix="")
    ingest_settings(SECRET_KEY="")
    with pytest.raises(SecretKeyMissing, match="ECG_SECRET_KEY"):
        create_ingestion_job(db_session, request)
    ingest_settings(SECRET_KEY="not a fernet key")
    with pytest.raises(SecretKeyMissing, match="not a Fernet key"):
        create_ingestion_job(db_session, request)

    ingest_settings(SECRET_KEY=Fernet.generate_key().decode())
    job = create_ingestion_job(db_session, request)
    assert b"c2VjcmV0" not in job.credential_encrypted and b"sig=" not in job.credential_encrypted
    assert job_credential(job).sas_token.get_secret_value() == SAS
    assert "c2VjcmV0" not in ingestion_job_view(job).model_dump_json()

    foreground = create_ingestion_job(db_session, request, keep_credential=False)
    assert foreground.credential_encrypted is None


def test_redact_removes_sas_fields_and_account_keys():
    text = redact(f"GET {AZURITE}/c/b?{SAS} failed; AccountKey=abc/def==;BlobEndpoint=x response=ok")
    assert "c2VjcmV0" not in text and "abc/def" not in text and "response=ok" in text


def test_xlsx_manifest_round_trip_with_metadata_and_sheet_choice():
    rows = [
        ManifestRow(blob="a/1.hea", label="N", metadata={"age": 61, "site": "north"}),
        ManifestRow(blob="a/2", label=None, metadata={"age": 7}),
    ]
    data = write_manifest_xlsx(rows, blob_column="Blob Name", label_column="Dx")
    back = read_manifest(data, "m.xlsx", sheet="recordings", blob_column="blob name", label_column="DX")
    assert back == rows
    with pytest.raises(ManifestError, match="no sheet 'Sheet9'; sheets: recordings"):
        read_manifest(data, "m.xlsx", sheet="Sheet9", blob_column="Blob Name")
    with pytest.raises(ManifestError, match="not a readable Excel workbook"):
        read_manifest(b"PK\x03\x04 not really", "m.xlsx")


def test_csv_manifest_semicolons_and_missing_cells():
    data = "\ufeffBlob;Label;Ward\nx.hea;A;3\ny.hea;;\n".encode()
    rows = read_manifest(data, "m.csv")
    assert rows == [ManifestRow(blob="x.hea", label="A", metadata={"Ward": "3"}), ManifestRow(blob="y.hea")]
    with pytest.raises(ManifestError, match="row 3: the 'blob' cell is empty"):
        read_manifest(b"blob,label\nx,N\n,A\n", "m.csv")
    with pytest.raises(ManifestError, match="not UTF-8"):
        read_manifest(b"blob\n\xff\xfe", "m.csv")


def _listing(*names: str) -> dict[str, BlobInfo]:
    return {name: BlobInfo(name, f'"0x{i}"') for i, name in enumerate(names)}


def test_manifest_plan_pairs_wfdb_blobs_and_dedupes():
    source = BlobSource(AZURITE, "ecgs", StorageCredential(sas_token=SAS))
    listing = _listing("r/A1.hea", "r/A1.mat", "r/B2.hea", "r/B2.dat", "r/lonely.hea", "dev/u1")
    rows = [
        ManifestRow(blob="r/A1.hea", label="N"),
        ManifestRow(blob=f"{AZURITE}/ecgs/r/B2.hea"),
        ManifestRow(blob="r/A1.hea"),
        ManifestRow(blob="r/lonely.hea"),
        ManifestRow(blob="dev/u1", label="A"),
        ManifestRow(blob=f"{AZURITE}/other/x"),
    ]
    plan = plan_manifest(rows, listing, source)
    assert [(i.name, [p.name for p in i.parts], i.source_version) for i in plan.items] == [
        ("r/A1.hea", ["r/A1.hea", "r/A1.mat"], "0x0,0x1"),
        ("r/B2.hea", ["r/B2.hea", "r/B2.dat"], "0x2,0x3"),
        ("dev/u1", ["dev/u1"], "0x5"),
    ]
    assert plan.items[0].source_uri == f"{AZURITE}/ecgs/r/A1.hea"
    assert plan.duplicates == 1
    assert [blob for blob, _ in plan.failures] == ["r/lonely.hea", f"{AZURITE}/other/x"]
    assert listing_prefix(["r/A1.hea"]) == "r/A1" and listing_prefix(["r/A1.hea", "r/B2.hea"]) == "r/"


def test_prefix_plan_skips_side_files_and_applies_reference_labels():
    source = BlobSource(AZURITE, "ecgs", StorageCredential(sas_token=SAS))
    listing = _listing(
        "s/A1.hea", "s/A1.mat", "s/REFERENCE.csv", "s/RECORDS", "s/manifest.xlsx", "s/orphan.dat", "s/dev"
    )
    plan = plan_prefix(listing, source, {"s": {"A1": "O"}})
    assert [(i.name, i.label) for i in plan.items] == [("s/A1.hea", "O"), ("s/dev", None)]
    assert plan.failures == [("s/orphan.dat", "WFDB samples without their .hea header")]


def test_storage_proxy_comes_from_the_environment_once_and_no_proxy_exempts_hosts(monkeypatch):
    from ecg_ingestion.storage import environment_proxies

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert environment_proxies("https://acct.blob.core.windows.net") == {}
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    assert environment_proxies("https://acct.blob.core.windows.net") == {"https": "http://proxy.example:3128"}
    assert environment_proxies("http://127.0.0.1:10000/devstoreaccount1") == {}  # exempt, and not https
    source = BlobSource("https://acct.blob.core.windows.net", "ecgs", StorageCredential(sas_token=SAS))
    assert source.proxy() == "http://proxy.example:3128"
