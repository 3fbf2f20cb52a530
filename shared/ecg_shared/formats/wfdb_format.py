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
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path, PurePosixPath

import numpy as np

from ecg_shared.formats.record import EcgFormatError, Record, check_expanded_size
from ecg_shared.formats.wfdb_memory import WfdbContent, decode_wfdb

_UNIT_SCALE_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3, "nu": 1.0, "": 1.0}
_COMMENT = re.compile(r"^\s*([A-Za-z][\w .-]*?)\s*:\s*(.*?)\s*$")


def record_base(path: str | Path) -> Path:
    """``x/A00001.hea`` / ``.mat`` / ``.dat`` / ``x/A00001`` -> ``x/A00001``."""
    path = Path(path)
    return path.with_suffix("") if path.suffix.lower() in {".hea", ".dat", ".mat"} else path


def parse_reference(data: bytes) -> dict[str, str]:
    """A CinC-style ``REFERENCE.csv`` (``NAME,LABEL`` rows, no header) as {record name: label}."""
    rows = csv.reader(io.StringIO(data.decode("utf-8-sig", errors="replace")))
    return {row[0].strip(): row[1].strip() for row in rows if len(row) >= 2}


@lru_cache(maxsize=32)
def _reference_labels(reference_csv: str, mtime: float) -> dict[str, str]:
    return parse_reference(Path(reference_csv).read_bytes())


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
    base = record_base(path)
    header = base.with_suffix(".hea")
    if not header.is_file():
        raise EcgFormatError(f"WFDB header not found: {header}")
    content = _decode(
        header.read_bytes(),
        lambda name: (base.parent / PurePosixPath(name).name).read_bytes(),
        lambda: _read_files(base),
    )
    return _to_record(content, str(base), fallback_label=reference_label(base))


def read_wfdb_files(files: dict[str, bytes], source: str | None = None) -> Record:
    """A record from its files' bytes by name: exactly one ``.hea`` and the signal files it names (plus, optionally,
    a CinC-style ``REFERENCE.csv`` for the label). Raises :class:`EcgFormatError`, and nothing else."""
    files = {PurePosixPath(name).name: data for name, data in files.items()}
    headers = [name for name in files if name.lower().endswith(".hea")]
    if len(headers) != 1:
        raise EcgFormatError(f"a WFDB record needs exactly one .hea header, found {len(headers)}")

    def through_files() -> WfdbContent:
        with tempfile.TemporaryDirectory(prefix="ecg-wfdb-") as tmp:
            for name, data in files.items():
                (Path(tmp) / name).write_bytes(data)
            return _read_files(Path(tmp) / Path(headers[0]).stem)

    content = _decode(files[headers[0]], lambda name: files[PurePosixPath(name).name], through_files)
    labels = parse_reference(files["REFERENCE.csv"]) if "REFERENCE.csv" in files else {}
    return _to_record(content, source or content.record_name, fallback_label=labels.get(Path(headers[0]).stem))


def read_wfdb_zip(data: bytes, source: str | None = None) -> Record:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise EcgFormatError(f"not a valid zip archive: {exc}") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        check_expanded_size([m.file_size for m in members], "the zip archive")
        files = {m.filename: archive.read(m) for m in members}
    return read_wfdb_files(files, source)  # which checks for exactly one header


def _decode(header: bytes, read_file: Callable[[str], bytes], through_files: Callable[[], WfdbContent]) -> WfdbContent:
    """In memory when :mod:`wfdb_memory` covers the record, else through ``wfdb.rdrecord`` on files."""
    text = header.decode("ascii", errors="ignore")  # as wfdb reads headers
    try:
        content = decode_wfdb(text, read_file)
    except (KeyError, FileNotFoundError) as exc:
        name = exc.args[0] if isinstance(exc, KeyError) else Path(exc.filename or "?").name
        raise EcgFormatError(f"the WFDB header names signal file {name!r}, which is missing") from None
    except Exception as exc:  # wfdb and NumPy raise many types for malformed records
        raise EcgFormatError(f"cannot read WFDB record: {type(exc).__name__}: {exc}") from None
    content = content or through_files()
    if content.p_signal.size == 0:
        raise EcgFormatError(f"WFDB record {content.record_name} holds no samples")
    return content


def _read_files(base: Path) -> WfdbContent:
    import wfdb

    try:
        raw = wfdb.rdrecord(str(base), physical=True)
    except Exception as exc:  # wfdb raises many types for malformed records
        raise EcgFormatError(f"cannot read WFDB record {base.name}: {exc}") from None
    if raw.p_signal is None:
        raise EcgFormatError(f"WFDB record {base.name} holds no samples")
    return WfdbContent(
        raw.record_name,
        float(raw.fs),
        list(raw.sig_name),
        list(raw.units or []),
        list(raw.comments or []),
        raw.p_signal,
        list(raw.adc_gain) if raw.adc_gain else None,
    )


def _to_record(content: WfdbContent, source: str, fallback_label: str | None = None) -> Record:
    units = [str(u or "").strip().lower() for u in (content.units or [""] * content.p_signal.shape[1])]
    scale = np.array([_UNIT_SCALE_TO_MV.get(u, 1.0) for u in units], dtype=np.float64)
    signal = (content.p_signal * scale).astype(np.float32)
    # wfdb's physical samples are (digital - baseline) / adc_gain, so in mV the gain is adc_gain / scale: the stored
    # form can then be the counts (ecg_shared.db.models.encode_signal checks that they give the samples back exactly).
    gains = content.adc_gain
    counts_per_mv = tuple(float(g) / s for g, s in zip(gains, scale, strict=True)) if gains else None
    fields = parse_comments(content.comments)
    metadata: dict = {"format": "wfdb", "source": source, "record_name": content.record_name, "units": "mV"}
    metadata.update(fields)
    if content.comments:
        metadata["comments"] = content.comments
    label = fields.get("dx") or fields.get("label") or fallback_label
    if label:
        metadata["label"] = label
    return Record(signal, content.fs, list(content.sig_name), metadata, counts_per_mv=counts_per_mv)


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
