"""PhysioNet WFDB records (``.hea`` with ``.dat`` or ``.mat``) through the wfdb package, plain or zipped.

Header comment lines of the form ``#Key: value`` become metadata (``#Dx: Normal`` -> ``metadata["dx"]``, and the
label). A CinC-style ``REFERENCE.csv`` (``NAME,LABEL``) beside the header also supplies the label.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from ecg_shared.formats.record import EcgFormatError, Record

MAX_UNZIPPED_BYTES = 256 * 1024 * 1024
_UNIT_SCALE_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3, "nu": 1.0, "": 1.0}
_COMMENT = re.compile(r"^\s*([A-Za-z][\w .-]*?)\s*:\s*(.*?)\s*$")


def record_base(path: str | Path) -> Path:
    """``x/A00001.hea`` / ``.mat`` / ``.dat`` / ``x/A00001`` -> ``x/A00001``."""
    path = Path(path)
    return path.with_suffix("") if path.suffix.lower() in {".hea", ".dat", ".mat"} else path


@lru_cache(maxsize=32)
def _reference_labels(reference_csv: str, mtime: float) -> dict[str, str]:
    with open(reference_csv, newline="") as handle:
        return {row[0].strip(): row[1].strip() for row in csv.reader(handle) if len(row) >= 2}


def reference_label(base: Path) -> str | None:
    """The label for ``base`` in a ``REFERENCE.csv`` beside it, if there is one."""
    reference = base.parent / "REFERENCE.csv"
    if not reference.is_file():
        return None
    return _reference_labels(str(reference), reference.stat().st_mtime).get(base.name)


def parse_comments(comments: list[str]) -> dict[str, str]:
    fields = {}
    for line in comments:
        match = _COMMENT.match(line)
        if match:
            fields[match.group(1).strip().lower().replace(" ", "_")] = match.group(2)
    return fields


def read_wfdb_path(path: str | Path) -> Record:
    import wfdb

    base = record_base(path)
    if not base.with_suffix(".hea").is_file():
        raise EcgFormatError(f"WFDB header not found: {base.with_suffix('.hea')}")
    try:
        raw = wfdb.rdrecord(str(base), physical=True)
    except Exception as exc:  # wfdb raises many types for malformed records
        raise EcgFormatError(f"cannot read WFDB record {base.name}: {exc}") from None
    if raw.p_signal is None or raw.p_signal.size == 0:
        raise EcgFormatError(f"WFDB record {base.name} holds no samples")
    units = [str(u or "").strip().lower() for u in (raw.units or [""] * raw.n_sig)]
    scale = np.array([_UNIT_SCALE_TO_MV.get(u, 1.0) for u in units], dtype=np.float64)
    signal = (raw.p_signal * scale).astype(np.float32)

    comments = list(raw.comments or [])
    fields = parse_comments(comments)
    metadata: dict = {"format": "wfdb", "source": str(base), "record_name": raw.record_name, "units": "mV"}
    metadata.update(fields)
    if comments:
        metadata["comments"] = comments
    label = fields.get("dx") or fields.get("label") or reference_label(base)
    if label:
        metadata["label"] = label
    return Record(signal, float(raw.fs), list(raw.sig_name), metadata)


def read_wfdb_zip(data: bytes, source: str | None = None) -> Record:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise EcgFormatError(f"not a valid zip archive: {exc}") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        headers = [m for m in members if m.filename.lower().endswith(".hea")]
        if len(headers) != 1:
            raise EcgFormatError(f"a WFDB zip must hold exactly one .hea header, found {len(headers)}")
        if sum(m.file_size for m in members) > MAX_UNZIPPED_BYTES:
            raise EcgFormatError("zip archive expands beyond the 256 MB limit")
        with tempfile.TemporaryDirectory(prefix="ecg-wfdb-") as tmp:
            for member in members:
                name = Path(member.filename).name  # flatten: never write outside tmp
                if name:
                    (Path(tmp) / name).write_bytes(archive.read(member))
            record = read_wfdb_path(Path(tmp) / Path(headers[0].filename).name)
    record.metadata["source"] = source or record.metadata.get("record_name")
    return record


def zip_wfdb_record(path: str | Path) -> bytes:
    """A WFDB record (its ``.hea`` and the ``.dat``/``.mat`` beside it) as one zip: the upload form of a record."""
    base = record_base(path)
    files = [base.with_suffix(suffix) for suffix in (".hea", ".dat", ".mat") if base.with_suffix(suffix).is_file()]
    if base.with_suffix(".hea") not in files:
        raise EcgFormatError(f"WFDB header not found: {base.with_suffix('.hea')}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in files:
            archive.write(file, file.name)
    return buffer.getvalue()
