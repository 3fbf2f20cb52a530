"""Clinical exports in blob storage: a folder of GE MUSE XML files with a CSV manifest, ingested from Azurite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecg_shared.formats import read_ecg
from tests.ingestion.conftest import connection_source, make_sas, unique_name
from tests.ingestion.test_ingestion_jobs import run_job, stored

MUSE_FILES = {"example1.xml": "sinus bradycardia", "example2.xml": "normal", "MUSE_20080710_165457_96000.xml": "normal"}


@pytest.fixture(scope="module")
def muse_dir(data_dir: Path) -> Path:
    folder = data_dir / "formats" / "ge_muse_xml"
    if not all((folder / name).is_file() for name in MUSE_FILES):
        pytest.skip(f"GE MUSE samples missing under {folder}")
    return folder


def test_a_folder_of_muse_exports_with_a_manifest_is_ingested_from_azurite(azurite, muse_dir, database_url):
    container_name = unique_name("muse")
    container = connection_source(azurite, container_name).sync_container()
    container.create_container()
    lines = ["file,diagnosis"]
    for index, (name, label) in enumerate(MUSE_FILES.items()):
        blob = f"exports/2024/ecg-{index:03d}.xml"  # a cart's export names say nothing of the format
        container.upload_blob(blob, (muse_dir / name).read_bytes())
        lines.append(f"{blob},{label}")
    container.upload_blob("exports/manifest.csv", "\n".join(lines).encode())

    dataset = unique_name("muse")
    view = run_job(
        dataset=dataset,
        account_url=azurite.account_url,
        container=container_name,
        sas_token=make_sas(azurite, container_name),
        manifest="exports/manifest.csv",
        blob_column="file",
        label_column="diagnosis",
    )
    assert view.status == "succeeded", view.error
    assert (view.listed, view.stored, view.failed) == (3, 3, 0)

    rows = {row.source_uri.rsplit("/", 1)[1]: row for row in stored(dataset)}
    assert sorted(rows) == ["ecg-000.xml", "ecg-001.xml", "ecg-002.xml"]
    for index, (name, label) in enumerate(MUSE_FILES.items()):
        row = rows[f"ecg-{index:03d}.xml"]
        local = read_ecg(muse_dir / name)
        assert (row.format, row.label) == ("muse_xml", label)
        assert row.lead_names == local.lead_names and len(row.lead_names) == 12
        assert row.metadata_["derived_leads"] == ["III", "aVR", "aVL", "aVF"]
        assert row.sampling_rate == local.sampling_rate and row.n_samples == local.n_samples
        np.testing.assert_array_equal(row.to_record().signal, local.signal)
    assert "159357456" not in repr(rows["ecg-002.xml"].metadata_)  # that file's patient ID
