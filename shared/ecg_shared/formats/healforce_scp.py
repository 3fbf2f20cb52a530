"""Healforce SCP-ECG exports (the Prince 180D handheld recorder): an SCP-ECG layout that departs from EN 1064 in
ways the standard reader refuses, read here only when the file proves it is one, never by guessing.

What makes a file one (every point is checked, else :func:`ecg_shared.formats.scp_ecg.read_scp_ecg` answers with
the departures it found):

- section 0's reserved field is not ``SCPECG`` and its pointers are 0-based byte offsets;
- the file size is a 16-bit number in bytes 4-5, and the file's CRC is CRC-16/XMODEM (CRC-CCITT started at 0, not
  at 0xFFFF) over bytes 2 up to that size, stored byte-swapped: it covers every sample, so a corrupt file is refused;
- each standard section's CRC is CRC-16/XMODEM too (section 6's byte-swapped); section 9 is the vendor's own.

How the samples are stored: section 6 holds one stream, not one per lead, in which the leads alternate sample by
sample; four samples sit in three 16-bit words (bits 0-9 of each word a sample, bits 10-13 four of the fourth
sample's 12 bits, of which bits 0-9 are the sample, and bits 14-15 the device's beat marks). A sample is a 10-bit
offset-binary value (512 is 0), times section 6's amplitude multiplier in nV. Section 6's interval field holds the
rate in Hz (150), not µs.

Section 3 names no leads. Three leads are named I, II and III only where the signal proves it: Einthoven's law
(I + III = II) must hold to within a quarter of lead II's size. Section 1's date puts its year big-endian; the patient
tags are skipped unread, as in the standard reader.
"""

from __future__ import annotations

import binascii
import struct
from typing import Any

import numpy as np

from ecg_shared.formats.record import EcgFormatError, Record

# RMS of I + III - II over the RMS of II, below which three leads are I, II and III. The Prince 180D sample: 0.14
# (its channels' gains differ by a few per cent); the two other orders of its channels: 1.4 and 2.8.
EINTHOVEN_TOLERANCE = 0.25
_HEADER = struct.Struct("<HHIBB6s")
_POINTER = struct.Struct("<HII")
VENDOR_SECTIONS = {9}  # their CRC is not checked: the vendor's own layout


def _xmodem(data: bytes) -> int:
    return binascii.crc_hqx(data, 0)


def _swapped(crc: int) -> int:
    return ((crc & 0xFF) << 8) | (crc >> 8)


def _size16(data: bytes) -> int:
    return struct.unpack_from("<H", data, 4)[0] if len(data) >= 6 else 0


def is_healforce(data: bytes) -> bool:
    """True when ``data`` has the Healforce framing: non-standard section 0, 16-bit size, byte-swapped XMODEM CRC."""
    if len(data) < 6 + _HEADER.size + _POINTER.size or struct.unpack_from("<H", data, 2)[0] != 0:
        return False
    size = _size16(data)
    _, sid, _, _, _, reserved = _HEADER.unpack_from(data, 6)
    first_pointer = _POINTER.unpack_from(data, 6 + _HEADER.size)
    if sid != 0 or reserved == b"SCPECG" or first_pointer[::2] != (0, 6) or not 6 + _HEADER.size < size <= len(data):
        return False
    return _swapped(_xmodem(data[2:size])) == struct.unpack_from("<H", data, 0)[0]


