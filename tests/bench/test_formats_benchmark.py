"""bench.formats on the real sample files: a row per readable file, scaled to a 10 s 12-lead recording (no timing
is asserted: the numbers are the benchmark's, not the test's)."""

from __future__ import annotations

import pytest

from bench.formats import BASELINE, run


def test_every_readable_sample_file_gets_a_row_and_a_ratio_to_wfdb(data_dir):
    if not (data_dir / "formats").is_dir():
        pytest.skip(f"clinical-format samples not found at {data_dir / 'formats'}")
    result = run(quick=True)
    formats = {row["format"] for row in result["rows"]}
    assert {BASELINE, "muse_xml", "philips_xml", "hl7_aecg", "dicom_ecg", "scp_ecg", "edf", "ishne"} <= formats
    for row in result["rows"]:
        assert row["read_ms"] > 0
        expected = row["read_ms"] * 120 / (row["duration_s"] * row["leads"])
        assert row["ms_per_10s_12_lead"] == pytest.approx(expected, rel=0.02, abs=0.011)  # both rounded to 0.01
    assert set(result["ratios"]) == {f"{fmt} / wfdb" for fmt in formats - {BASELINE}}
    rows = {row["file"]: row["format"] for row in result["rows"]}
    assert rows["scp_ecg/62.SCP"] == "scp_ecg (healforce)" and rows["scp_ecg/Example.scp"] == "scp_ecg"
    assert any("ECG_P28.01.ann" in note for note in result["notes"])  # the annotation file is named, not timed
