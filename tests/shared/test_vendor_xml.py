"""GE MUSE, Philips PageWriter/Sierra and HL7 aECG XML on the real sample files (ECG_DATA_DIR/formats), and hostile
or broken XML: every failure is an EcgFormatError that names the problem."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecg_shared.formats import STANDARD_12_LEADS, EcgFormatError, detect_format, read_ecg
from ecg_shared.formats.xli import xli_decode
from ecg_shared.heart import heart_rate

EXTRA_LEADS = ("V3R", "V4R", "V7")

# file, format, leads, rate (Hz), samples, the rate the file's own measurements state (None: not stated), and
# whether the limb leads III, aVR, aVL, aVF were derived (MUSE stores 8 leads). Facts from PROVENANCE.md.
SAMPLES = [
    ("ge_muse_xml/example1.xml", "muse_xml", STANDARD_12_LEADS, 500, 5000, 48, True),
    ("ge_muse_xml/example2.xml", "muse_xml", STANDARD_12_LEADS, 500, 5000, 65, True),
    ("ge_muse_xml/MUSE_20080710_165457_96000.xml", "muse_xml", STANDARD_12_LEADS, 250, 2500, 69, True),
    # Philips: 11 000 ms per channel, of which the cart's trailing calibration pulse (0.4-0.5 s) is cut.
    ("philips_sierra_xml/129DYPRG.XML", "philips_xml", STANDARD_12_LEADS, 500, 5264, 41, False),
    ("philips_sierra_xml/3191723_ZZDEMOPTONLY_1-04_orig.xml", "philips_xml", STANDARD_12_LEADS, 500, 5300, 84, False),
    ("philips_sierra_xml/ecg_900657176_1.xml", "philips_xml", STANDARD_12_LEADS + EXTRA_LEADS, 500, 5300, 120, False),
    ("hl7_aecg/Example aECG.xml", "hl7_aecg", STANDARD_12_LEADS, 500, 5000, None, False),
]

# What each file says about its patient (and, in the Philips files, order and operator): none may reach a record.
PATIENT_FIELDS = {
    "ge_muse_xml/MUSE_20080710_165457_96000.xml": ["159357456", "RESTING", "THE FIRST SITE"],
    "philips_sierra_xml/129DYPRG.XML": ["1112010721168bdc", "GE EMS", "GEILM"],
    "philips_sierra_xml/3191723_ZZDEMOPTONLY_1-04_orig.xml": ["ZZDEMOPTONLY", "1950-01-01", "120190145", "VWJ"],
    "philips_sierra_xml/ecg_900657176_1.xml": ["900657176", "1959-01-20", "DCFVJMK", "4567890", "FGHJK"],
    "hl7_aecg/Example aECG.xml": ["Clark", "19530508", "SBJ-123", "JMK", "KAB", "River City"],
}


def _bytes(formats_dir: Path, name: str) -> bytes:
    return (formats_dir / name).read_bytes()


@pytest.mark.parametrize(("name", "fmt", "leads", "rate", "samples", "stated_bpm", "derived"), SAMPLES)
def test_sample_files_decode_with_their_leads_rate_duration_and_a_plausible_lead_ii(
    formats_dir, name, fmt, leads, rate, samples, stated_bpm, derived
):
    data = _bytes(formats_dir, name)
    assert detect_format(data) == fmt
    record = read_ecg(formats_dir / name)
    assert record.format == fmt
    assert record.lead_names == list(leads)
    assert record.sampling_rate == rate
    assert record.n_samples == samples
    assert record.metadata["units"] == "mV"
    assert record.metadata.get("derived_leads", []) == (["III", "aVR", "aVL", "aVF"] if derived else [])

    lead_ii = record.lead("II")
    assert np.all(np.isfinite(record.signal))
    assert 0.3 < np.ptp(lead_ii) < 5.0  # a QRS of tenths of a mV to a few mV: the scale was taken from the file
    assert np.median(np.abs(np.diff(lead_ii))) * rate < 20  # mV/s: smooth between beats, no decoding noise
    rate_found = heart_rate(record)
    assert rate_found.lead == "II" and rate_found.bpm is not None
    if stated_bpm is None:
        assert 40 <= rate_found.bpm <= 120
    else:
        assert rate_found.bpm == pytest.approx(stated_bpm, rel=0.12)


@pytest.mark.parametrize("name", [s[0] for s in SAMPLES])
def test_the_limb_leads_obey_einthoven_and_goldberger_within_quantisation(formats_dir, name):
    record = read_ecg(formats_dir / name)
    step_mv = 0.005 if record.format == "philips_xml" else 0.0025  # 5 µV (Philips), 4.88 and 2.5 µV per count
    einthoven = record.lead("I") + record.lead("III") - record.lead("II")
    goldberger = record.lead("aVR") + record.lead("aVL") + record.lead("aVF")
    assert np.abs(einthoven).max() <= 2 * step_mv + 1e-6
    assert np.abs(goldberger).max() <= 3 * step_mv + 1e-6


def test_philips_xli_decodes_as_sierra_ecg_tools_does(formats_dir):
    """The chunks' int16 samples hash to what sierra-ecg-tools' reference decoder (sierraecg 0.4.0) gives."""
    expected = {
        "129DYPRG.XML": "f87587f7209ce9da505f1e7424446d77c2c8a523467a1a8b1c89f6fbd2d04211",
        "3191723_ZZDEMOPTONLY_1-04_orig.xml": "c2579d6d3245a26501ad6dd3c8bd884415781c08703015a99416f6c0261ff79a",
    }
    for name, digest in expected.items():
        raw = _bytes(formats_dir, f"philips_sierra_xml/{name}")
        text = raw.decode("utf-16" if raw.startswith(b"\xff\xfe") else "utf-8")
        payload = re.search(r"<parsedwaveforms[^>]*>([^<]*)<", text).group(1)
        chunks = xli_decode(base64.b64decode("".join(payload.split())))
        assert len(chunks) == 16 and all(chunk.size == 5500 for chunk in chunks)
        assert hashlib.sha256(b"".join(c.astype("<i2").tobytes() for c in chunks)).hexdigest() == digest


def test_philips_utf16_and_utf8_files_are_both_read_and_the_calibration_pulse_is_cut(formats_dir):
    utf16 = _bytes(formats_dir, "philips_sierra_xml/3191723_ZZDEMOPTONLY_1-04_orig.xml")
    assert utf16.startswith(b"\xff\xfe")
    record = read_ecg(utf16)
    assert record.metadata["document"] == "PhilipsECG 1.04"
    assert record.metadata["limb_leads_stored_as"] == "residuals"
    assert record.metadata["calibration_pulse_removed_s"] == pytest.approx(0.4)
    # the same document re-encoded as UTF-8 decodes to the same samples
    as_utf8 = utf16.decode("utf-16").replace('encoding="utf-16"', 'encoding="utf-8"').encode("utf-8")
    np.testing.assert_array_equal(read_ecg(as_utf8).signal, record.signal)


@pytest.mark.parametrize("name", list(PATIENT_FIELDS))
def test_readers_keep_no_patient_fields(formats_dir, name):
    record = read_ecg(_bytes(formats_dir, name))
    kept = repr(record.metadata)
    for value in PATIENT_FIELDS[name]:
        assert value not in kept
    assert {"model", "recorded_at", "filters"} <= set(record.metadata)
    assert len(record.metadata["recorded_at"]) == 10  # the date, not the time of day


def test_detection_is_by_content_not_by_file_name(formats_dir, tmp_path):
    muse = _bytes(formats_dir, "ge_muse_xml/example1.xml")
    disguised = tmp_path / "export.csv"
    disguised.write_bytes(muse)
    assert read_ecg(disguised).format == "muse_xml"
    assert detect_format(muse, "export.txt") == "muse_xml"
    with pytest.raises(EcgFormatError, match=r"XML document with root <Patient>"):
        read_ecg(b'<?xml version="1.0"?>\n<!-- a, b -->\n<Patient><Name>Doe, J</Name></Patient>')


# --- bad input ----------------------------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE RestingECG [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<RestingECG><MuseInfo><MuseVersion>&lol3;</MuseVersion></MuseInfo></RestingECG>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE AnnotatedECG [ <!ENTITY secret SYSTEM "file:///etc/passwd"> ]>
<AnnotatedECG xmlns="urn:hl7-org:v3"><text>&secret;</text></AnnotatedECG>"""