def read_healforce(data: bytes, source: str | None = None) -> Record:
    """Decode a Healforce export (:func:`is_healforce` must hold) into millivolts."""
    sections = _sections(data)
    if 3 not in sections or 6 not in sections:
        raise EcgFormatError("Healforce SCP-ECG: no section 3 (leads) or 6 (rhythm data)")
    n_leads = sections[3][0] if sections[3] else 0
    if n_leads not in (1, 3):
        raise EcgFormatError(f"Healforce SCP-ECG: section 3 declares {n_leads} leads; these exports hold 1 or 3")
    body = sections[6]
    if len(body) < 8:
        raise EcgFormatError("Healforce SCP-ECG: section 6 is too short for its header")
    avm_nv, rate_hz, difference, bimodal, length = struct.unpack_from("<HHBBH", body, 0)
    if avm_nv == 0 or not 50 <= rate_hz <= 2000 or difference or bimodal:
        raise EcgFormatError(
            f"Healforce SCP-ECG: section 6 gives {avm_nv} nV per unit, {rate_hz} Hz, difference encoding {difference} "
            f"and bimodal compression {bimodal} (expected a multiplier, 50-2000 Hz, neither encoding)"
        )
    stream = body[8 : 8 + length]
    if length == 0:
        raise EcgFormatError("Healforce SCP-ECG: the rhythm stream holds no samples")
    if len(stream) != length or length % 6 or (length // 6 * 4) % n_leads:
        raise EcgFormatError(
            f"Healforce SCP-ECG: the rhythm stream holds {len(stream)} of {length} bytes, which is not whole groups "
            f"of 4 samples for {n_leads} leads"
        )
    signal = unpack_samples(stream).reshape(-1, n_leads).astype(np.float32) * np.float32(avm_nv / 1e6)
    names = ["ECG"] if n_leads == 1 else _limb_leads(signal)
    metadata: dict[str, Any] = {
        "format": "scp_ecg",
        "variant": "healforce",
        "amplitude_nv": avm_nv,
        "departures_from_standard": [
            "section 0's reserved field is not 'SCPECG'",
            "section offsets are 0-based, not 1-based",
            "16-bit file size and byte-swapped CRC-16/XMODEM checksums, not CRC-CCITT",
            "one interleaved rhythm stream of packed 10-bit samples, not Huffman-coded streams per lead",
            "section 3 names no leads" + (": named I, II, III by Einthoven's law" if n_leads == 3 else ""),
        ],
    }
    recorded_at = _recorded_at(sections.get(1, b""))
    if recorded_at:
        metadata["recorded_at"] = recorded_at
    if source:
        metadata["source"] = source
    return Record(signal, float(rate_hz), names, metadata)


def unpack_samples(stream: bytes) -> np.ndarray:
    """The stream's samples in stored order (offset removed): four 10-bit samples from every three 16-bit words."""
    words = np.frombuffer(stream, dtype="<u2").reshape(-1, 3).astype(np.int32)
    nibbles = (words >> 10) & 0xF
    fourth = (nibbles[:, 0] << 8) | (nibbles[:, 1] << 4) | nibbles[:, 2]
    samples = np.column_stack([words, fourth]) & 0x3FF
    return (samples - 512).reshape(-1)


def _sections(data: bytes) -> dict[int, bytes]:
    """Each section's body by id, every standard section's CRC checked."""
    _, _, length, _, _, _ = _HEADER.unpack_from(data, 6)
    pointers = data[6 + _HEADER.size : 6 + length]
    size = _size16(data)
    sections: dict[int, bytes] = {}
    for k in range(0, len(pointers) - _POINTER.size + 1, _POINTER.size):
        sid, length, offset = _POINTER.unpack_from(pointers, k)
        if length == 0:
            continue
        if length < _HEADER.size or offset + length > size:
            raise EcgFormatError(f"Healforce SCP-ECG: section {sid} lies outside the file's {size} bytes (truncated)")
        raw = data[offset : offset + length]
        crc, found_id = struct.unpack_from("<HH", raw, 0)
        if found_id != sid:
            raise EcgFormatError(f"Healforce SCP-ECG: section {sid} is not where section 0 points (byte {offset})")
        if sid not in VENDOR_SECTIONS and crc not in (_xmodem(raw[2:]), _swapped(_xmodem(raw[2:]))):
            raise EcgFormatError(f"Healforce SCP-ECG: section {sid}'s CRC does not match its content (corrupt)")
        sections[sid] = raw[_HEADER.size :]
    return sections


def _limb_leads(signal: np.ndarray) -> list[str]:
    """I, II, III where the three channels obey Einthoven's law; else the file cannot say which leads it holds."""
    centred = signal - signal.mean(axis=0)
    lead_ii = float(np.sqrt(np.mean(centred[:, 1] ** 2)))
    residual = float(np.sqrt(np.mean((centred[:, 0] + centred[:, 2] - centred[:, 1]) ** 2)))
    if lead_ii == 0:
        raise EcgFormatError(
            "Healforce SCP-ECG: section 3 names no leads, and its second channel is flat, so Einthoven's law cannot "
            "tell which leads the three channels are"
        )
    if residual > EINTHOVEN_TOLERANCE * lead_ii:
        raise EcgFormatError(
            "Healforce SCP-ECG: section 3 names no leads, and the three channels are not I, II and III (Einthoven's "
            f"law I + III = II is off by {residual / lead_ii:.0%} of lead II)"
        )
    return ["I", "II", "III"]


def _recorded_at(body: bytes) -> str | None:
    """Acquisition date (tag 25, year big-endian) and time (tag 26) from section 1; other tags are skipped unread."""
    position, tags = 0, {}
    while position + 3 <= len(body):
        tag, length = body[position], struct.unpack_from("<H", body, position + 1)[0]
        if tag == 255 or length == 0:
            break
        if tag in (25, 26):
            tags[tag] = body[position + 3 : position + 3 + length]
        position += 3 + length
    date, time = tags.get(25, b""), tags.get(26, b"")
    if len(date) < 4:
        return None
    year, month, day = struct.unpack_from(">HBB", date)
    if not (1990 <= year <= 2100 and 1 <= month <= 12 and 1 <= day <= 31):
        return None
    text = f"{year:04d}-{month:02d}-{day:02d}"
    if len(time) >= 3 and time[0] < 24 and time[1] < 60 and time[2] < 60:
        text += f"T{time[0]:02d}:{time[1]:02d}:{time[2]:02d}"
    return text
