"""DICOM waveform, SCP-ECG, EDF and ISHNE on the real sample files (ECG_DATA_DIR/formats, see PROVENANCE.md there),
and broken or hostile versions of them: every failure is an EcgFormatError that names the problem."""

from __future__ import annotations

import binascii
import datetime
import io
import json
import logging
import re
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecg_shared.formats import STANDARD_12_LEADS, EcgFormatError, Record, detect_format, read_ecg
from ecg_shared.formats.dicom_ecg import looks_like_dicom, read_dicom_ecg
from ecg_shared.formats.edf import looks_like_edf, read_edf
from ecg_shared.formats.healforce_scp import is_healforce
from ecg_shared.formats.ishne import looks_like_ishne, read_ishne
from ecg_shared.formats.scp_ecg import looks_like_scp, read_scp_ecg
from ecg_shared.heart import heart_rate

# file, reader, recogniser, format, rate (Hz), samples per lead, quantisation step (mV). Facts from PROVENANCE.md.
SAMPLES = [
    ("dicom_ecg/anonymous_ecg.dcm", read_dicom_ecg, looks_like_dicom, "dicom_ecg", 1000, 10000, 0.00125),
    ("dicom_ecg/Example.dcm", read_dicom_ecg, looks_like_dicom, "dicom_ecg", 500, 5000, 0.0025),
    ("scp_ecg/Example.scp", read_scp_ecg, looks_like_scp, "scp_ecg", 500, 5000, 0.0025),
    ("edf/0000050.ECG.edf", read_edf, looks_like_edf, "edf", 800, 37855, 2000 / 65535),
    ("ishne_holter/ECG_P28.01.ecg", read_ishne, looks_like_ishne, "ishne", 1000, 95573, 0.005),
]
READERS = {name: (reader, recognises) for name, reader, recognises, *_ in SAMPLES}
READERS["scp_ecg/62.SCP"] = (read_scp_ecg, looks_like_scp)  # three limb leads: tested on its own below

# What each file says about its patient (and visit, institution, physician): none may reach a record.
PATIENT_FIELDS = {
    "dicom_ecg/anonymous_ecg.dcm": [
        "Anonymous",
        "642341",
        "19710123",
        "13002689",
        "Galliera",
        "03028041970546",
        "2721",
    ],
    "dicom_ecg/Example.dcm": ["Clark", "SBJ-123", "19530508"],
    "scp_ecg/Example.scp": ["Clark", "SBJ-123", "1953"],
    "edf/0000050.ECG.edf": ["0000050", "dd-MMM-yyyy"],
    "scp_ecg/62.SCP": ["00000"],  # section 1's patient ID
    "ishne_holter/ECG_P28.01.ecg": ["ECG_P28.01", "none"],
}


def _bytes(formats_dir: Path, name: str) -> bytes:
    path = formats_dir / name
    if not path.is_file():
        pytest.skip(f"sample {path} missing (see PROVENANCE.md)")
    return path.read_bytes()


@pytest.mark.parametrize("name, reader, recognises, fmt, rate, n_samples, step", SAMPLES, ids=[s[0] for s in SAMPLES])
def test_sample_decodes_with_its_leads_rate_duration_and_a_plausible_lead_ii(
    formats_dir, name, reader, recognises, fmt, rate, n_samples, step
):
    data = _bytes(formats_dir, name)
    assert recognises(data[:4096])
    record = reader(data)
    assert record.format == fmt
    assert record.lead_names == list(STANDARD_12_LEADS)
    assert record.sampling_rate == rate
    assert record.n_samples == n_samples
    assert record.signal.dtype == np.float32 and np.all(np.isfinite(record.signal))
    assert "derived_leads" not in record.metadata  # all twelve are stored in these files
    json.dumps(record.metadata)  # stored with the recording: plain JSON values only
    lead_ii = record.lead("II")
    assert 0.5 < np.ptp(lead_ii) < 15  # millivolts: a QRS, not counts or volts
    bpm = heart_rate(record).bpm
    assert bpm is not None and 40 < bpm < 150
    einthoven = np.abs(lead_ii - record.lead("I") - record.lead("III")).max()
    assert einthoven <= 1.5 * step + 1e-6


@pytest.mark.parametrize("name", sorted(PATIENT_FIELDS))
def test_no_patient_field_reaches_the_record_or_the_logs(formats_dir, name, caplog):
    reader, _ = READERS[name]
    with caplog.at_level(logging.DEBUG):
        record = reader(_bytes(formats_dir, name))
    text = repr(record.metadata)
    for value in PATIENT_FIELDS[name]:
        assert value not in text
        assert value not in caplog.text


@pytest.mark.parametrize("name, fmt", [(s[0], s[3]) for s in SAMPLES])
def test_read_ecg_detects_the_format_by_content(formats_dir, name, fmt):
    data = _bytes(formats_dir, name)
    assert detect_format(data, name="recording.bin") == fmt
    assert read_ecg(data).format == fmt