def test_entity_expansion_is_refused_and_named():
    with pytest.raises(EcgFormatError, match=r"declares an entity .*billion laughs"):
        read_ecg(BILLION_LAUGHS)


def test_external_entities_are_refused_and_named():
    with pytest.raises(EcgFormatError, match=r"external entity .*file:///etc/passwd"):
        read_ecg(EXTERNAL_ENTITY)


@pytest.mark.parametrize("name", [s[0] for s in SAMPLES])
def test_truncated_xml_is_named(formats_dir, name):
    data = _bytes(formats_dir, name)
    with pytest.raises(EcgFormatError, match=r"malformed or truncated"):
        read_ecg(data[: len(data) // 2])


def _replace_in_first(data: bytes, tag: bytes, old: bytes, new: bytes) -> bytes:
    start = data.index(b"<" + tag) + len(tag) + 1
    start = data.index(b">", start) + 1
    position = data.index(old, start)
    return data[:position] + new + data[position + len(old) :]


def test_invalid_base64_is_named(formats_dir):
    muse = _bytes(formats_dir, "ge_muse_xml/example1.xml")
    rhythm = muse.index(b"<WaveformType>Rhythm")
    broken = muse[:rhythm] + _replace_in_first(muse[rhythm:], b"WaveFormData", b"A", b"*")
    with pytest.raises(EcgFormatError, match=r"lead I: the waveform data is not valid base64"):
        read_ecg(broken)
    philips = _bytes(formats_dir, "philips_sierra_xml/129DYPRG.XML")
    with pytest.raises(EcgFormatError, match=r"Philips XML: the waveform data is not valid base64"):
        read_ecg(_replace_in_first(philips, b"parsedwaveforms", b"A", b"%"))


def test_corrupt_muse_samples_fail_their_crc(formats_dir):
    muse = _bytes(formats_dir, "ge_muse_xml/example2.xml")
    rhythm = muse.index(b"<WaveformType>Rhythm")
    start = muse.index(b"<WaveFormData>", rhythm) + len(b"<WaveFormData>") + 40
    flipped = b"B" if muse[start : start + 1] != b"B" else b"C"
    with pytest.raises(EcgFormatError, match=r"CRC-32"):
        read_ecg(muse[:start] + flipped + muse[start + 1 :])


def test_truncated_xli_data_is_named(formats_dir):
    raw = _bytes(formats_dir, "philips_sierra_xml/129DYPRG.XML")
    text = raw.decode("utf-8")
    payload = re.search(r"<parsedwaveforms[^>]*>([^<]*)<", text).group(1)
    data = base64.b64decode("".join(payload.split()))
    shortened = base64.b64encode(data[: len(data) // 3]).decode()
    with pytest.raises(EcgFormatError, match=r"Philips XLI: chunk \d+ claims \d+ bytes"):
        read_ecg(text.replace(payload, shortened).encode("utf-8"))


def test_a_muse_file_with_only_median_beats_is_refused(formats_dir):
    muse = _bytes(formats_dir, "ge_muse_xml/example1.xml")
    with pytest.raises(EcgFormatError, match=r"no Rhythm waveform \(waveforms present: Median, Median\)"):
        read_ecg(muse.replace(b"<WaveformType>Rhythm", b"<WaveformType>Median"))


def test_an_aecg_with_an_unknown_scale_unit_is_refused_and_millivolt_scales_are_read(formats_dir):
    aecg = _bytes(formats_dir, "hl7_aecg/Example aECG.xml")
    reference = read_ecg(aecg)
    in_mv = aecg.replace(b'<scale value="2.5" unit="uV"/>', b'<scale value="0.0025" unit="mV"/>')
    np.testing.assert_allclose(read_ecg(in_mv).signal, reference.signal, atol=1e-6)
    with pytest.raises(EcgFormatError, match=r"unit 'furlong'"):
        read_ecg(aecg.replace(b'<scale value="2.5" unit="uV"/>', b'<scale value="2.5" unit="furlong"/>'))


@pytest.mark.parametrize("stored_as", ["residuals", "leads"])
def test_uncompressed_philips_waveforms_with_residual_or_recorded_limb_leads(formats_dir, stored_as):
    """The same 1.04 file rewritten with uncompressed int16 leads, the limb leads either as Philips' residuals (what
    XLI carried) or as the leads themselves: both read as the XLI original."""
    from ecg_shared.formats.philips import _restore_limb_leads

    raw = _bytes(formats_dir, "philips_sierra_xml/3191723_ZZDEMOPTONLY_1-04_orig.xml")
    original = read_ecg(raw)
    text = raw.decode("utf-16")
    payload = re.search(r"<parsedwaveforms[^>]*>([^<]*)<", text).group(1)
    chunks = [chunk.astype(np.int32) for chunk in xli_decode(base64.b64decode("".join(payload.split())))[:12]]
    if stored_as == "leads":
        leads = dict(zip(STANDARD_12_LEADS, chunks, strict=True))
        assert _restore_limb_leads(leads) == "residuals"
        chunks = [leads[name] for name in STANDARD_12_LEADS]
    uncompressed = base64.b64encode(np.concatenate(chunks).astype("<i2").tobytes()).decode()
    rewritten = text.replace(payload, uncompressed).replace('compression="XLI"', 'compression="Uncompressed"')
    record = read_ecg(rewritten.encode("utf-16"))
    assert record.metadata["limb_leads_stored_as"] == stored_as
    np.testing.assert_array_equal(record.signal, original.signal)


def test_muse_amplitude_units_come_from_the_file(formats_dir):
    muse = _bytes(formats_dir, "ge_muse_xml/example1.xml")
    reference = read_ecg(muse)
    in_mv = muse.replace(
        b"<LeadAmplitudeUnitsPerBit>4.88</LeadAmplitudeUnitsPerBit>\n         <LeadAmplitudeUnits>MICROVOLTS",
        b"<LeadAmplitudeUnitsPerBit>0.00488</LeadAmplitudeUnitsPerBit>\n         <LeadAmplitudeUnits>MILLIVOLTS",
    )
    assert in_mv.count(b"MILLIVOLTS") == 16
    np.testing.assert_allclose(read_ecg(in_mv).signal, reference.signal, atol=1e-6)
    with pytest.raises(EcgFormatError, match=r"unknown LeadAmplitudeUnits 'FURLONGS'"):
        read_ecg(muse.replace(b"MICROVOLTS", b"FURLONGS"))


def test_aecg_origin_and_time_units_come_from_the_file(formats_dir):
    aecg = _bytes(formats_dir, "hl7_aecg/Example aECG.xml")
    reference = read_ecg(aecg)
    shifted = aecg.replace(b'<origin value="0" unit="uV"/>', b'<origin value="0.1" unit="mV"/>')
    shifted = shifted.replace(b'<increment value="0.002" unit="s"/>', b'<increment value="2" unit="ms"/>')
    record = read_ecg(shifted)
    assert record.sampling_rate == 500
    recorded = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6", "III", "aVR", "aVL", "aVF"]
    for lead in recorded:
        np.testing.assert_allclose(record.lead(lead), reference.lead(lead) + 0.1, atol=1e-5)


def _philips_xli_payload(formats_dir: Path) -> tuple[str, str, bytes]:
    text = _bytes(formats_dir, "philips_sierra_xml/129DYPRG.XML").decode("utf-8")
    payload = re.search(r"<parsedwaveforms[^>]*>([^<]*)<", text).group(1)
    return text, payload, base64.b64decode("".join(payload.split()))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_corrupted_xli_data_is_read_or_refused_by_name_never_anything_else(formats_dir, data):
    """Real XLI chunks with bytes overwritten anywhere (headers and LZW codes alike), then the whole file: the reader
    either decodes something or raises EcgFormatError, and always ends."""
    text, payload, compressed = _philips_xli_payload(formats_dir)
    damaged = bytearray(compressed)
    for _ in range(data.draw(st.integers(1, 8))):
        damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    try:
        xli_decode(bytes(damaged))
    except EcgFormatError as exc:
        assert str(exc).startswith("Philips XLI")
    rewritten = text.replace(payload, base64.b64encode(bytes(damaged)).decode())
    try:
        read_ecg(rewritten.encode("utf-8"))
    except EcgFormatError as exc:
        assert str(exc)


def test_an_xli_decompression_bomb_is_refused(formats_dir):
    """10-bit LZW codes each naming the entry being defined (the previous string plus its first byte): 875 bytes that
    would expand to 245 KB per chunk. Decoding stops past the samples the file declares."""
    codes = [0, *range(256, 256 + 699)]
    bits = "".join(f"{code:010b}" for code in codes)
    bits += "0" * (-len(bits) % 8)
    payload = int(bits, 2).to_bytes(len(bits) // 8, "big")
    chunk = len(payload).to_bytes(4, "little") + bytes(4) + payload
    assert len(xli_decode(chunk, max_samples=200_000)[0]) > 100_000  # the bomb is real
    with pytest.raises(EcgFormatError, match=r"decompresses past the 5500 samples"):
        xli_decode(chunk, max_samples=5500)
    text, payload_b64, _ = _philips_xli_payload(formats_dir)
    with pytest.raises(EcgFormatError, match=r"decompresses past the 5500 samples"):
        read_ecg(text.replace(payload_b64, base64.b64encode(chunk * 12).decode()).encode("utf-8"))


def test_aecg_with_lead_groups_in_several_sequence_sets_reads_the_fullest(formats_dir):
    """A first sequence set holding only leads I and II (a cart's lead group) before the full one: the full set is the
    recording, and the record says a set was left out."""
    aecg = _bytes(formats_dir, "hl7_aecg/Example aECG.xml").decode("utf-8")
    start = aecg.index("<sequenceSet>")
    end = aecg.index("</sequenceSet>") + len("</sequenceSet>")
    full = aecg[start:end]
    v1 = full.index("<component>", full.index("MDC_ECG_LEAD_II"))
    partial = full[:v1] + "</sequenceSet>"
    assert partial.count("MDC_ECG_LEAD_") == 2
    rewritten = aecg[:start] + partial + "</component><component>" + full + aecg[end:]
    record = read_ecg(rewritten.encode("utf-8"))
    assert record.lead_names == list(STANDARD_12_LEADS)
    assert record.metadata["sequence_sets_left_out"] == 1
    np.testing.assert_array_equal(record.signal, read_ecg(aecg.encode("utf-8")).signal)


def test_xml_with_long_comments_before_the_root_is_still_detected(formats_dir):
    aecg = _bytes(formats_dir, "hl7_aecg/Example aECG.xml")
    declaration_end = aecg.index(b"?>") + 2
    padded = aecg[:declaration_end] + b"\n<!-- " + b"exported by a, b, c; " * 1000 + b"-->" + aecg[declaration_end:]
    assert detect_format(padded) == "hl7_aecg"
    assert read_ecg(padded).n_samples == 5000


def test_aecg_digits_that_are_not_numbers_are_named(formats_dir):
    aecg = _bytes(formats_dir, "hl7_aecg/Example aECG.xml")
    start = aecg.index(b"<digits>", aecg.index(b"MDC_ECG_LEAD_II")) + len(b"<digits>")
    broken = aecg[:start] + b"12 x7 " + aecg[start:]
    with pytest.raises(EcgFormatError, match=r"lead II: the digits are not all numbers"):
        read_ecg(broken)
