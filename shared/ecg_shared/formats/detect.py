"""Format detection and the single entry point :func:`read_ecg`."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ecg_shared.formats.dicom_ecg import looks_like_dicom, read_dicom_ecg
from ecg_shared.formats.edf import looks_like_edf, read_edf
from ecg_shared.formats.hl7_aecg import looks_like_hl7_aecg, read_hl7_aecg
from ecg_shared.formats.identifiers import mask_identifiers, patient_identifiers
from ecg_shared.formats.ishne import looks_like_ishne, read_ishne
from ecg_shared.formats.muse import looks_like_muse, read_muse
from ecg_shared.formats.philips import looks_like_philips, read_philips
from ecg_shared.formats.record import EcgFormatError, Record
from ecg_shared.formats.scp_ecg import looks_like_scp, read_scp_ecg
from ecg_shared.formats.tabular import read_csv, read_numpy
from ecg_shared.formats.vendor_xml import xml_root_name
from ecg_shared.formats.wellnest import looks_like_wellnest, read_wellnest
from ecg_shared.formats.wfdb_format import read_wfdb_path, read_wfdb_zip

# Clinical formats, recognised from their content (magic bytes, XML root element) and read from bytes: name,
# recogniser (given the first HEAD_BYTES), reader. Checked in this order, before the formats a file extension decides.
HEAD_BYTES = 65536
ClinicalReader = Callable[..., Record]
CLINICAL_FORMATS: tuple[tuple[str, Callable[[bytes], bool], ClinicalReader], ...] = (
    ("dicom_ecg", looks_like_dicom, read_dicom_ecg),
    ("edf", looks_like_edf, read_edf),
    ("ishne", looks_like_ishne, read_ishne),
    ("muse_xml", looks_like_muse, read_muse),
    ("philips_xml", looks_like_philips, read_philips),
    ("hl7_aecg", looks_like_hl7_aecg, read_hl7_aecg),
    ("scp_ecg", looks_like_scp, read_scp_ecg),
)
_CLINICAL_READERS = {name: reader for name, _, reader in CLINICAL_FORMATS}
_XML_ROOTS = "GE MUSE <RestingECG>, Philips <restingecgdata> or HL7 <AnnotatedECG>"

FORMATS = ("wellnest", "wfdb", "csv", "npy", "npz", *_CLINICAL_READERS)
_EXTENSIONS = {
    ".csv": "csv",
    ".txt": "csv",
    ".npy": "npy",
    ".npz": "npz",
    ".hea": "wfdb",
    ".mat": "wfdb",
    ".dat": "wfdb",
    ".zip": "wfdb",
}

Source = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]


def _zip_members(data: bytes) -> list[str]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return []


def _looks_like_wfdb_header(text: str) -> bool:
    first = next((line for line in text.splitlines() if line.strip() and not line.startswith("#")), "")
    parts = first.split()
    return len(parts) >= 2 and "," not in first and parts[1].isdigit()


def detect_format(data: bytes, name: str | None = None) -> str:
    """Guess the format of ``data`` from its content (and the file name's extension, when given)."""
    if not data:
        raise EcgFormatError("the input is empty")
    if data[:6] == b"\x93NUMPY":
        return "npy"
    if data[:4] == b"PK\x03\x04":
        members = [m.lower() for m in _zip_members(data)]
        if any(m.endswith(".hea") for m in members):
            return "wfdb"
        if members and all(m.endswith(".npy") for m in members):
            return "npz"
        raise EcgFormatError("zip archive holds neither a WFDB record (.hea) nor NumPy arrays")
    head = data[:HEAD_BYTES]
    for fmt, recognises, _ in CLINICAL_FORMATS:
        if recognises(head):
            return fmt
    root = xml_root_name(head)
    if root is not None:
        raise EcgFormatError(f"unknown ECG format: an XML document with root <{root}>, not {_XML_ROOTS}")
    if looks_like_wellnest(data):
        return "wellnest"
    suffix = Path(name).suffix.lower() if name else ""
    if suffix in (".csv", ".txt"):
        return "csv"
    try:
        text = data[:4096].decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        if _looks_like_wfdb_header(text):
            raise EcgFormatError("a WFDB header alone holds no samples: send a zip of the .hea and its .dat/.mat")
        if "," in text:
            return "csv"
    raise EcgFormatError(f"unknown ECG format: not {', '.join(FORMATS)}")


def _as_bytes(source: Any) -> tuple[bytes, str | None]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), None
    if hasattr(source, "read"):
        data = source.read()
        if isinstance(data, str):
            data = data.encode()
        return data, getattr(source, "name", None)
    raise EcgFormatError(f"cannot read an ECG from a {type(source).__name__}")


