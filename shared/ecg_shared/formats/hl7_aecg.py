"""HL7 aECG (``<AnnotatedECG>``, urn:hl7-org:v3, the FDA's annotated ECG): the rhythm series, in mV.

The waveforms are ``component/series`` elements; the one coded ``RHYTHM`` is the recording (a representative beat
sits under ``derivation/derivedSeries`` and is not read). A series holds one or more ``sequenceSet``s; in each, a
time sequence (``TIME_ABSOLUTE`` / ``TIME_RELATIVE``, a ``GLIST_TS`` or ``GLIST_PQ`` whose ``increment`` gives the
sampling interval in s or ms) and one ``SLIST_PQ`` per lead, coded ``MDC_ECG_LEAD_*``, whose values are
``origin + scale × digits`` in the unit of ``scale`` (nV, µV, mV or V). The sequence set with the most leads is read
(the others, if a cart wrote lead groups one after another, are counted in ``metadata["sequence_sets_left_out"]``).

Only the device (model, software, manufacturer), the filters and the series' start date (not the time) are kept;
subjects, investigators, sites and trial identifiers are never read.
"""

from __future__ import annotations

import warnings
from xml.etree.ElementTree import Element

import numpy as np

from ecg_shared.formats.leads import derive_limb_leads, in_standard_order
from ecg_shared.formats.record import EcgFormatError, Record, normalise_lead_name
from ecg_shared.formats.vendor_xml import child_text, filter_settings, number, parse_xml, xml_root_name

WHAT = "HL7 aECG"
_LEAD_PREFIX = "MDC_ECG_LEAD_"
_TIME_CODES = {"TIME_ABSOLUTE", "TIME_RELATIVE"}
_MV_PER_UNIT = {"nV": 1e-6, "uV": 1e-3, "µV": 1e-3, "mV": 1.0, "V": 1000.0}
_SECONDS_PER_UNIT = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_FILTERS = {
    "MDC_ECG_CTL_VBL_ATTR_FILTER_LOW_PASS": "lowpass_hz",
    "MDC_ECG_CTL_VBL_ATTR_FILTER_HIGH_PASS": "highpass_hz",
    "MDC_ECG_CTL_VBL_ATTR_FILTER_NOTCH": "notch_hz",
}


def looks_like_hl7_aecg(head: bytes) -> bool:
    return xml_root_name(head) == "AnnotatedECG"


def _code(element: Element) -> str:
    code = element.find("code")
    return (code.get("code") or "") if code is not None else ""


def _rhythm_series(root: Element) -> Element:
    series = root.findall("component/series")
    for candidate in series:
        if _code(candidate).upper() == "RHYTHM":
            return candidate
    codes = ", ".join(_code(s) or "?" for s in series) or "none"
    raise EcgFormatError(f"{WHAT}: no RHYTHM series (series present: {codes})")


def _quantity(element: Element | None, what: str, units: dict[str, float]) -> float:
    if element is None:
        raise EcgFormatError(f"{what} is missing")
    unit = element.get("unit") or ""
    if unit not in units:
        raise EcgFormatError(f"{what}: unit {unit!r} is not one of {', '.join(units)}")
    return number(element.get("value"), what) * units[unit]


def _sampling_rate(sequences: list[Element]) -> float:
    for sequence in sequences:
        if _code(sequence) in _TIME_CODES:
            interval = _quantity(sequence.find("value/increment"), f"{WHAT} time increment", _SECONDS_PER_UNIT)
            if interval <= 0:
                raise EcgFormatError(f"{WHAT}: the time increment must be positive, got {interval} s")
            return 1.0 / interval
    raise EcgFormatError(f"{WHAT}: the sequence set has no TIME_ABSOLUTE or TIME_RELATIVE sequence (no rate)")


