"""One ECG, three formats: the HL7 aECG example, its DICOM and its SCP-ECG conversion (ECG Toolkit) decode to the
same samples, within one quantisation step (2.5 µV in all three files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecg_shared.formats import STANDARD_12_LEADS, read_ecg

SAME_ECG = ("hl7_aecg/Example aECG.xml", "dicom_ecg/Example.dcm", "scp_ecg/Example.scp")
STEP_MV = 0.0025


@pytest.fixture(scope="module")
def records(data_dir: Path) -> dict:
    paths = [data_dir / "formats" / name for name in SAME_ECG]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        pytest.skip(f"cross-format samples missing: {', '.join(missing)}")
    return {name: read_ecg(path) for name, path in zip(SAME_ECG, paths, strict=True)}


def test_the_three_files_are_read_as_three_formats(records):
    assert [record.format for record in records.values()] == ["hl7_aecg", "dicom_ecg", "scp_ecg"]


@pytest.mark.parametrize("other", SAME_ECG[1:])
def test_aecg_dicom_and_scp_decode_to_the_same_samples(records, other):
    reference, record = records[SAME_ECG[0]], records[other]
    assert record.sampling_rate == reference.sampling_rate == 500
    assert record.n_samples == reference.n_samples == 5000
    assert set(STANDARD_12_LEADS) <= set(record.lead_names)
    for lead in STANDARD_12_LEADS:
        difference = np.abs(record.lead(lead).astype(np.float64) - reference.lead(lead))
        assert difference.max() <= STEP_MV + 1e-6, f"{other} lead {lead} differs by {difference.max():.4f} mV"
    assert np.ptp(reference.lead("II")) > 0.5  # a real ECG, not two empty records agreeing