def test_acquisition_metadata_is_kept(formats_dir):
    dicom = read_dicom_ecg(_bytes(formats_dir, "dicom_ecg/anonymous_ecg.dcm")).metadata
    assert dicom["model"] == "el250" and dicom["multiplex_group"] == "RHYTHM"
    assert dicom["filters"]["lowpass_hz"] == 300 and dicom["recorded_at"] == "2013-01-25T10:59:19"
    assert dicom["representative_beat"]["samples"] == 1200  # the median beat: noted, not read as the rhythm
    scp = read_scp_ecg(_bytes(formats_dir, "scp_ecg/Example.scp")).metadata
    assert scp["model"] == "ELI250" and scp["recorded_at"] == "2002-11-22T09:10:00" and scp["amplitude_nv"] == 2500
    ishne = read_ishne(_bytes(formats_dir, "ishne_holter/ECG_P28.01.ecg")).metadata
    assert ishne["lead_codes"] == list(range(5, 17)) and ishne["resolution_nv"] == [5000] * 12


# -- DICOM -----------------------------------------------------------------------------------------------------------


def _dicom(formats_dir: Path, edit) -> bytes:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(_bytes(formats_dir, "dicom_ecg/anonymous_ecg.dcm")))
    edit(ds)
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def test_dicom_without_waveform_data_is_refused_by_name(formats_dir):
    data = _dicom(formats_dir, lambda ds: delattr(ds, "WaveformSequence"))
    with pytest.raises(EcgFormatError, match="no waveform data"):
        read_dicom_ecg(data)


def test_dicom_with_only_the_median_beat_is_refused(formats_dir):
    def keep_median(ds):
        ds.WaveformSequence = [g for g in ds.WaveformSequence if g.MultiplexGroupLabel != "RHYTHM"]

    with pytest.raises(EcgFormatError, match="only a representative beat"):
        read_dicom_ecg(_dicom(formats_dir, keep_median))


def test_dicom_with_a_median_beat_and_a_pressure_group_is_refused_for_lacking_rhythm(formats_dir):
    def pressure_instead_of_rhythm(ds):
        rhythm = ds.WaveformSequence[0]
        for channel in rhythm.ChannelDefinitionSequence:
            channel.ChannelSourceSequence[0].CodeValue = "2:18948"  # MDC arterial blood pressure, not an ECG lead
            channel.ChannelSourceSequence[0].CodingSchemeDesignator = "MDC"
            channel.ChannelSourceSequence[0].CodeMeaning = "Arterial pressure"
        rhythm.MultiplexGroupLabel = "PRESSURE"

    with pytest.raises(EcgFormatError, match="only a representative beat"):
        read_dicom_ecg(_dicom(formats_dir, pressure_instead_of_rhythm))


def test_dicom_median_beat_first_still_gives_the_rhythm(formats_dir):
    data = _dicom(formats_dir, lambda ds: setattr(ds, "WaveformSequence", list(ds.WaveformSequence)[::-1]))
    record = read_dicom_ecg(data)
    assert record.n_samples == 10000 and record.metadata["multiplex_group"] == "RHYTHM"


def test_dicom_12_lead_stored_as_hemodynamic_with_a_pressure_channel(formats_dir):
    from pydicom.dataset import Dataset

    original = read_dicom_ecg(_bytes(formats_dir, "dicom_ecg/anonymous_ecg.dcm"))

    def as_hemodynamic(ds):
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.9.2.1"
        group = ds.WaveformSequence[0]
        raw = np.frombuffer(group.WaveformData, dtype="<i2").reshape(group.NumberOfWaveformSamples, -1)
        pressure = np.full((raw.shape[0], 1), 120, dtype="<i2")
        group.WaveformData = np.hstack([raw, pressure]).tobytes()
        group.NumberOfWaveformChannels += 1
        channel = Dataset()
        source, units = Dataset(), Dataset()
        source.CodeValue, source.CodingSchemeDesignator, source.CodeMeaning = (
            "2:18948",
            "MDC",
            "Arterial blood pressure",
        )
        units.CodeValue, units.CodingSchemeDesignator, units.CodeMeaning = "mm[Hg]", "UCUM", "mmHg"
        channel.ChannelSourceSequence, channel.ChannelSensitivityUnitsSequence = [source], [units]
        channel.ChannelSensitivity, channel.ChannelBaseline = "1", "0"
        group.ChannelDefinitionSequence.append(channel)

    record = read_dicom_ecg(_dicom(formats_dir, as_hemodynamic))
    assert record.metadata["sop_class"] == "Hemodynamic waveform"
    assert record.lead_names == list(STANDARD_12_LEADS)
    np.testing.assert_array_equal(record.signal, original.signal)


def test_dicom_scale_uses_sensitivity_correction_baseline_and_units(formats_dir):
    original = read_dicom_ecg(_bytes(formats_dir, "dicom_ecg/anonymous_ecg.dcm"))

    def rescale(ds):
        for channel in ds.WaveformSequence[0].ChannelDefinitionSequence:
            channel.ChannelSensitivity = "0.00125"  # the same 1.25 µV, written in mV
            channel.ChannelSensitivityUnitsSequence[0].CodeValue = "mV"
            channel.ChannelSensitivityCorrectionFactor = "2"
            channel.ChannelBaseline = "0.1"  # mV

    record = read_dicom_ecg(_dicom(formats_dir, rescale))
    np.testing.assert_allclose(record.lead("V1"), 2 * original.lead("V1") + 0.1, atol=1e-5)


