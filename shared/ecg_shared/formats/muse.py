"""GE MUSE XML (``<RestingECG>``): the rhythm waveform, in mV, with the limb leads MUSE leaves out derived.

A MUSE export holds a ``Median`` waveform (one representative beat per lead) and a ``Rhythm`` waveform (the whole
strip); only the rhythm is read. Each ``LeadData`` carries its samples as base64 little-endian integers of
``LeadSampleSize`` bytes, the scale (``LeadAmplitudeUnitsPerBit`` in ``LeadAmplitudeUnits``) and a CRC-32 of the
decoded bytes, which is checked. The rate is ``SampleBase`` × 10^``SampleExponent``. Carts usually store 8 leads
(I, II, V1–V6); III, aVR, aVL and aVF are then derived (:func:`ecg_shared.formats.leads.derive_limb_leads`).

Only a de-identified subset of the header is kept: the cart model and software, the filters, the scale and the
acquisition date (not the time). Patient and test demographics (names, IDs, birth dates, physicians, sites) are never
read.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from xml.etree.ElementTree import Element

import numpy as np

from ecg_shared.formats.leads import derive_limb_leads, in_standard_order
from ecg_shared.formats.record import EcgFormatError, Record
from ecg_shared.formats.vendor_xml import (
    child_text,
    decode_base64,
    filter_settings,
    number,
    parse_xml,
    xml_root_name,
)

WHAT = "GE MUSE XML"
_MICROVOLTS_PER_UNIT = {"MICROVOLTS": 1.0, "MICROVOLT": 1.0, "UV": 1.0, "MILLIVOLTS": 1000.0, "MV": 1000.0}
_SAMPLE_TYPES = {1: "<i1", 2: "<i2", 4: "<i4"}


def looks_like_muse(head: bytes) -> bool:
    return xml_root_name(head) == "RestingECG"


def _rhythm_waveform(root: Element) -> Element:
    waveforms = root.findall("Waveform")
    for waveform in waveforms:
        if (child_text(waveform, "WaveformType") or "").lower() == "rhythm":
            return waveform
    kinds = ", ".join(child_text(w, "WaveformType") or "?" for w in waveforms) or "none"
    raise EcgFormatError(f"{WHAT}: no Rhythm waveform (waveforms present: {kinds}); a median beat is not a recording")


def _lead_samples(lead: Element, name: str) -> np.ndarray:
    what = f"{WHAT} lead {name}"
    size = int(number(child_text(lead, "LeadSampleSize") or "2", f"{what} LeadSampleSize"))
    if size not in _SAMPLE_TYPES:
        raise EcgFormatError(f"{what}: unsupported LeadSampleSize {size} (expected 1, 2 or 4 bytes)")
    raw = decode_base64(child_text(lead, "WaveFormData"), what)
    if len(raw) % size:
        raise EcgFormatError(f"{what}: {len(raw)} bytes of data is not a whole number of {size}-byte samples")
    crc = child_text(lead, "LeadDataCRC32")
    # Compared as unsigned 32 bits: a writer that prints the CRC as a signed integer states the same checksum.
    if crc is not None and zlib.crc32(raw) != int(number(crc, f"{what} LeadDataCRC32")) & 0xFFFFFFFF:
        raise EcgFormatError(f"{what}: the waveform data fails its CRC-32 check (the file is corrupt or truncated)")
    counts = np.frombuffer(raw, dtype=_SAMPLE_TYPES[size])
    expected = child_text(lead, "LeadSampleCountTotal")
    if expected is not None and int(number(expected, f"{what} LeadSampleCountTotal")) != counts.size:
        raise EcgFormatError(f"{what}: LeadSampleCountTotal says {expected} samples but the data holds {counts.size}")
    units = (child_text(lead, "LeadAmplitudeUnits") or "MICROVOLTS").upper()
    if units not in _MICROVOLTS_PER_UNIT:
        raise EcgFormatError(f"{what}: unknown LeadAmplitudeUnits {units!r}")
    per_bit = number(child_text(lead, "LeadAmplitudeUnitsPerBit"), f"{what} LeadAmplitudeUnitsPerBit")
    baseline = number(child_text(lead, "FirstSampleBaseline") or "0", f"{what} FirstSampleBaseline")
    return ((counts.astype(np.float64) - baseline) * per_bit * _MICROVOLTS_PER_UNIT[units] / 1000.0).astype(np.float32)


def _acquisition_date(root: Element) -> str | None:
    text = child_text(root, "TestDemographics/AcquisitionDate")
    for layout in ("%m-%d-%Y", "%Y-%m-%d", "%m/%d/%Y"):
        try:
            return datetime.strptime(text or "", layout).date().isoformat()
        except ValueError:
            continue
    return None


def _metadata(root: Element, waveform: Element, leads: list[Element]) -> dict:
    metadata = {
        "format": "muse_xml",
        "units": "mV",
        "manufacturer": "GE",
        "model": child_text(root, "TestDemographics/AcquisitionDevice"),
        "software": child_text(root, "TestDemographics/AcquisitionSoftwareVersion"),
        "muse_version": child_text(root, "MuseInfo/MuseVersion"),
        "recorded_at": _acquisition_date(root),
        "filters": filter_settings(
            child_text(waveform, "HighPassFilter"),
            child_text(waveform, "LowPassFilter"),
            child_text(waveform, "ACFilter"),
        ),
        "amplitude_uv_per_bit": child_text(leads[0], "LeadAmplitudeUnitsPerBit"),
    }
    off = [child_text(lead, "LeadID") for lead in leads if (child_text(lead, "LeadOff") or "").upper() == "TRUE"]
    if off:
        metadata["leads_off"] = off
    return {key: value for key, value in metadata.items() if value}


def read_muse(data: bytes, source: str | None = None) -> Record:
    root = parse_xml(data, WHAT)
    if root.tag != "RestingECG":
        raise EcgFormatError(f"{WHAT}: the root element is <{root.tag}>, not <RestingECG>")
    waveform = _rhythm_waveform(root)
    base = number(child_text(waveform, "SampleBase"), f"{WHAT} SampleBase")
    exponent = number(child_text(waveform, "SampleExponent") or "0", f"{WHAT} SampleExponent")
    leads = waveform.findall("LeadData")
    if not leads:
        raise EcgFormatError(f"{WHAT}: the rhythm waveform has no LeadData")
    names = [child_text(lead, "LeadID") or f"lead {index + 1}" for index, lead in enumerate(leads)]
    columns = [_lead_samples(lead, name) for lead, name in zip(leads, names, strict=True)]
    lengths = {column.size for column in columns}
    if len(lengths) != 1 or 0 in lengths:
        raise EcgFormatError(f"{WHAT}: the leads hold different or zero sample counts ({sorted(lengths)})")
    metadata = _metadata(root, waveform, leads)
    if source:
        metadata["source"] = source
    record = Record(np.column_stack(columns), base * 10.0**exponent, names, metadata)
    return in_standard_order(derive_limb_leads(record))