def _lead(sequence: Element, name: str) -> np.ndarray:
    what = f"{WHAT} lead {name}"
    value = sequence.find("value")
    if value is None or (value.get(_XSI_TYPE) or "SLIST_PQ") != "SLIST_PQ":
        raise EcgFormatError(f"{what}: expected an SLIST_PQ value")
    scale = _quantity(value.find("scale"), f"{what} scale", _MV_PER_UNIT)
    origin_element = value.find("origin")
    origin = 0.0 if origin_element is None else _quantity(origin_element, f"{what} origin", _MV_PER_UNIT)
    digits = child_text(value, "digits")
    if digits is None:
        raise EcgFormatError(f"{what}: no digits")
    try:
        # NumPy's C parser, without a Python string per sample (a list of them would take 25 times the text); the
        # "could not be read to its end" warning for a stray token is turned into the error it announces.
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            counts = np.fromstring(digits, dtype=np.float64, sep=" ")
    except (ValueError, DeprecationWarning):
        raise EcgFormatError(f"{what}: the digits are not all numbers") from None
    return (origin + scale * counts).astype(np.float32)


def _lead_sequences(series: Element) -> tuple[list[Element], int]:
    """The sequence set with the most leads (the first of equals), and how many sets with leads there were: a cart
    that records lead groups one after another writes one set per group, of which only one can be the recording."""
    candidates = []
    for sequence_set in series.findall("component/sequenceSet"):
        sequences = sequence_set.findall("component/sequence")
        leads = sum(_code(s).startswith(_LEAD_PREFIX) for s in sequences)
        if leads:
            candidates.append((leads, sequences))
    if not candidates:
        raise EcgFormatError(f"{WHAT}: the rhythm series has no sequence set with leads")
    most = max(leads for leads, _ in candidates)
    return next(sequences for leads, sequences in candidates if leads == most), len(candidates)


def _metadata(series: Element) -> dict:
    device = series.find("author/seriesAuthor")
    metadata = {
        "format": "hl7_aecg",
        "units": "mV",
        "model": child_text(device, "manufacturedSeriesDevice/manufacturerModelName"),
        "software": child_text(device, "manufacturedSeriesDevice/softwareName"),
        "manufacturer": child_text(device, "manufacturerOrganization/name"),
    }
    start = series.find("effectiveTime/low")
    value = start.get("value") if start is not None else None
    if value and len(value) >= 8 and value[:8].isdigit():
        metadata["recorded_at"] = f"{value[:4]}-{value[4:6]}-{value[6:8]}"
    cutoffs: dict[str, str | None] = {}
    for control in series.findall("controlVariable/controlVariable"):
        key = _FILTERS.get(_code(control))
        for component in control.findall("component/controlVariable"):
            quantity = component.find("value")
            if key and quantity is not None and quantity.get("unit") == "Hz":
                cutoffs[key] = quantity.get("value")
    metadata["filters"] = filter_settings(
        cutoffs.get("highpass_hz"), cutoffs.get("lowpass_hz"), cutoffs.get("notch_hz")
    )
    return {key: value for key, value in metadata.items() if value}


def read_hl7_aecg(data: bytes, source: str | None = None) -> Record:
    root = parse_xml(data, WHAT)
    if root.tag != "AnnotatedECG":
        raise EcgFormatError(f"{WHAT}: the root element is <{root.tag}>, not <AnnotatedECG>")
    series = _rhythm_series(root)
    sequences, n_sets = _lead_sequences(series)
    rate = _sampling_rate(sequences)
    names, columns = [], []
    for sequence in sequences:
        code = _code(sequence)
        if code.startswith(_LEAD_PREFIX):
            names.append(normalise_lead_name(code[len(_LEAD_PREFIX) :]))
            columns.append(_lead(sequence, names[-1]))
    lengths = sorted({column.size for column in columns})
    if len(lengths) != 1 or lengths[0] == 0:
        raise EcgFormatError(f"{WHAT}: the leads hold different or zero sample counts ({lengths})")
    metadata = _metadata(series)
    if n_sets > 1:
        metadata["sequence_sets_left_out"] = n_sets - 1
    if source:
        metadata["source"] = source
    return in_standard_order(derive_limb_leads(Record(np.column_stack(columns), rate, names, metadata)))
