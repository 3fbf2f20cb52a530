"""ISHNE 1.0 Holter ECG files (``.ecg``), decoded by the project's own code over the documented header.

Layout: the magic ``ISHNE1.0``, a CRC-CCITT (2 bytes, over everything from byte 10 up to the ECG block), a 512-byte
fixed header, an optional variable-length block, then the samples: 16-bit little-endian integers, interleaved by
sample across the leads. The fixed header gives the samples per lead, the offsets of the variable block and the ECG
block, the lead count, each lead's code (``ISHNE_LEADS``: 5-16 are I, II, III, aVR, aVL, aVF, V1-V6) and resolution
in nV per unit, the recorder and the sampling rate.

The annotation file of the same format (magic ``ANN  1.0``) is not an ECG and is refused by name. Names, the
subject ID and the birth date in the header are skipped unread; the recorder, record date and start time are kept.
"""

from __future__ import annotations

import binascii
import struct
from typing import Any

import numpy as np

from ecg_shared.formats.lead_codes import ISHNE_LEADS, distinct_lead_names, standard_order
from ecg_shared.formats.leads import derive_limb_leads
from ecg_shared.formats.record import EcgFormatError, Record

MAGIC = b"ISHNE1.0"
ANNOTATION_MAGIC = b"ANN  1.0"
_PREAMBLE = 10  # magic + CRC
_FIXED_HEADER = 512
_MAX_LEADS = 12


def looks_like_ishne(head: bytes) -> bool:
    """True for an ISHNE ECG file or its annotation file (which the reader then refuses by name)."""
    return head[:8] in (MAGIC, ANNOTATION_MAGIC)


def _text(raw: bytes) -> str:
    return raw.split(b"\0")[0].decode("latin-1").strip()


def _date(day: int, month: int, year: int) -> str | None:
    if 1 <= day <= 31 and 1 <= month <= 12 and year > 0:
        return f"{year:04d}-{month:02d}-{day:02d}"
    return None


def read_ishne(data: bytes, source: str | None = None) -> Record:
    """Decode an ISHNE Holter ECG file into millivolts."""
    data = bytes(data)
    if data[:8] == ANNOTATION_MAGIC:
        raise EcgFormatError("this is an ISHNE annotation file (.ann, beat labels), not an ECG: send the .ecg file")
    if data[:8] != MAGIC:
        raise EcgFormatError("not an ISHNE file: it does not start with 'ISHNE1.0'")
    if len(data) < _PREAMBLE + _FIXED_HEADER:
        raise EcgFormatError(f"ISHNE file of {len(data)} bytes is shorter than its 522-byte header (truncated)")
    header = data[_PREAMBLE : _PREAMBLE + _FIXED_HEADER]
    variable_size, n_samples, variable_offset, ecg_offset, _version = struct.unpack_from("<iiiih", header, 0)
    if ecg_offset < _PREAMBLE + _FIXED_HEADER or ecg_offset > len(data):
        raise EcgFormatError(f"ISHNE header puts the ECG block at byte {ecg_offset}, outside the file (truncated?)")
    if variable_size < 0 or (variable_size and variable_offset + variable_size > ecg_offset):
        raise EcgFormatError(f"ISHNE variable-length block ({variable_size} bytes) overlaps the ECG block")
    stored_crc = struct.unpack_from("<H", data, 8)[0]
    # The format's description puts the variable block under the CRC; some writers cover the fixed header only.
    covered = {binascii.crc_hqx(data[_PREAMBLE:end], 0xFFFF) for end in (ecg_offset, _PREAMBLE + _FIXED_HEADER)}
    if stored_crc not in covered:
        raise EcgFormatError("ISHNE header CRC does not match its content (corrupt header)")

    record_date = struct.unpack_from("<3h", header, 128)
    start_time = struct.unpack_from("<3h", header, 140)
    n_leads = struct.unpack_from("<h", header, 146)[0]
    if not 1 <= n_leads <= _MAX_LEADS:
        raise EcgFormatError(f"ISHNE header gives {n_leads} leads (1-{_MAX_LEADS})")
    codes = struct.unpack_from(f"<{n_leads}h", header, 148)
    resolutions = struct.unpack_from(f"<{n_leads}h", header, 196)
    recorder = _text(header[222:262])
    rate = struct.unpack_from("<h", header, 262)[0]
    if rate <= 0:
        raise EcgFormatError(f"ISHNE header gives a sampling rate of {rate} Hz")
    if n_samples <= 0:
        raise EcgFormatError(f"ISHNE header gives {n_samples} samples per lead")
    if min(resolutions) <= 0:
        raise EcgFormatError(f"ISHNE header gives lead resolutions {list(resolutions)} nV: each must be positive")
    needed = n_samples * n_leads * 2
    held = len(data) - ecg_offset
    if held < needed:
        raise EcgFormatError(
            f"ISHNE file is truncated: the header says {n_samples} samples x {n_leads} leads ({needed} bytes), "
            f"the ECG block holds {held} bytes"
        )

    names = distinct_lead_names([ISHNE_LEADS.get(code, f"lead code {code}") for code in codes], "ISHNE header")
    raw = np.frombuffer(data, dtype="<i2", count=n_samples * n_leads, offset=ecg_offset).reshape(n_samples, n_leads)
    signal = np.empty((n_samples, n_leads), dtype=np.float32)
    for column, resolution in enumerate(resolutions):
        np.multiply(raw[:, column], np.float32(resolution / 1e6), out=signal[:, column], casting="unsafe")

    metadata: dict[str, Any] = {
        "format": "ishne",
        "resolution_nv": list(resolutions),
        "lead_codes": list(codes),
    }
    if recorder:
        metadata["device"] = recorder
    recorded_on = _date(*record_date)
    if recorded_on:
        hour, minute, second = start_time
        if 0 <= hour < 24 and 0 <= minute < 60 and 0 <= second < 60:
            recorded_on += f"T{hour:02d}:{minute:02d}:{second:02d}"
        metadata["recorded_at"] = recorded_on
    if held > needed:
        metadata["trailing_bytes_ignored"] = held - needed
    if source:
        metadata["source"] = source
    order = standard_order(names)
    return derive_limb_leads(Record(signal[:, order], float(rate), [names[k] for k in order], metadata))