def test_dicom_trailing_padding_is_dropped(formats_dir):
    def pad(ds):
        group = ds.WaveformSequence[0]
        raw = np.frombuffer(group.WaveformData, dtype="<i2").reshape(group.NumberOfWaveformSamples, -1).copy()
        raw[-100:] = -32768
        group.WaveformData = raw.tobytes()
        group.add_new(0x5400100A, "OW", struct.pack("<h", -32768))  # Waveform Padding Value

    record = read_dicom_ecg(_dicom(formats_dir, pad))
    assert record.n_samples == 9900 and record.metadata["padding"]["trailing_samples_dropped"] == 100


def test_dicom_truncated_waveform_data_is_named(formats_dir):
    def cut(ds):
        group = ds.WaveformSequence[0]
        group.WaveformData = group.WaveformData[: len(group.WaveformData) // 2]

    with pytest.raises(EcgFormatError, match="truncated"):
        read_dicom_ecg(_dicom(formats_dir, cut))


# -- SCP-ECG ---------------------------------------------------------------------------------------------------------


def _scp_sections(data: bytes) -> dict[int, bytes]:
    """Section id -> whole section (header included), from a compliant file's pointers."""
    length = struct.unpack_from("<I", data, 10)[0]
    pointers = [struct.unpack_from("<HII", data, k) for k in range(22, 6 + length, 10)]
    return {sid: data[index - 1 : index - 1 + size] for sid, size, index in pointers if size}


def _scp_file(sections: dict[int, bytes]) -> bytes:
    """A compliant SCP file from sections (headers given, lengths and CRCs recomputed)."""

    def framed(sid: int, section: bytes) -> bytearray:
        out = bytearray(section)
        out[4:8] = struct.pack("<I", len(out))
        out[0:2] = struct.pack("<H", binascii.crc_hqx(bytes(out[2:]), 0xFFFF))
        return out

    ids = sorted(sid for sid in sections if sid)
    body, position = {}, 7 + 16 + 10 * (len(ids) + 1)
    pointers = []
    for sid in ids:
        body[sid] = framed(sid, sections[sid])
        pointers.append((sid, len(body[sid]), position))
        position += len(body[sid])
    section0 = bytearray(sections[0][:16])
    section0 += struct.pack("<HII", 0, 16 + 10 * (len(ids) + 1), 7)
    for pointer in pointers:
        section0 += struct.pack("<HII", *pointer)
    content = bytes(framed(0, section0)) + b"".join(bytes(body[sid]) for sid in ids)
    head = struct.pack("<I", 6 + len(content))
    return struct.pack("<H", binascii.crc_hqx(head + content, 0xFFFF)) + head + content


def _with_section2(formats_dir: Path, body: bytes) -> bytes:
    sections = _scp_sections(_bytes(formats_dir, "scp_ecg/Example.scp"))
    sections[2] = sections[2][:16] + body
    return _scp_file(sections)


def _table(codes: list[tuple[str, int, int, int]]) -> bytes:
    """One Huffman table of (code bits, total bits, mode, value); codes stored first bit lowest, as EN 1064 says."""
    out = struct.pack("<HH", 1, len(codes))
    for bits, total, mode, value in codes:
        out += struct.pack("<BBBhI", len(bits), total, mode, value, int(bits[::-1], 2))
    return out


def test_scp_rebuilt_file_decodes_as_the_original(formats_dir):
    original = read_scp_ecg(_bytes(formats_dir, "scp_ecg/Example.scp"))
    rebuilt = read_scp_ecg(_scp_file(_scp_sections(_bytes(formats_dir, "scp_ecg/Example.scp"))))
    np.testing.assert_array_equal(rebuilt.signal, original.signal)


def test_scp_default_table_written_out_in_section_2_decodes_the_same(formats_dir):
    codes = [("0", 1, 1, 0)]
    for k in range(1, 9):
        codes += [("1" * k + "00", k + 2, 1, k), ("1" * k + "01", k + 2, 1, -k)]
    codes += [("1111111110", 18, 1, 0), ("1111111111", 26, 1, 0)]
    original = read_scp_ecg(_bytes(formats_dir, "scp_ecg/Example.scp"))
    explicit = read_scp_ecg(_with_section2(formats_dir, _table(codes)))
    np.testing.assert_array_equal(explicit.signal, original.signal)


def test_scp_wrong_huffman_table_is_refused(formats_dir):
    with pytest.raises(EcgFormatError, match="Huffman"):
        read_scp_ecg(_with_section2(formats_dir, _table([("0", 1, 1, 0), ("10", 2, 1, 1)])))


def test_scp_huffman_table_that_is_not_a_prefix_code_is_refused(formats_dir):
    with pytest.raises(EcgFormatError, match="not a prefix code"):
        read_scp_ecg(_with_section2(formats_dir, _table([("0", 1, 1, 0), ("01", 2, 1, 1), ("1", 1, 1, -1)])))


def test_scp_corrupt_rhythm_byte_fails_the_crc(formats_dir):
    data = bytearray(_bytes(formats_dir, "scp_ecg/Example.scp"))
    data[20000] ^= 0xFF
    with pytest.raises(EcgFormatError, match="CRC"):
        read_scp_ecg(bytes(data))


def test_scp_truncated_file_is_named(formats_dir):
    with pytest.raises(EcgFormatError, match="truncated: the header says 34144 bytes, the file has 30000"):
        read_scp_ecg(_bytes(formats_dir, "scp_ecg/Example.scp")[:30000])


def test_scp_lead_longer_than_its_data_can_hold_is_refused_before_decoding(formats_dir):
    sections = _scp_sections(_bytes(formats_dir, "scp_ecg/Example.scp"))
    lead_table = bytearray(sections[3])
    lead_table[16 + 2 + 4 : 16 + 2 + 8] = struct.pack("<I", 4_000_000_000)  # lead I's last sample
    sections[3] = bytes(lead_table)
    with pytest.raises(EcgFormatError, match="4000000000 samples"):
        read_scp_ecg(_scp_file(sections))


# -- Healforce SCP-ECG: a vendor's departures from EN 1064, read when the file proves it is one ----------------------


def _device_heart_rates(data: bytes) -> list[int]:
    """The device's own heart rate at each beat it detected, from its vendor section 9 (4 bytes a beat from byte
    0x134 of the section, 0xFF after the last, as the healforcescpecg project describes it): a reference for the
    decoded signal that the reader itself does not use."""
    pointers = data[6 + 16 : 6 + struct.unpack_from("<I", data, 10)[0]]
    entries = [struct.unpack_from("<HII", pointers, k) for k in range(0, len(pointers) - 9, 10)]
    offset, length = next((o, n) for sid, n, o in entries if sid == 9)
    section = data[offset : offset + length]
    rates, position = [], 0x134
    while section[position] != 0xFF:
        rates.append(section[position])
        position += 4
    return rates


def test_healforce_export_decodes_to_limb_leads_with_the_devices_own_beats(formats_dir):
    data = _bytes(formats_dir, "scp_ecg/62.SCP")
    assert looks_like_scp(data[:4096]) and is_healforce(data)
    record = read_scp_ecg(data)
    assert record.format == "scp_ecg" and record.metadata["variant"] == "healforce"
    assert record.lead_names == ["I", "II", "III"] and record.sampling_rate == 150 and record.n_samples == 4500
    assert record.metadata["amplitude_nv"] == 9524 and record.metadata["recorded_at"] == "2019-08-08T00:04:10"
    assert any("Einthoven" in departure for departure in record.metadata["departures_from_standard"])
    json.dumps(record.metadata)
    assert 0.5 < np.ptp(record.lead("II")) < 15  # millivolts
    device = _device_heart_rates(data)
    beats = heart_rate(record)
    assert len(beats.rpeaks) == len(device) == 30  # the beats the device counted, at 150 Hz: 30 s
    assert beats.bpm == pytest.approx(float(np.median(device)), abs=4)
    assert detect_format(data, name="recording.bin") == "scp_ecg"


def _healforce_file(samples: np.ndarray, rate_hz: int = 150, avm_nv: int = 9524, section_1: bytes = b"") -> bytes:
    """A Healforce-style export of ``samples`` (rows of 10-bit integers, one column per lead), checksums included,
    written independently of the reader from the layout in its docstring."""

    def xmodem(chunk: bytes) -> int:
        return binascii.crc_hqx(chunk, 0)

    def section(sid: int, body: bytes, swap: bool = False) -> bytes:
        raw = struct.pack("<HIBB6s", sid, 16 + len(body), 10, 10, b"\0" * 6) + body
        crc = xmodem(raw)
        return struct.pack("<H", ((crc & 0xFF) << 8 | crc >> 8) if swap else crc) + raw

    values = (samples.reshape(-1) + 512).astype(np.uint16)
    assert len(values) % 4 == 0
    groups = values.reshape(-1, 4)
    fourth = groups[:, 3]
    words = groups[:, :3] | (np.column_stack([fourth >> 8, (fourth >> 4) & 0xF, fourth & 0xF]) << 10)
    stream = words.astype("<u2").tobytes()
    bodies = {3: bytes([samples.shape[1], 4]) + b"\0" * 8, 6: struct.pack("<HHBBH", avm_nv, rate_hz, 0, 0, len(stream))}
    bodies[6] += stream
    if section_1:
        bodies[1] = section_1
    order = sorted(bodies)
    pointers_length = 16 + 10 * (len(order) + 1)
    offset, pointers, blobs = 6 + pointers_length, [struct.pack("<HII", 0, pointers_length, 6)], []
    for sid in order:
        blob = section(sid, bodies[sid], swap=sid == 6)
        pointers.append(struct.pack("<HII", sid, len(blob), offset))
        blobs.append(blob)
        offset += len(blob)
    body = b"".join(pointers)
    raw0 = struct.pack("<HIBB6s", 0, 16 + len(body), 10, 10, b"\0" * 6) + body
    file = b"\0\0\0\0" + struct.pack("<H", offset) + struct.pack("<H", xmodem(raw0)) + raw0 + b"".join(blobs)
    crc = xmodem(file[2:])
    return struct.pack("<H", (crc & 0xFF) << 8 | crc >> 8) + file[2:]


def _limb_counts(seconds: float = 4.0, fs: int = 150) -> np.ndarray:
    import neurokit2 as nk

    lead_ii = nk.ecg_simulate(duration=seconds, sampling_rate=fs, heart_rate=70, random_state=3) * 100
    lead_i = 0.6 * np.roll(lead_ii, 3)
    counts = np.column_stack([lead_i, lead_ii, lead_ii - lead_i]).round().astype(np.int64)
    return np.clip(counts, -512, 511)


def test_healforce_samples_come_back_exactly_as_packed():
    counts = _limb_counts()
    section_1 = (
        bytes([2]) + struct.pack("<H", 6) + b"SMITH\0" + bytes([25]) + struct.pack("<H", 4) + b"\x07\xe3\x08\x08"
    )
    record = read_scp_ecg(_healforce_file(counts, avm_nv=10000, section_1=section_1))
    assert record.lead_names == ["I", "II", "III"] and record.sampling_rate == 150
    assert np.array_equal(np.round(record.signal / 0.01).astype(np.int64), counts)
    assert record.metadata["recorded_at"] == "2019-08-08" and "SMITH" not in repr(record.metadata)
    one_lead = read_scp_ecg(_healforce_file(counts[:, 1:2]))
    assert one_lead.lead_names == ["ECG"] and one_lead.n_samples == len(counts)


def test_healforce_channels_that_are_not_limb_leads_are_refused():
    counts = _limb_counts()[:, [1, 0, 2]]  # II, I, III: section 3 names none, so the order is all there is
    with pytest.raises(EcgFormatError, match=re.escape("not I, II and III (Einthoven's law I + III = II is off by")):
        read_scp_ecg(_healforce_file(counts))


def test_a_flat_or_empty_healforce_export_is_refused_rather_than_named_by_guess():
    with pytest.raises(EcgFormatError, match="second channel is flat"):
        read_scp_ecg(_healforce_file(np.zeros((400, 3), dtype=np.int64)))
    with pytest.raises(EcgFormatError, match="holds no samples"):
        read_scp_ecg(_healforce_file(np.zeros((0, 3), dtype=np.int64)))


def test_a_healforce_export_whose_checksum_fails_is_refused_naming_its_departures(formats_dir):
    data = bytearray(_bytes(formats_dir, "scp_ecg/62.SCP"))
    data[0x1E8 + 16 + 8 + 5000] ^= 0x01  # one sample bit in the rhythm stream
    assert not is_healforce(bytes(data))
    with pytest.raises(EcgFormatError, match="departs from EN 1064") as error:
        read_scp_ecg(bytes(data))
    assert "0-based" in str(error.value) and "SCPECG" in str(error.value)


# -- EDF -------------------------------------------------------------------------------------------------------------


def _record_count(data: bytes, count: int) -> bytes:
    return data[:236] + f"{count:<8d}".encode() + data[244:]


@pytest.mark.parametrize("count", [37856, 40000, 37854, 1])
def test_edf_whose_header_lies_about_the_record_count_is_refused(formats_dir, count):
    data = _record_count(_bytes(formats_dir, "edf/0000050.ECG.edf"), count)
    with pytest.raises(EcgFormatError, match=f"header says {count} data records"):
        read_edf(data)


def test_edf_with_unknown_record_count_takes_it_from_the_size(formats_dir):
    record = read_edf(_record_count(_bytes(formats_dir, "edf/0000050.ECG.edf"), -1))
    assert record.n_samples == 37855


def _edf_bytes(signals, **kwargs) -> bytes:
    import edfio

    out = io.BytesIO()
    edfio.Edf(signals, starttime=datetime.time(8, 30), **kwargs).write(out)
    return out.getvalue()


def test_edf_keeps_ecg_channels_and_leaves_out_the_others():
    import edfio

    t = np.arange(250 * 20) / 250
    ecg = 800 * np.sin(2 * np.pi * 1.2 * t)  # µV
    signals = [
        edfio.EdfSignal(ecg, 250, label="ECG I", physical_dimension="uV", physical_range=(-5000, 5000)),
        edfio.EdfSignal(ecg / 2, 250, label="EKG II", physical_dimension="uV", physical_range=(-5000, 5000)),
        edfio.EdfSignal(np.zeros(25 * 20), 25, label="Accel X", physical_dimension="g", physical_range=(-8, 8)),
        edfio.EdfSignal(ecg, 250, label="EEG Fz", physical_dimension="uV", physical_range=(-5000, 5000)),
        edfio.EdfSignal(np.zeros(250 * 20), 250, label="Lead-off", physical_dimension="uV", physical_range=(-1, 1)),
        edfio.EdfSignal(np.zeros(10 * 20), 10, label="Event", physical_dimension="", physical_range=(0, 1)),
    ]
    annotations = [edfio.EdfAnnotation(1.0, None, "button press")]
    record = read_edf(_edf_bytes(signals, annotations=annotations))
    assert record.format == "edf+"
    assert record.lead_names == list(STANDARD_12_LEADS[:6])  # I and II, with III, aVR, aVL, aVF derived
    assert record.metadata["derived_leads"] == ["III", "aVR", "aVL", "aVF"]
    assert record.sampling_rate == 250 and record.n_samples == 5000
    np.testing.assert_allclose(record.lead("I"), ecg / 1000, atol=5000 / 32767 / 1000 * 2)
    assert set(record.metadata["ignored_channels"]) >= {"Accel X", "EEG Fz", "Lead-off", "Event"}


def test_edf_without_ecg_channel_names_the_channels():
    import edfio

    signals = [edfio.EdfSignal(np.zeros(2560), 256, label="EEG Fz", physical_dimension="uV")]
    with pytest.raises(EcgFormatError, match=r"no ECG channel.*EEG Fz"):
        read_edf(_edf_bytes(signals))


def test_a_17_minute_holter_edf_is_read_with_bounded_memory():
    import edfio

    rate, seconds = 256, 17 * 60
    t = np.arange(rate * seconds) / rate
    ecg = np.sin(2 * np.pi * 1.1 * t) ** 15  # mV, a beat-like spike train
    signals = [
        edfio.EdfSignal(ecg, rate, label=label, physical_dimension="mV", physical_range=(-5, 5))
        for label in ("ECG I", "ECG II", "ECG V1")
    ]
    data = _edf_bytes(signals)
    tracemalloc.start()
    record = read_edf(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert record.duration_s == seconds and record.n_leads == 7  # I, II, V1 and four derived limb leads
    output_bytes = record.signal.nbytes
    assert peak < 3 * output_bytes + 2 * len(data)  # the file, the record and working copies, never a blow-up


# -- ISHNE -----------------------------------------------------------------------------------------------------------


def test_ishne_annotation_file_is_refused_as_not_an_ecg(formats_dir):
    data = _bytes(formats_dir, "ishne_holter/ECG_P28.01.ann")
    assert looks_like_ishne(data[:4096])
    with pytest.raises(EcgFormatError, match="annotation file"):
        read_ishne(data)


def test_ishne_truncated_and_corrupt_headers_are_named(formats_dir):
    data = _bytes(formats_dir, "ishne_holter/ECG_P28.01.ecg")
    with pytest.raises(EcgFormatError, match="truncated"):
        read_ishne(data[:100000])
    corrupt = bytearray(data)
    corrupt[10 + 262] ^= 0x01  # the sampling rate, under the CRC
    with pytest.raises(EcgFormatError, match="CRC"):
        read_ishne(bytes(corrupt))


# -- Truncation and corruption sweep ---------------------------------------------------------------------------------

SWEEP = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors]
)
_SWEEP_FILES = [s[0] for s in SAMPLES] + ["scp_ecg/62.SCP", "ishne_holter/ECG_P28.01.ann"]
_ORIGINALS: dict[str, bytes] = {}


