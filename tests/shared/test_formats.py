"""WFDB (plain and zipped), CSV and NumPy readers, format detection and lead names."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from ecg_shared.formats import EcgFormatError, detect_format, normalise_lead_name, read_ecg, write_wellnest


def test_cinc2017_record_has_shape_rate_and_label_from_reference_csv(data_dir):
    record = read_ecg(data_dir / "cinc2017" / "A00001.hea")
    assert record.signal.shape == (9000, 1)
    assert record.sampling_rate == 300.0
    assert record.label == "N"
    assert record.format == "wfdb"
    assert record.signal.dtype == np.float32
    assert 0.3 < np.ptp(record.signal) < 5  # millivolts


@pytest.mark.parametrize("name, label", [("A00022", "~"), ("A00004", "A"), ("A00008", "O")])
def test_cinc2017_labels(data_dir, name, label):
    reference = dict(line.split(",") for line in (data_dir / "cinc2017" / "REFERENCE.csv").read_text().split())
    assert reference[name] == label
    assert read_ecg(data_dir / "cinc2017" / f"{name}.mat").label == label


def test_ptbxl_record_has_twelve_leads_and_dx_label(data_dir):
    record = read_ecg(data_dir / "ptbxl" / "00001_lr.hea")
    assert record.signal.shape == (1000, 12)
    assert record.sampling_rate == 100.0
    assert record.lead_names[3:6] == ["aVR", "aVL", "aVF"]  # AVR/AVL/AVF normalised
    assert record.label == "Normal"
    assert record.metadata["age"] == "56"
    assert "Dx: Normal" in record.metadata["comments"]


def test_ptbxl_abnormal_label(data_dir):
    labels = {read_ecg(p).label for p in sorted((data_dir / "ptbxl").glob("*.hea"))[:40]}
    assert labels == {"Normal", "Abnormal"}


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_wfdb_zip_is_detected_and_read(data_dir):
    folder = data_dir / "ptbxl"
    blob = _zip(
        {
            "rec/00001_lr.hea": (folder / "00001_lr.hea").read_bytes(),
            "rec/00001_lr.dat": (folder / "00001_lr.dat").read_bytes(),
        }
    )
    assert detect_format(blob) == "wfdb"
    record = read_ecg(blob)
    np.testing.assert_array_equal(record.signal, read_ecg(folder / "00001_lr.hea").signal)
    assert record.label == "Normal"


def test_wfdb_header_alone_is_a_clear_error(data_dir):
    with pytest.raises(EcgFormatError, match="header alone"):
        read_ecg((data_dir / "ptbxl" / "00001_lr.hea").read_bytes())


def test_wfdb_zip_without_data_file_is_a_clear_error(data_dir):
    blob = _zip({"00001_lr.hea": (data_dir / "ptbxl" / "00001_lr.hea").read_bytes()})
    with pytest.raises(EcgFormatError, match="00001_lr"):
        read_ecg(blob)


def test_missing_wfdb_file():
    with pytest.raises(EcgFormatError, match="not found"):
        read_ecg("/nonexistent/record.hea")


def test_csv_with_rate_in_header_comment():
    text = "# fs=250\nI,II,avr\n" + "\n".join(f"{i * 0.01},{i * 0.02},{-i * 0.015}" for i in range(1000))
    record = read_ecg(text.encode())
    assert record.format == "csv"
    assert record.sampling_rate == 250
    assert record.lead_names == ["I", "II", "aVR"]
    assert record.signal.shape == (1000, 3)
    assert record.lead("II")[10] == pytest.approx(0.2)


def test_csv_rate_from_hint_and_microvolts():
    record = read_ecg(b"MLII\n100\n200\n300\n", format="csv", fs=360, units="uV")
    assert record.lead_names == ["MLII"]
    np.testing.assert_allclose(record.signal[:, 0], [0.1, 0.2, 0.3])


def test_csv_rate_from_time_column():
    rows = "\n".join(f"{i / 500:.4f},{np.sin(i / 50):.5f}" for i in range(100))
    assert read_ecg(f"time,II\n{rows}".encode()).sampling_rate == pytest.approx(500)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"I,II\n1,2\n3,4\n", "sampling rate"),
        (b"# fs=100\nI,II\n1,x\n", "non-numeric"),
        (b"# fs=100\nI,II\n1,2,3\n", "columns"),
        (b"# fs=100\nI,II\n", "at least one row"),
        (b"# fs=100\n0.1,0.2\n0.3,0.4\n", "header row of lead names"),
    ],
)
def test_csv_errors_name_the_problem(data, message):
    with pytest.raises(EcgFormatError, match=message):
        read_ecg(data, format="csv")


def test_npy_lead_major_is_transposed_and_needs_a_rate():
    array = np.random.default_rng(0).normal(size=(12, 3000)).astype(np.float32)
    buffer = io.BytesIO()
    np.save(buffer, array)
    with pytest.raises(EcgFormatError, match="sampling rate"):
        read_ecg(buffer.getvalue())
    record = read_ecg(buffer.getvalue(), fs=500)
    assert record.signal.shape == (3000, 12)
    assert record.lead_names[1] == "II"


def test_npz_carries_rate_leads_and_label():
    buffer = io.BytesIO()
    np.savez(buffer, signal=np.ones((600, 2)), fs=np.array(200.0), leads=np.array(["i", "V1"]), label=np.array("A"))
    record = read_ecg(buffer.getvalue())
    assert (record.format, record.sampling_rate, record.lead_names, record.label) == ("npz", 200, ["I", "V1"], "A")


def test_detection_of_each_format(wellnest_sample):
    raw = wellnest_sample.read_bytes()
    assert detect_format(raw) == "wellnest"
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((10, 1)))
    assert detect_format(buffer.getvalue()) == "npy"
    assert detect_format(b"I,II\n1,2\n") == "csv"
    with pytest.raises(EcgFormatError, match="unknown ECG format"):
        detect_format(b"\x00\x01\x02 not an ecg")
    with pytest.raises(EcgFormatError, match="empty"):
        read_ecg(b"")


def test_explicit_format_overrides_detection(wellnest_sample):
    with pytest.raises(EcgFormatError):
        read_ecg(wellnest_sample.read_bytes(), format="csv")
    with pytest.raises(EcgFormatError, match="unknown format"):
        read_ecg(b"1,2", format="holter-2000")


def test_file_objects_are_read(wellnest_sample):
    with open(wellnest_sample, "rb") as handle:
        assert read_ecg(handle).signal.shape == (5000, 12)


@pytest.mark.parametrize(
    "spelling, canonical",
    [("AVR", "aVR"), ("avl", "aVL"), ("i", "I"), ("v1", "V1"), ("MLII", "MLII"), (" II ", "II"), ("ECG", "ECG")],
)
def test_lead_names_are_normalised(spelling, canonical):
    assert normalise_lead_name(spelling) == canonical


def test_wellnest_blob_from_ptbxl_reads_back_with_label_free_metadata(data_dir):
    blob = write_wellnest(read_ecg(data_dir / "ptbxl" / "00002_lr.hea"))
    record = read_ecg(blob)
    assert record.format == "wellnest" and record.label is None


def test_zip_wfdb_record_reads_back_as_the_record(data_dir):
    from ecg_shared.formats import zip_wfdb_record

    header = data_dir / "cinc2017" / "A00001.hea"
    record = read_ecg(zip_wfdb_record(header))
    np.testing.assert_array_equal(record.signal, read_ecg(header).signal)
    with pytest.raises(EcgFormatError, match="header not found"):
        zip_wfdb_record(data_dir / "cinc2017" / "NOPE.hea")
