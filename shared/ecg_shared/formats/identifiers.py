"""The patient identifiers a clinical file carries, read only so that names made from them can be masked.

The readers never copy patient fields into a record. But hospitals and devices name their exports after the patient
(``ecg_900657176_1.xml``, ``ECG_P28.01.ecg``), and a blob's or file's name becomes the stored recording's source.
:func:`patient_identifiers` reads a file's identifying values (patient IDs, names, birth dates, and the people and
places of the test); they travel with the record in memory only (``Record.identifiers``: never stored, logged or
returned), and :func:`mask_identifiers` replaces them in a name before the name is stored.

>>> mask_identifiers("clinic/ecg_900657176_1.xml", frozenset({"900657176"}), "ab" * 32)
'clinic/ecg_[patient-abababab]_1.xml'
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable, Iterable

from ecg_shared.formats.vendor_xml import parse_xml

# In place of the identifiers of a clinical file whose identifying fields could not be parsed: which part of its name
# came from the patient is unknown, so :func:`mask_identifiers` masks the whole file name (the folders stay).
UNPARSED = "\0identifying fields not parsed"

# Values too common or too short to mask: "none none", a sex, an empty field's placeholder.
_NOT_IDENTIFYING = {"none", "none none", "unknown", "anonymous", "anon", "male", "female", "n/a", "x", "test", "demo"}
_MIN_LENGTH = 4


def identifying(values: Iterable[str | None]) -> frozenset[str]:
    """The values worth masking: stripped, at least 4 characters, not a placeholder."""
    kept = set()
    for value in values:
        text = (value or "").replace("\0", " ").strip()
        if len(text) >= _MIN_LENGTH and text.lower() not in _NOT_IDENTIFYING and not set(text) <= {"0", " ", "-"}:
            kept.add(text)
    return frozenset(kept)


def mask_identifiers(name: str, identifiers: frozenset[str], content_sha256: str) -> str:
    """``name`` with every identifier in it (any case) replaced by ``[patient-<8 hex of the content's SHA-256>]``:
    the same file keeps the same name, two patients' files stay apart, and the mark leads back to no one. With
    :data:`UNPARSED` among them, the whole file name but its extension is masked.

    >>> mask_identifiers("clinic/ecg_1_x.xml", frozenset({UNPARSED}), "cd" * 32)
    'clinic/[patient-cdcdcdcd].xml'
    """
    if not identifiers:
        return name
    mark = f"[patient-{content_sha256[:8]}]"
    if UNPARSED in identifiers:
        folder, slash, file_name = name.rpartition("/")
        extension = re.search(r"\.[A-Za-z0-9]{1,8}$", file_name)
        return f"{folder}{slash}{mark}{extension.group(0) if extension else ''}"
    for value in sorted(identifiers, key=len, reverse=True):  # longest first: "Clark Kent" before "Clark"
        name = re.sub(re.escape(value), mark, name, flags=re.IGNORECASE)
    return name


# XML: elements (by lower-case local name) whose text, or ``extension`` / ``value`` attribute, identifies someone.
_XML_TAG = re.compile(r"(id|mrn|name|birth|given|family|street|city|sitename|physician|operator|technician)$")


def _xml_identifiers(data: bytes) -> frozenset[str]:
    values = []
    for element in parse_xml(data, "XML").iter():
        tag = element.tag.rsplit("}", 1)[-1].lower() if isinstance(element.tag, str) else ""
        if _XML_TAG.search(tag) or tag in ("lastname", "firstname", "middlename", "dateofbirth", "birthtime"):
            values.append(element.text)
            values.extend(element.get(attribute) for attribute in ("extension", "value"))
    return identifying(values)


def _dicom_identifiers(data: bytes) -> frozenset[str]:
    import pydicom

    wanted = [
        "PatientName",
        "PatientID",
        "OtherPatientIDs",
        "PatientBirthDate",
        "ReferringPhysicianName",
        "PerformingPhysicianName",
        "OperatorsName",
        "InstitutionName",
    ]
    dataset = pydicom.dcmread(io.BytesIO(data), force=True, specific_tags=wanted)
    values: list[str] = []
    for keyword in wanted:
        value = dataset.get(keyword)
        for item in value if isinstance(value, pydicom.multival.MultiValue) else [value]:
            if item is None:
                continue
            values.append(str(item))
            if isinstance(item, pydicom.valuerep.PersonName):
                values.extend(str(c) for c in item.components)
                values.extend(part for part in str(item).split("^"))
    return identifying(values)


def _scp_identifiers(data: bytes) -> frozenset[str]:
    from ecg_shared.formats.scp_ecg import _ScpFile

    scp = _ScpFile(data)
    scp.read_pointers()
    body = scp.body(1) or b""
    values, position = [], 0
    text_tags = {0, 1, 2, 3, 30, 31, 32, 34}  # last, first, ID, second last name; physicians, technician
    while position + 3 <= len(body):
        tag, length = body[position], struct.unpack_from("<H", body, position + 1)[0]
        if tag == 255:
            break
        if tag in text_tags:
            values.append(body[position + 3 : position + 3 + length].split(b"\0")[0].decode("latin-1"))
        position += 3 + length
    return identifying(values)


def _ishne_identifiers(data: bytes) -> frozenset[str]:
    header = data[10:532]  # after the magic number and the CRC
    first, last, patient_id = (
        header[a:b].split(b"\0")[0].decode("latin-1") for a, b in ((18, 58), (58, 98), (98, 118))
    )
    return identifying([first, last, patient_id, f"{first} {last}"])


def _edf_identifiers(data: bytes) -> frozenset[str]:
    patient = data[8:88].decode("latin-1").strip()
    recording = data[88:168].decode("latin-1").strip()
    # EDF+: "code sex birthdate name ..." and "Startdate date admincode technician equipment"; names use "_".
    parts = patient.split() + recording.split()[2:4]
    values = [patient, *parts, *(part.replace("_", " ") for part in parts)]
    return identifying([v for v in values if v != "dd-MMM-yyyy"])


_BY_FORMAT: dict[str, Callable[[bytes], frozenset[str]]] = {
    "muse_xml": _xml_identifiers,
    "philips_xml": _xml_identifiers,
    "hl7_aecg": _xml_identifiers,
    "dicom_ecg": _dicom_identifiers,
    "scp_ecg": _scp_identifiers,
    "ishne": _ishne_identifiers,
    "edf": _edf_identifiers,
}


def patient_identifiers(fmt: str, data: bytes) -> frozenset[str]:
    """The identifying values of a clinical file of format ``fmt`` (empty for the other formats). A file whose
    identifying fields cannot be parsed gives :data:`UNPARSED` (its whole name gets masked); this never raises."""
    reader = _BY_FORMAT.get(fmt)
    if reader is None:
        return frozenset()
    try:
        return reader(bytes(data))
    except Exception:
        return frozenset({UNPARSED})