def _original(formats_dir: Path, name: str) -> bytes:
    if name not in _ORIGINALS:
        _ORIGINALS[name] = _bytes(formats_dir, name)
    return _ORIGINALS[name]


def _only_format_errors(reader, data: bytes) -> None:
    """The reader, and read_ecg's detection in front of it, give a record or an EcgFormatError, nothing else."""
    for read in (reader, read_ecg):
        try:
            record = read(data)
        except EcgFormatError as exc:
            assert str(exc)
            continue
        assert isinstance(record, Record) and np.all(np.isfinite(record.signal))


@pytest.mark.parametrize("name", _SWEEP_FILES)
@SWEEP
@given(fraction=st.floats(0, 1, exclude_max=True), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255))))
def test_truncated_or_flipped_files_raise_only_format_errors(formats_dir, name, fraction, flips):
    data = bytearray(_original(formats_dir, name))
    for where, mask in flips[:8]:
        data[int(where * (len(data) - 1))] ^= mask
    reader = READERS.get(name, (read_scp_ecg if name.endswith(".SCP") else read_ishne, None))[0]
    cut = bytes(data[: int(fraction * len(data))])
    _only_format_errors(reader, cut)
    _only_format_errors(reader, bytes(data))


@SWEEP
@given(
    section=st.sampled_from([1, 2, 3, 4, 5, 6]),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), min_size=1, max_size=8),
    cut=st.floats(0.5, 1),
)
def test_scp_sections_damaged_under_valid_crcs_raise_only_format_errors(formats_dir, section, flips, cut):
    """The CRCs recomputed after the damage, so that the section decoders themselves meet it."""
    sections = _scp_sections(_original(formats_dir, "scp_ecg/Example.scp"))
    body = bytearray(sections[section])
    for where, mask in flips:
        body[16 + int(where * (len(body) - 17))] ^= mask
    sections[section] = bytes(body[: max(16, int(cut * len(body)))])
    _only_format_errors(read_scp_ecg, _scp_file(sections))


