"""Numeric lead codes of the binary formats, mapped to the platform's lead names.

SCP-ECG (EN 1064, section 3) numbers its leads; DICOM waveforms reuse the same numbers in their channel source codes,
as SCPECG code values ``5.6.3-9-N`` and as MDC code values ``2:N`` (ISO/IEEE 11073, whose ECG lead terms follow the
SCP numbering). ISHNE Holter files have their own, shorter table.
"""

from __future__ import annotations

import re

from ecg_shared.formats.record import STANDARD_12_LEADS, normalise_lead_name

# EN 1064 lead identification, the codes a recording's leads use. Calibration and Frank-component codes (24-60, 79+)
# are not ECG leads for classification; they map to None.
SCP_LEADS: dict[int, str] = {
    1: "I",
    2: "II",
    3: "V1",
    4: "V2",
    5: "V3",
    6: "V4",
    7: "V5",
    8: "V6",
    9: "V7",
    10: "V2R",
    11: "V3R",
    12: "V4R",
    13: "V5R",
    14: "V6R",
    15: "V7R",
    16: "X",
    17: "Y",
    18: "Z",
    19: "CC5",
    20: "CM5",
    61: "III",
    62: "aVR",
    63: "aVL",
    64: "aVF",
    65: "-aVR",
    66: "V8",
    67: "V9",
    68: "V8R",
    69: "V9R",
    70: "D",
    71: "A",
    72: "J",
}

# ISHNE 1.0 lead specification codes.
ISHNE_LEADS: dict[int, str] = {
    1: "bipolar",
    2: "X",
    3: "Y",
    4: "Z",
    5: "I",
    6: "II",
    7: "III",
    8: "aVR",
    9: "aVL",
    10: "aVF",
    11: "V1",
    12: "V2",
    13: "V3",
    14: "V4",
    15: "V5",
    16: "V6",
    17: "ES",
    18: "AS",
    19: "AI",
    20: "S",
    21: "A",
    22: "Nehb I",
}

# Lead names a channel label may carry: the standard twelve and the extra chest, right-sided and vector leads.
KNOWN_LEADS = frozenset(STANDARD_12_LEADS) | {name for name in SCP_LEADS.values()}

_LEAD_WORDS = re.compile(r"^(?:ecg|ekg)?[\s_:-]*(?:lead)?[\s_:-]*", re.IGNORECASE)
_PARENTHESES = re.compile(r"\s*\(.*?\)\s*")


# Limb leads labelled by their electrodes, positive first.
_ELECTRODE_PAIRS = {"LA-RA": "I", "LL-RA": "II", "LL-LA": "III"}


def lead_from_text(text: str) -> str:
    """A lead name from a label such as ``Lead I (Einthoven)``, ``ECG II``, ``EKG V1``, ``ECG LL-RA`` or ``aVR``."""
    cleaned = _PARENTHESES.sub(" ", str(text)).strip()
    cleaned = _LEAD_WORDS.sub("", cleaned, count=1).strip() or cleaned
    return _ELECTRODE_PAIRS.get(cleaned.upper().replace(" ", ""), normalise_lead_name(cleaned))


def lead_from_code(scheme: str, value: str) -> str | None:
    """A lead name from a DICOM channel source code (SCPECG ``5.6.3-9-N`` or MDC ``2:N``), or None."""
    scheme, value = str(scheme).strip().upper(), str(value).strip()
    number: str | None = None
    if scheme.startswith("SCPECG") and value.startswith("5.6.3-9-"):
        number = value.rsplit("-", 1)[1]
    elif scheme.startswith("MDC") and value.startswith("2:"):
        number = value[2:]
    elif value.upper().startswith("MDC_ECG_LEAD_"):  # the MDC reference identifier instead of its code
        lead = lead_from_text(value[len("MDC_ECG_LEAD_") :].replace("NEG", "-"))
        return lead if lead in KNOWN_LEADS else None
    if number is None or not number.isdigit():
        return None
    return SCP_LEADS.get(int(number))


def standard_order(names: list[str]) -> list[int]:
    """Column order that puts the standard twelve leads first, in their usual order, then the others as they came."""
    rank = {name: k for k, name in enumerate(STANDARD_12_LEADS)}
    return sorted(range(len(names)), key=lambda k: (rank.get(names[k], len(rank)), k))


def distinct_lead_names(names: list[str], what: str) -> list[str]:
    """The names, with repeats of a non-specific name (Holters' generic ``bipolar`` channels, unknown codes, a
    plain ``ECG`` label) told apart by channel number; a named lead given twice is refused, since which is which
    cannot be known."""
    from ecg_shared.formats.record import EcgFormatError

    repeated = {name for name in names if names.count(name) > 1}
    ambiguous = sorted(repeated & KNOWN_LEADS)
    if ambiguous:
        raise EcgFormatError(f"{what} names lead(s) {', '.join(ambiguous)} more than once")
    return [f"{name} (channel {k + 1})" if name in repeated else name for k, name in enumerate(names)]
