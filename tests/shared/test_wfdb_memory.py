"""WFDB records decoded in memory (ecg_shared.formats.wfdb_memory) give exactly what ``wfdb.rdrecord`` gives."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecg_shared.formats import EcgFormatError, read_ecg, read_wfdb_files, zip_wfdb_record
from ecg_shared.formats.wfdb_format import _read_files, _to_record, reference_label


def _through_rdrecord(header: Path):
    """The reference: wfdb.rdrecord on the files, turned into a Record the same way."""
    base = header.with_suffix("")
    return _to_record(_read_files(base), str(base), fallback_label=reference_label(base))


def _files(folder: Path, name: str) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.stem == name}


def _assert_same(record, reference) -> None:
    np.testing.assert_array_equal(record.signal, reference.signal)
    assert record.sampling_rate == reference.sampling_rate
    assert record.lead_names == reference.lead_names


@pytest.mark.parametrize(("dataset", "step"), [("cinc2017", 40), ("ptbxl", 8)])
def test_real_records_match_rdrecord(data_dir, dataset, step):
    headers = sorted((data_dir / dataset).glob("*.hea"))[::step]
    assert len(headers) > 90
    for header in headers:
        reference = _through_rdrecord(header)
        from_path = read_ecg(header)
        _assert_same(from_path, reference)
        assert from_path.metadata == reference.metadata  # label (REFERENCE.csv or #Dx), comments, record name
        _assert_same(read_ecg(zip_wfdb_record(header)), reference)


@pytest.mark.parametrize("fmt", ["16", "212", "80", "24", "32"])  # the formats wfdb.wrsamp writes
def test_every_plain_sample_format_matches_rdrecord(tmp_path, fmt):
    rng = np.random.default_rng(int(fmt))
    bits = {"8": 7, "80": 7, "212": 11, "310": 9, "311": 9}.get(fmt, 12)
    digital = np.cumsum(rng.integers(-3, 4, size=(1001, 3)), axis=0).clip(-(2**bits) + 2, 2**bits - 2)
    wfdb.wrsamp(
        "rec",
        fs=250,
        units=["mV", "uV", "mV"],
        sig_name=["I", "II", "V1"],
        d_signal=digital.astype(np.int32),
        fmt=[fmt] * 3,
        adc_gain=[200.0, 1.5, 1000.0],
        baseline=[0, 12, -5],
        comments=["Dx: Normal", "age: 61"],
        write_dir=str(tmp_path),
    )
    reference = _through_rdrecord(tmp_path / "rec.hea")
    record = read_wfdb_files(_files(tmp_path, "rec"))
    _assert_same(record, reference)
    assert record.label == "Normal"
    assert record.metadata["age"] == "61"
    np.testing.assert_allclose(record.signal[:, 1], (digital[:, 1] - 12) / 1.5 * 1e-3, rtol=1e-6)  # uV -> mV


@pytest.mark.parametrize(
    ("fmt", "encode"),
    [
        ("61", lambda d: d.astype(">i2").tobytes()),  # big-endian 16 bit
        ("160", lambda d: (d + 32768).astype("<u2").tobytes()),  # offset binary 16 bit
        ("8", lambda d: np.diff(d, axis=0, prepend=d[:1]).astype("<i1").tobytes()),  # first differences
    ],
)
def test_hand_written_sample_formats_match_rdrecord(tmp_path, fmt, encode):
    digital = np.cumsum(np.random.default_rng(8).integers(-3, 4, size=(400, 2)), axis=0)
    (tmp_path / "rec.dat").write_bytes(encode(digital))
    init = digital[0] if fmt == "8" else [0, 0]
    (tmp_path / "rec.hea").write_text(
        f"rec 2 500 400\nrec.dat {fmt} 100 12 0 {init[0]} 0 0 I\nrec.dat {fmt} 50(3) 12 0 {init[1]} 0 0 II\n"
    )
    reference = _through_rdrecord(tmp_path / "rec.hea")
    record = read_wfdb_files(_files(tmp_path, "rec"))
    _assert_same(record, reference)
    np.testing.assert_allclose(record.signal[:, 1], (digital[:, 1] - 3) / 50, rtol=1e-6)


def test_signals_in_two_files_with_byte_offset_and_no_length(tmp_path):
    """A header in the older style: two signal files, a byte offset before the samples, and no signal length."""
    first = np.arange(-500, 500, dtype="<i2").reshape(500, 2)
    second = (np.arange(500, dtype="<i2") * 3)[:, None]
    (tmp_path / "a.dat").write_bytes(b"\0" * 24 + first.tobytes())
    (tmp_path / "b.dat").write_bytes(second.tobytes())
    (tmp_path / "rec.hea").write_text(
        "rec 3 360\na.dat 16+24 200 12 0 0 0 0 MLII\na.dat 16+24 100(5) 12 0 0 0 0 V5\nb.dat 16 400/uV 16 0 0 0 0 V1\n"
    )
    reference = _through_rdrecord(tmp_path / "rec.hea")
    record = read_wfdb_files(_files(tmp_path, "a") | _files(tmp_path, "b") | _files(tmp_path, "rec"))
    _assert_same(record, reference)
    assert record.n_samples == 500
    assert record.signal[1, 1] == pytest.approx((first[1, 1] - 5) / 100)


def test_records_outside_the_in_memory_path_still_read_through_rdrecord(tmp_path):
    """Two samples per frame on one signal: wfdb_memory declines, and rdrecord (on files) reads it."""
    (tmp_path / "rec.dat").write_bytes(np.arange(300, dtype="<i2").tobytes())
    (tmp_path / "rec.hea").write_text("rec 2 100 100\nrec.dat 16 200 16 0 0 0 0 I\nrec.dat 16x2 200 16 0 0 0 0 II\n")
    reference = _through_rdrecord(tmp_path / "rec.hea")
    _assert_same(read_wfdb_files(_files(tmp_path, "rec")), reference)


def test_missing_signal_file_is_named():
    with pytest.raises(EcgFormatError, match=r"signal file 'gone\.dat'"):
        read_wfdb_files({"rec.hea": b"rec 1 100 10\ngone.dat 16 200 16 0 0 0 0 I\n"})


def test_truncated_signal_file_is_a_format_error():
    header = b"rec 1 100 1000\nrec.dat 16 200 16 0 0 0 0 I\n"
    with pytest.raises(EcgFormatError, match="cannot read WFDB record"):
        read_wfdb_files({"rec.hea": header, "rec.dat": b"\1\0" * 10})


def test_header_naming_a_path_outside_the_record_is_refused():
    header = b"rec 1 100 4\n../../etc/rec.dat 16 200 16 0 0 0 0 I\n"
    with pytest.raises(EcgFormatError, match="invalid syntax in signal line"):
        read_wfdb_files({"rec.hea": header, "rec.dat": np.array([200, 400, 0, -200], "<i2").tobytes()})


def test_reference_csv_in_a_zip_gives_the_label(data_dir):
    header = data_dir / "cinc2017" / "A00004.hea"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("A00004.hea", header.read_bytes())
        archive.writestr("A00004.mat", header.with_suffix(".mat").read_bytes())
        archive.writestr("REFERENCE.csv", "A00003,N\nA00004,A\n")
    assert read_ecg(buffer.getvalue()).label == "A"