# -- SCP-ECG encodings the samples do not use, on files built here -------------------------------------------------


def _default_huffman(values: np.ndarray) -> bytes:
    """EN 1064's default table: 0 -> '0', +-k (k <= 8) -> k ones, '0', sign; else 8 or 16 bits of the value."""
    bits = []
    for v in (int(v) for v in values):
        if v == 0:
            bits.append("0")
        elif abs(v) <= 8:
            bits.append("1" * abs(v) + "0" + ("1" if v < 0 else "0"))
        elif -128 <= v <= 127:
            bits.append("1111111110" + format(v & 0xFF, "08b"))
        else:
            bits.append("1111111111" + format(v & 0xFFFF, "016b"))
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return int(stream, 2).to_bytes(len(stream) // 8, "big") if stream else b""


def _second_differences(x: np.ndarray) -> np.ndarray:
    d = x.astype(np.int64).copy()
    d[2:] = x[2:] - 2 * x[1:-1] + x[:-2]
    return d


def _section(sid: int, body: bytes) -> bytes:
    return struct.pack("<HHIBB6s", 0, sid, 0, 20, 20, b"\0" * 6) + body


def _encoded(avm: int, interval: int, bimodal: int, leads: list[np.ndarray]) -> bytes:
    streams = [_default_huffman(_second_differences(lead)) for lead in leads]
    head = struct.pack("<HHBB", avm, interval, 2, bimodal) + struct.pack(f"<{len(streams)}H", *map(len, streams))
    return head + b"".join(streams)


def _synthetic_scp(n: int, flags: int, beats, zones, reference: np.ndarray, rhythm: bytes, interval: int) -> bytes:
    section0 = struct.pack("<HHIBB6s", 0, 0, 0, 20, 20, b"SCPECG")
    leads = struct.pack("<BB", 1, flags) + struct.pack("<IIB", 1, n, 2)  # one lead, II
    qrs = struct.pack("<HHH", len(reference) * interval // 1000, 100, len(beats))
    qrs += b"".join(struct.pack("<HIII", 0, sb, fc, se) for sb, fc, se in beats)
    qrs += b"".join(struct.pack("<II", qb, qe) for qb, qe in zones)
    return _scp_file(
        {
            0: section0,
            2: _section(2, struct.pack("<H", 19999)),
            3: _section(3, leads),
            4: _section(4, qrs),
            5: _section(5, _encoded(1000, interval, 0, [reference])),
            6: _section(6, rhythm),
        }
    )


def _beat_train(n: int, centres: list[int]) -> np.ndarray:
    t = np.arange(n)
    x = 50 * np.sin(2 * np.pi * t / 700)
    for c in centres:
        x += 1200 * np.exp(-0.5 * ((t - c) / 6) ** 2) - 200 * np.exp(-0.5 * ((t - c - 15) / 8) ** 2)
    return np.rint(x).astype(np.int64)


def test_scp_reference_beat_is_added_back_over_each_qrs_zone():
    n, centres = 2000, [200, 600, 1000, 1400, 1800]
    signal = _beat_train(n, centres)
    reference = signal[100:400].copy()  # the beat around the first QRS: fiducial (1-based) 100 is sample 200
    beats = [(c - 50, c, c + 100) for c in centres]
    residual = signal.copy()
    for sb, fc, se in beats:
        residual[sb - 1 : se] -= reference[sb - fc + 100 - 1 : se - fc + 100]
    assert np.abs(residual[150:300]).max() == 0  # the first zone cancels exactly
    data = _synthetic_scp(n, 0x01, beats, [], reference, _encoded(1000, 2000, 0, [residual]), 2000)
    record = read_scp_ecg(data)
    assert record.metadata["reference_beat_added"] and record.sampling_rate == 500
    np.testing.assert_allclose(record.lead("II"), signal / 1000, atol=1e-6)  # 1000 nV per unit


def test_scp_bimodal_compression_restores_the_full_rate():
    n, centres, factor = 2000, [200, 600, 1000, 1400, 1800], 2
    signal = _beat_train(n, centres)
    zones = [(c - 40, c + 59) for c in centres]  # 1-based, each 100 samples: full rate inside
    protected = np.zeros(n, dtype=bool)
    for qb, qe in zones:
        protected[qb - 1 : qe] = True
    stored, k = [], 0
    while k < n:  # protected samples as they are, the rest as means of blocks of `factor` within each run
        run_end = k
        while run_end < n and protected[run_end] == protected[k]:
            run_end += 1
        if protected[k]:
            stored += list(signal[k:run_end])
        else:
            stored += [round(float(signal[b : min(b + factor, run_end)].mean())) for b in range(k, run_end, factor)]
        k = run_end
    rhythm = _encoded(1000, 2000 * factor, 1, [np.asarray(stored)])
    beats = [(c - 40, c, c + 59) for c in centres]
    data = _synthetic_scp(n, 0x00, beats, zones, signal[100:400], rhythm, 2000)
    record = read_scp_ecg(data)
    assert record.sampling_rate == 500 and record.n_samples == n
    restored = record.lead("II") * 1000
    np.testing.assert_allclose(restored[protected], signal[protected], atol=1e-3)  # exact where protected
    assert np.abs(restored[~protected] - signal[~protected]).max() < 5  # the slow wave, interpolated


def _scp_with_leads(leads: list[tuple[int, int, np.ndarray]]) -> bytes:
    """A plain (no reference beat) SCP file: (SCP lead code, first sample, samples) per lead, 500 Hz, 1 µV."""
    table = struct.pack("<BB", len(leads), 0x00)
    table += b"".join(struct.pack("<IIB", first, first + len(x) - 1, code) for code, first, x in leads)
    return _scp_file(
        {
            0: struct.pack("<HHIBB6s", 0, 0, 0, 20, 20, b"SCPECG"),
            2: _section(2, struct.pack("<H", 19999)),
            3: _section(3, table),
            6: _section(6, _encoded(1000, 2000, 0, [x for _, _, x in leads])),
        }
    )


def test_scp_leads_recorded_in_groups_keep_the_leads_that_cover_the_whole_recording():
    rhythm = _beat_train(5000, list(range(200, 5000, 400)))
    data = _scp_with_leads([(1, 1, rhythm[:1250]), (2, 1, rhythm), (3, 1251, rhythm[1250:2500])])  # I, II, V1
    record = read_scp_ecg(data)
    assert record.lead_names == ["II"] and record.n_samples == 5000
    assert record.metadata["leads_left_out"] == ["I", "V1"]
    np.testing.assert_allclose(record.lead("II"), rhythm / 1000, atol=1e-6)


def test_scp_leads_of_slightly_different_length_are_cut_to_their_common_span():
    rhythm = _beat_train(5000, list(range(200, 5000, 400)))
    record = read_scp_ecg(_scp_with_leads([(1, 1, rhythm), (2, 1, rhythm[:4900])]))
    assert record.n_samples == 4900 and record.metadata["trimmed_to_common_span"]
    assert record.metadata["derived_leads"] == ["III", "aVR", "aVL", "aVF"]


def test_scp_leads_with_no_common_sample_are_refused():
    rhythm = _beat_train(2000, [200, 600])
    with pytest.raises(EcgFormatError, match="one group after another"):
        read_scp_ecg(_scp_with_leads([(1, 1, rhythm[:1000]), (2, 1001, rhythm[1000:])]))


def test_scp_huffman_tables_that_switch_among_each_other():
    def table(codes):  # (bits, mode, value): mode 1 a value, mode 0 a switch to table `value`
        out = struct.pack("<H", len(codes))
        return out + b"".join(struct.pack("<BBBhI", len(b), len(b), m, v, int(b[::-1], 2)) for b, m, v in codes)

    tables = struct.pack("<H", 2) + table([("0", 1, 0), ("11", 1, 1), ("10", 0, 2)]) + table([("0", 1, 5), ("1", 0, 1)])
    values = [0, 1, 5, 5, 0, 1]
    bits = "0" + "11" + "10" + "0" + "0" + "1" + "0" + "11"
    stream = int(bits + "0" * (-len(bits) % 8), 2).to_bytes((len(bits) + 7) // 8, "big")
    rhythm = struct.pack("<HHBBH", 1000, 2000, 0, 0, len(stream)) + stream
    data = _scp_file(
        {
            0: struct.pack("<HHIBB6s", 0, 0, 0, 20, 20, b"SCPECG"),
            2: _section(2, tables),
            3: _section(3, struct.pack("<BB", 1, 0) + struct.pack("<IIB", 1, len(values), 2)),
            6: _section(6, rhythm),
        }
    )
    np.testing.assert_allclose(read_scp_ecg(data).lead("II"), np.array(values) / 1000, atol=1e-9)


def _ishne_with_lead_codes(data: bytes, codes: list[int]) -> bytes:
    header = bytearray(data[:522])
    header[10 + 148 : 10 + 148 + 2 * len(codes)] = struct.pack(f"<{len(codes)}h", *codes)
    ecg_offset = struct.unpack_from("<i", header, 10 + 12)[0]
    out = bytes(header) + data[522:]
    return out[:8] + struct.pack("<H", binascii.crc_hqx(out[10:ecg_offset], 0xFFFF)) + out[10:]


def test_ishne_generic_bipolar_channels_are_told_apart_by_channel_number(formats_dir):
    data = _ishne_with_lead_codes(_bytes(formats_dir, "ishne_holter/ECG_P28.01.ecg"), [1] * 3 + list(range(8, 17)))
    record = read_ishne(data)
    assert record.lead_names[-3:] == ["bipolar (channel 1)", "bipolar (channel 2)", "bipolar (channel 3)"]
    assert "derived_leads" not in record.metadata  # no I and II to derive from


def test_ishne_lead_named_twice_is_refused(formats_dir):
    data = _ishne_with_lead_codes(_bytes(formats_dir, "ishne_holter/ECG_P28.01.ecg"), [5, 5])
    with pytest.raises(EcgFormatError, match=r"names lead.* I more than once"):
        read_ishne(data)


def test_edf_limb_leads_labelled_by_their_electrodes():
    import edfio

    t = np.arange(2560) / 256
    signals = [
        edfio.EdfSignal(np.sin(2 * np.pi * t), 256, label=label, physical_dimension="mV", physical_range=(-2, 2))
        for label in ("ECG LA-RA", "ECG LL-RA")
    ]
    assert read_edf(_edf_bytes(signals)).lead_names == ["I", "II", "III", "aVR", "aVL", "aVF"]