def _read_path(path: Path, fmt: str | None, hints: dict) -> Record:
    suffix = path.suffix.lower()
    if fmt in (None, "wfdb") and (
        suffix in (".hea", ".dat", ".mat") or (not suffix and path.with_suffix(".hea").exists())
    ):
        return read_wfdb_path(path)
    if not path.is_file():
        raise EcgFormatError(f"no such file: {path}")
    return _read_bytes(path.read_bytes(), fmt, hints, name=str(path))


def _with_identifiers(record: Record, fmt: str, data: bytes) -> Record:
    """The file's patient identifiers kept in memory with the record, and masked in the name it was read under."""
    record.identifiers = patient_identifiers(fmt, data)
    if record.identifiers and isinstance(record.metadata.get("source"), str):
        record.metadata["source"] = mask_identifiers(
            record.metadata["source"], record.identifiers, hashlib.sha256(data).hexdigest()
        )
    return record


def _read_bytes(data: bytes, fmt: str | None, hints: dict, name: str | None) -> Record:
    fmt = fmt or detect_format(data, name)
    source = hints.pop("source", None) or name
    if fmt in _CLINICAL_READERS:
        try:
            record = _CLINICAL_READERS[fmt](data, source=source)
        except Exception as exc:
            error = exc if isinstance(exc, EcgFormatError) else _unreadable(fmt, exc)
            error.identifiers = patient_identifiers(fmt, data)  # to mask the file's name where the failure is kept
            raise error from None
        return _with_identifiers(record, fmt, data)
    if fmt == "wellnest":
        return read_wellnest(data, gain=hints.get("gain"), source=source)
    if fmt == "wfdb":
        return read_wfdb_zip(data, source=source)
    if fmt == "csv":
        return read_csv(data, fs=hints.get("fs"), units=hints.get("units"), source=source)
    if fmt in ("npy", "npz"):
        return read_numpy(data, fs=hints.get("fs"), leads=hints.get("leads"), units=hints.get("units"), source=source)
    raise EcgFormatError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def read_ecg(source: Source, format: str | None = None, **hints: Any) -> Record:  # noqa: A002 - public API name
    """Read an ECG from a path, bytes or a binary file object.

    ``format`` is one of :data:`FORMATS` or ``None`` to detect it. Hints: ``fs`` (Hz) for formats without a rate,
    ``leads`` (names, NumPy), ``units`` (``mV``/``uV``/``V``), ``gain`` (Wellnest counts per mV), ``source``.
    Raises :class:`EcgFormatError`, and nothing else, for input it cannot read.
    """
    if format is not None and format not in FORMATS:
        raise EcgFormatError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    try:
        if isinstance(source, (str, os.PathLike)):
            return _read_path(Path(source), format, dict(hints))
        data, name = _as_bytes(source)
        return _read_bytes(data, format, dict(hints), name)
    except EcgFormatError:
        raise
    except Exception as exc:  # the readers' libraries (wfdb, numpy) raise many types on hostile input
        raise _unreadable(format, exc) from None


def _unreadable(fmt: str | None, exc: Exception) -> EcgFormatError:
    return EcgFormatError(f"cannot read the {fmt or 'ECG'} input: {type(exc).__name__}: {exc}")
