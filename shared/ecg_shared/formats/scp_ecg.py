"""SCP-ECG (EN 1064 / ISO 11073-91064) files, decoded by the project's own code: no maintained Python library reads
them.

Layout: a CRC-CCITT and the file size, then sections, each with a 16-byte header (CRC, id, length, versions). The
reader uses:

- **section 0**, the pointers (id, length, 1-based byte index) to the other sections;
- **section 1**, the header tags, of which only the acquiring device (tag 14), the acquisition date and time (25, 26)
  and the filters (27-29) are kept; the patient, physician and institution tags are skipped unread;
- **section 2**, the Huffman tables: 19999 means the standard's default table; an absent section means samples are
  plain 16-bit integers. Codes are stored with their first bit lowest; a table that is not a prefix code, or data
  with a code the table lacks, is refused as a wrong Huffman table;
- **section 3**, the leads (count, flags, 1-based first and last sample, SCP lead code);
- **sections 4 and 5**, the QRS locations and the reference beat, added back into the rhythm residual where section
  3 flags reference-beat subtraction;
- **section 6**, the rhythm data: the amplitude multiplier (nV per unit), the sample interval (µs), first- or
  second-difference encoding, and bimodal compression (samples outside the protected QRS zones decimated by the
  ratio of the section 6 and section 5 intervals, restored by linear interpolation).

Every CRC is checked. A file that departs from the standard gets an :class:`EcgFormatError` naming the departure,
except a Healforce export, which proves it is one by its own checksums and is read by :mod:`healforce_scp`.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from ecg_shared.formats.healforce_scp import is_healforce, read_healforce
from ecg_shared.formats.lead_codes import SCP_LEADS, distinct_lead_names, standard_order
from ecg_shared.formats.leads import derive_limb_leads
from ecg_shared.formats.record import EcgFormatError, Record

DEFAULT_TABLE = 19999
_HEADER = struct.Struct("<HHIBB6s")
_POINTER = struct.Struct("<HII")
_MAX_PREFIX_BITS = 16
_MAX_CODE_BITS = 48


def looks_like_scp(head: bytes) -> bool:
    """True when byte 6 starts a section 0 header marked ``SCPECG`` or whose first pointer describes section 0."""
    if len(head) < 22 or head[8:10] != b"\x00\x00":
        return False
    if head[16:22] == b"SCPECG":
        return True
    if len(head) < 32:
        return False
    section_length = struct.unpack_from("<I", head, 10)[0]
    pointer_id, pointer_length, pointer_index = _POINTER.unpack_from(head, 22)
    return pointer_id == 0 and pointer_length == section_length and pointer_index in (6, 7)


def _crc(data: bytes) -> int:
    return binascii.crc_hqx(data, 0xFFFF)


@dataclass(frozen=True)
class _Code:
    prefix_bits: int
    total_bits: int
    switch: bool  # table mode 0: switch to table ``value``
    value: int


def _default_table() -> list[tuple[int, _Code]]:
    """EN 1064's default table: 0 -> '0'; +-k -> k ones, '0', sign bit (k = 1..8); then 8- and 16-bit originals."""
    codes = [(0b0, _Code(1, 1, False, 0))]
    for k in range(1, 9):
        ones = (1 << k) - 1
        codes.append(((ones << 2) | 0b00, _Code(k + 2, k + 2, False, k)))
        codes.append(((ones << 2) | 0b01, _Code(k + 2, k + 2, False, -k)))
    codes.append((0b1111111110, _Code(10, 18, False, 0)))
    codes.append((0b1111111111, _Code(10, 26, False, 0)))
    return codes


def _reverse_bits(value: int, width: int) -> int:
    return int(format(value & ((1 << width) - 1), f"0{width}b")[::-1], 2)


class _Huffman:
    """Prefix-code tables. Decoding first finds, with numpy, the code starting at every bit position (its length and
    value, through a lookup array indexed by the table's next ``width`` bits), then follows the codes from bit 0."""

    def __init__(self, tables: list[list[tuple[int, _Code]]]):
        self.tables = []
        for number, table in enumerate(tables, start=1):
            if not table:
                raise EcgFormatError(f"wrong Huffman table: table {number} has no codes")
            width = max(code.prefix_bits for _, code in table)
            entry = np.full(1 << width, -1, dtype=np.int64)  # index into the table's codes, -1: no code
            for k, (bits, code) in enumerate(table):
                start = bits << (width - code.prefix_bits)
                stop = start + (1 << (width - code.prefix_bits))
                if np.any(entry[start:stop] >= 0):
                    raise EcgFormatError(f"wrong Huffman table: table {number} is not a prefix code")
                entry[start:stop] = k
            self.tables.append((width, entry, [code for _, code in table]))

    @staticmethod
    def _windows(data: bytes) -> np.ndarray:
        """The 64 bits starting at each bit position of ``data`` (zeros past its end), as unsigned integers."""
        n = len(data)
        padded = np.frombuffer(bytes(data) + bytes(8), dtype=np.uint8).astype(np.uint64)
        word = np.zeros(n, dtype=np.uint64)
        for k in range(8):
            word = (word << np.uint64(8)) | padded[k : k + n]
        positions = np.arange(8 * n)
        return word[positions >> 3] << (positions & 7).astype(np.uint64)

    def _codes_at(self, windows: np.ndarray, table: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each bit position: the code's length in bits (0: no code), its value (or target table), switch flag."""
        width, entry, codes = self.tables[table]
        index = entry[(windows >> np.uint64(64 - width)).astype(np.int64)]
        found = index >= 0
        index = np.where(found, index, 0)
        prefix = np.array([c.prefix_bits for c in codes], dtype=np.int64)[index]
        total = np.array([c.total_bits for c in codes], dtype=np.int64)[index]
        base = np.array([c.value for c in codes], dtype=np.int64)[index]
        switch = np.array([c.switch for c in codes], dtype=bool)[index]
        extra = total - prefix  # bits of the value itself after the prefix, two's complement
        mask = (np.uint64(1) << extra.astype(np.uint64)) - np.uint64(1)
        raw = ((windows >> (64 - total).astype(np.uint64)) & mask).astype(np.int64)
        negative = (extra > 0) & (((raw >> np.maximum(extra - 1, 0)) & 1) == 1)
        value = base + np.where(negative, raw - (1 << extra), raw)
        step = np.where(found, np.where(switch, prefix, total), 0)
        return step, np.where(switch, base, value), switch

    def decode(self, data: bytes, count: int, what: str) -> np.ndarray:
        """``count`` values from ``data``, starting in table 1."""
        if count > 8 * len(data):  # every code is at least one bit long
            raise EcgFormatError(f"{what}: {len(data)} bytes cannot hold the {count} samples declared (truncated?)")
        windows = self._windows(data)
        n_bits = len(windows)
        decoded: list[tuple[list, list, list] | None] = [None] * len(self.tables)
        decoded[0] = tuple(a.tolist() for a in self._codes_at(windows, 0))
        steps, values, switches = decoded[0]
        out: list[int] = []
        position = 0
        while len(out) < count:
            if position >= n_bits:
                raise EcgFormatError(
                    f"{what}: the Huffman data ends after {len(out)} of {count} samples (wrong table or truncated)"
                )
            step = steps[position]
            if step == 0:
                raise EcgFormatError(f"{what}: bit pattern at bit {position} is not in the Huffman table (wrong table)")
            if switches[position]:
                target = values[position]
                if not 1 <= target <= len(self.tables):
                    raise EcgFormatError(f"wrong Huffman table: a code switches to missing table {target}")
                if decoded[target - 1] is None:
                    decoded[target - 1] = tuple(a.tolist() for a in self._codes_at(windows, target - 1))
                steps, values, switches = decoded[target - 1]
            else:
                out.append(values[position])
            position += step
        if position > n_bits:
            raise EcgFormatError(f"{what}: the last Huffman code runs past the end of the data (truncated)")
        return np.asarray(out, dtype=np.int64)


def _plain_samples(data: bytes, count: int, what: str) -> np.ndarray:
    if len(data) < 2 * count:
        raise EcgFormatError(f"{what}: {len(data)} bytes hold fewer than the {count} 16-bit samples declared")
    return np.frombuffer(bytes(data[: 2 * count]), dtype="<i2").astype(np.int64)


def _undifference(values: np.ndarray, encoding: int, what: str) -> np.ndarray:
    if encoding == 0:
        return values
    if encoding == 1:
        return np.cumsum(values)
    if encoding == 2:
        if len(values) < 2:
            return values
        # x[0] = d[0], x[1] = d[1], x[n] = d[n] + 2 x[n-1] - x[n-2]: the steps x[n] - x[n-1] are a running sum.
        steps = np.empty(len(values) - 1, dtype=np.int64)
        steps[0] = values[1] - values[0]
        steps[1:] = values[2:]
        return np.concatenate([values[:1], values[0] + np.cumsum(np.cumsum(steps))])
    raise EcgFormatError(f"{what}: unknown difference encoding {encoding} (0 none, 1 first, 2 second)")


@dataclass
class _Lead:
    name: str
    code: int
    first: int  # 1-based sample numbers, inclusive
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


@dataclass
class _Encoded:
    avm_nv: int
    interval_us: int
    encoding: int
    bimodal: int
    streams: list[bytes]


class _ScpFile:
    def __init__(self, data: bytes):
        self.data = data
        self.departures: list[str] = []
        self.sections: dict[int, tuple[bytes, int]] = {}  # id -> (body, protocol version)

    def fail(self, message: str) -> EcgFormatError:
        if self.departures:
            message += "; the file departs from EN 1064: " + "; ".join(self.departures)
        return EcgFormatError(f"SCP-ECG: {message}")

    # -- framing ---------------------------------------------------------------------------------------------------
    def read_pointers(self) -> None:
        data = self.data
        if len(data) < 6 + _HEADER.size:
            raise self.fail(f"file of {len(data)} bytes is too short for the file and section 0 headers")
        stored_crc, declared_size = struct.unpack_from("<HI", data, 0)
        _, sid, length, _, _, reserved = _HEADER.unpack_from(data, 6)
        if sid != 0:
            raise self.fail("no section 0 (pointers) at byte 6")
        body = data[6 + _HEADER.size : 6 + length]
        pointers = [_POINTER.unpack_from(body, k) for k in range(0, len(body) - _POINTER.size + 1, _POINTER.size)]
        # Departures found before any CRC is checked, so that a CRC failure names them too.
        if reserved != b"SCPECG":
            self.departures.append("section 0's reserved field is not 'SCPECG'")
        zero_based = any(pid == 0 and index == 6 for pid, _, index in pointers)
        if zero_based:
            self.departures.append("section offsets are 0-based, not 1-based")
        if declared_size != len(data):
            if declared_size > len(data):
                low, high = struct.unpack_from("<HH", data, 2)
                if low == 0 and high <= len(data):  # a 16-bit size two bytes late (Healforce), not a cut file
                    self.departures.append(f"the file-size field holds {high} in its upper 16 bits")
                else:
                    raise self.fail(f"truncated: the header says {declared_size} bytes, the file has {len(data)}")
            else:
                self.departures.append(f"{len(data) - declared_size} bytes follow the declared end of the file")
        self._section_at(6, 0, "section 0")
        end = min(declared_size, len(data))
        if _crc(data[2:end]) != stored_crc:
            raise self.fail("the file's CRC does not match its content (corrupt or truncated)")
        for pid, length, index in pointers:
            if length == 0 or pid == 0:
                continue
            offset = index if zero_based else index - 1
            if offset < 0 or offset + length > len(data):
                raise self.fail(f"section {pid} (bytes {offset}-{offset + length}) lies outside the file (truncated)")
            found = self._section_at(offset, pid, f"section {pid}")
            if found is None:
                raise self.fail(f"section {pid} is not where section 0 points (byte {index})")
            self.sections[pid] = (found[0], found[1])

    def _section_at(self, offset: int, expected_id: int, what: str) -> tuple[bytes, int, bytes, int] | None:
        if offset + _HEADER.size > len(self.data):
            raise self.fail(f"{what} header lies past the end of the file (truncated)")
        crc, sid, length, _version, protocol, reserved = _HEADER.unpack_from(self.data, offset)
        if sid != expected_id:
            return None
        if length < _HEADER.size or offset + length > len(self.data):
            raise self.fail(f"{what} claims {length} bytes, past the end of the file (truncated)")
        raw = self.data[offset : offset + length]
        if _crc(raw[2:]) != crc:
            raise self.fail(f"{what}'s CRC does not match its content (corrupt, or not the standard's CRC-CCITT)")
        return raw[_HEADER.size :], protocol, reserved, length

    def body(self, sid: int) -> bytes | None:
        entry = self.sections.get(sid)
        return None if entry is None else entry[0]

    # -- sections --------------------------------------------------------------------------------------------------
    def huffman(self) -> _Huffman | None:
        body = self.body(2)
        if body is None:
            return None
        if len(body) < 2:
            raise self.fail("section 2 (Huffman tables) is empty")
        n_tables = struct.unpack_from("<H", body, 0)[0]
        if n_tables == DEFAULT_TABLE:
            return _Huffman([_default_table()])
        if n_tables == 0:
            return None
        tables, position = [], 2
        for number in range(1, n_tables + 1):
            if position + 2 > len(body):
                raise EcgFormatError(f"wrong Huffman table: section 2 declares {n_tables} tables, holds {number - 1}")
            n_codes = struct.unpack_from("<H", body, position)[0]
            position += 2
            if position + 9 * n_codes > len(body):
                raise EcgFormatError(f"wrong Huffman table: table {number} is cut short")
            table = []
            for _ in range(n_codes):
                prefix, total, mode, base, stored = struct.unpack_from("<BBBhI", body, position)
                position += 9
                if not 1 <= prefix <= _MAX_PREFIX_BITS or not prefix <= total <= _MAX_CODE_BITS or mode > 1:
                    raise EcgFormatError(
                        f"wrong Huffman table: table {number} has a code of {prefix} prefix bits, {total} bits in all "
                        f"and mode {mode} (prefix 1-{_MAX_PREFIX_BITS}, total up to {_MAX_CODE_BITS}, mode 0/1)"
                    )
                table.append((_reverse_bits(stored, prefix), _Code(prefix, total, mode == 0, base)))
            tables.append(table)
        return _Huffman(tables)

    def leads(self) -> tuple[list[_Lead], int]:
        body = self.body(3)
        if body is None or len(body) < 2:
            raise self.fail("no section 3: the file does not say which leads it holds")
        count, flags = body[0], body[1]
        held = (len(body) - 2) // 9
        if count == 0:
            raise self.fail("section 3 declares no leads")
        if held < count:
            raise self.fail(f"section 3 declares {count} leads but holds definitions for {held}")
        leads = []
        for k in range(count):
            first, last, code = struct.unpack_from("<IIB", body, 2 + 9 * k)
            if first < 1 or last < first:
                raise self.fail(f"section 3 lead {k + 1} spans samples {first}-{last}")
            name = SCP_LEADS.get(code) or f"lead code {code}"
            leads.append(_Lead(name, code, first, last))
        return leads, flags

    def encoded(self, sid: int, n_leads: int) -> _Encoded:
        body = self.body(sid)
        what = {5: "section 5 (reference beat)", 6: "section 6 (rhythm data)"}[sid]
        if body is None:
            raise self.fail(f"no {what}")
        start = 6 + 2 * n_leads
        if len(body) < start:
            raise self.fail(f"{what} is too short for its header and {n_leads} stream lengths")
        avm, interval, encoding, bimodal = struct.unpack_from("<HHBB", body, 0)
        lengths = struct.unpack_from(f"<{n_leads}H", body, 6)
        if avm == 0 or interval == 0:
            raise self.fail(f"{what} gives an amplitude multiplier of {avm} nV and a sample interval of {interval} µs")
        if start + sum(lengths) > len(body):
            raise self.fail(
                f"{what}: the stream lengths add up to {sum(lengths)} bytes, the section holds {len(body) - start} "
                f"(one stream for {n_leads} leads?)"
            )
        streams, position = [], start
        for length in lengths:
            streams.append(body[position : position + length])
            position += length
        return _Encoded(avm, interval, encoding, bimodal if sid == 6 else 0, streams)

    def qrs_locations(self) -> tuple[int, int, list[tuple[int, int, int, int]], list[tuple[int, int]]]:
        body = self.body(4)
        if body is None or len(body) < 6:
            raise self.fail("reference-beat subtraction or bimodal compression without section 4 (QRS locations)")
        length_ms, fiducial, n_qrs = struct.unpack_from("<HHH", body, 0)
        if len(body) < 6 + 14 * n_qrs:
            raise self.fail(f"section 4 declares {n_qrs} QRS complexes, holds {(len(body) - 6) // 14}")
        beats = [struct.unpack_from("<HIII", body, 6 + 14 * k) for k in range(n_qrs)]
        protected_at = 6 + 14 * n_qrs
        zones = []
        if len(body) >= protected_at + 8 * n_qrs:
            zones = [struct.unpack_from("<II", body, protected_at + 8 * k) for k in range(n_qrs)]
        return length_ms, fiducial, beats, zones

    def device(self) -> dict[str, Any]:
        """Acquisition metadata from section 1: device, date and time, filters. Patient tags are not decoded."""
        body = self.body(1)
        out: dict[str, Any] = {}
        if not body:
            return out
        position = 0
        tags: dict[int, bytes] = {}
        while position + 3 <= len(body):
            tag, length = body[position], struct.unpack_from("<H", body, position + 1)[0]
            if tag == 255:
                break
            value = body[position + 3 : position + 3 + length]
            if tag in (14, 25, 26, 27, 28, 29):
                tags.setdefault(tag, value)
            position += 3 + length
        if len(tags.get(14, b"")) >= 36:
            value = tags[14]
            model = value[8:14].split(b"\0")[0].decode("latin-1").strip()
            strings = [s.decode("latin-1").strip() for s in value[36:].split(b"\0")]
            if model:
                out["model"] = model
            if len(strings) > 2 and strings[2]:
                out["software"] = strings[2]
            if len(strings) > 4 and strings[4]:
                out["manufacturer"] = strings[4]
            mains = {1: 50, 2: 60}.get(value[18])
            if mains:
                out["mains_hz"] = mains
        date, time = tags.get(25, b""), tags.get(26, b"")
        if len(date) >= 4:
            year, month, day = struct.unpack_from("<HBB", date)
            if 1 <= month <= 12 and 1 <= day <= 31:
                out["recorded_at"] = f"{year:04d}-{month:02d}-{day:02d}"
                if len(time) >= 3 and time[0] < 24 and time[1] < 60 and time[2] < 60:
                    out["recorded_at"] += f"T{time[0]:02d}:{time[1]:02d}:{time[2]:02d}"
        filters: dict[str, Any] = {}
        if len(tags.get(27, b"")) >= 2 and (highpass := struct.unpack_from("<H", tags[27])[0]):
            filters["highpass_hz"] = highpass / 100
        if len(tags.get(28, b"")) >= 2 and (lowpass := struct.unpack_from("<H", tags[28])[0]):
            filters["lowpass_hz"] = float(lowpass)
        if tags.get(29):
            bitmap = tags[29][0]
            filters["notch_hz"] = [hz for bit, hz in ((0, 60), (1, 50)) if bitmap & (1 << bit)]
        if filters:
            out["filters"] = filters
        return out


def _decode_streams(encoded: _Encoded, counts: list[int], huffman: _Huffman | None, what: str, names: list[str]):
    leads = []
    for stream, count, name in zip(encoded.streams, counts, names, strict=True):
        label = f"{what}, lead {name}"
        values = huffman.decode(stream, count, label) if huffman else _plain_samples(stream, count, label)
        leads.append(_undifference(values, encoding=encoded.encoding, what=label))
    return leads


def _runs(protected: np.ndarray) -> list[tuple[int, int, bool]]:
    """(start, end, protected) of each run of equal flags, end exclusive."""
    edges = [0, *(np.flatnonzero(np.diff(protected)) + 1).tolist(), len(protected)]
    return [(a, b, bool(protected[a])) for a, b in pairwise(edges) if b > a]


def _bimodal_count(lead: _Lead, zones: list[tuple[int, int]], factor: int) -> tuple[int, np.ndarray]:
    """Stored samples for one lead under bimodal compression, and each full-rate sample's protected flag."""
    protected = np.zeros(lead.length, dtype=bool)
    for begin, end in zones:
        lo, hi = max(begin, lead.first), min(end, lead.last)
        if hi >= lo:
            protected[lo - lead.first : hi - lead.first + 1] = True
    count = sum(b - a if kept else -(-(b - a) // factor) for a, b, kept in _runs(protected))
    return count, protected


def _expand_bimodal(stored: np.ndarray, protected: np.ndarray, factor: int) -> np.ndarray:
    """Full-rate samples: protected ones as stored, decimated ones interpolated between their blocks' centres."""
    positions: list[float] = []
    for a, b, kept in _runs(protected):
        if kept:
            positions += range(a, b)
        else:
            positions += [(block + min(block + factor, b) - 1) / 2 for block in range(a, b, factor)]
    return np.interp(np.arange(len(protected)), positions, stored[: len(positions)])


def read_scp_ecg(data: bytes, source: str | None = None) -> Record:
    """Decode an SCP-ECG file's rhythm data into millivolts (a Healforce export by its own reader, which checks that
    the file is one)."""
    if is_healforce(bytes(data)):
        return read_healforce(bytes(data), source)
    scp = _ScpFile(bytes(data))
    scp.read_pointers()
    leads, flags = scp.leads()
    huffman = scp.huffman()
    names = [lead.name for lead in leads]
    rhythm = scp.encoded(6, len(leads))
    subtract_reference = bool(flags & 0x01)
    reference = None
    if subtract_reference or rhythm.bimodal:
        reference = scp.encoded(5, len(leads)) if scp.body(5) is not None else None
    if rhythm.bimodal and reference is None:
        raise scp.fail("bimodal compression without section 5, which gives the full sample rate")

    for lead, stream in zip(leads, rhythm.streams, strict=True):
        most = 8 * len(stream) * 4 if huffman else len(stream) // 2 * 4  # 4: the largest bimodal decimation
        if lead.length > most:
            raise scp.fail(f"section 3 gives lead {lead.name} {lead.length} samples; its data holds at most {most}")
    interval_us = rhythm.interval_us
    factor = 1
    protections: list[np.ndarray] = []
    if rhythm.bimodal:
        _, _, _, zones = scp.qrs_locations()
        factor, remainder = divmod(rhythm.interval_us, reference.interval_us)
        if remainder or not 1 <= factor <= 4 or not zones:
            raise scp.fail(
                f"bimodal compression with sample intervals {rhythm.interval_us} and {reference.interval_us} µs "
                "(need an integer ratio 1-4) and protected zones in section 4"
            )
        interval_us = reference.interval_us
        counts = []
        for lead in leads:
            count, protected = _bimodal_count(lead, zones, factor)
            counts.append(count)
            protections.append(protected)
    else:
        counts = [lead.length for lead in leads]
    samples = _decode_streams(rhythm, counts, huffman, "section 6 (rhythm data)", names)
    if factor > 1:
        samples = [_expand_bimodal(s, p, factor) for s, p in zip(samples, protections, strict=True)]

    metadata: dict[str, Any] = {"format": "scp_ecg", "amplitude_nv": rhythm.avm_nv}
    if subtract_reference:
        if reference is None:
            raise scp.fail("section 3 flags reference-beat subtraction but section 5 (reference beat) is missing")
        samples = _add_reference_beat(scp, leads, samples, reference, huffman, rhythm.avm_nv, interval_us)
        metadata["reference_beat_added"] = True
    if scp.body(5) is not None and scp.body(4) is not None:
        length_ms = struct.unpack_from("<H", scp.body(4), 0)[0] if len(scp.body(4)) >= 2 else 0
        metadata["representative_beat"] = {"duration_ms": length_ms}

    leads, samples = _simultaneous(scp, leads, samples, metadata)
    names = [lead.name for lead in leads]
    first, last = max(lead.first for lead in leads), min(lead.last for lead in leads)
    signal = np.column_stack(
        [s[first - lead.first : last - lead.first + 1] for s, lead in zip(samples, leads, strict=True)]
    )
    signal = (signal * (rhythm.avm_nv / 1e6)).astype(np.float32)

    unknown = [lead.name for lead in leads if lead.name.startswith("lead code")]
    if unknown:
        metadata["unknown_lead_codes"] = unknown
    try:
        names = distinct_lead_names(names, "section 3")
    except EcgFormatError as exc:
        raise scp.fail(str(exc)) from None
    metadata.update(scp.device())
    if scp.departures:
        metadata["departures_from_standard"] = list(scp.departures)
    if source:
        metadata["source"] = source
    order = standard_order(names)
    return derive_limb_leads(Record(signal[:, order], 1e6 / interval_us, [names[k] for k in order], metadata))


def _simultaneous(
    scp: _ScpFile, leads: list[_Lead], samples: list[np.ndarray], metadata: dict[str, Any]
) -> tuple[list[_Lead], list[np.ndarray]]:
    """The leads to put side by side: all of them over the span they share when it covers nearly all of the
    recording; else, for carts that record lead groups one after another, the leads that cover the whole recording."""
    start, end = min(lead.first for lead in leads), max(lead.last for lead in leads)
    first, last = max(lead.first for lead in leads), min(lead.last for lead in leads)
    if last - first + 1 >= 0.9 * (end - start + 1):
        if (first, last) != (start, end):
            metadata["trimmed_to_common_span"] = True
        return leads, samples
    whole = [k for k, lead in enumerate(leads) if (lead.first, lead.last) == (start, end)]
    if whole:
        metadata["leads_left_out"] = [lead.name for k, lead in enumerate(leads) if k not in whole]
        return [leads[k] for k in whole], [samples[k] for k in whole]
    if last >= first:
        metadata["trimmed_to_common_span"] = True
        return leads, samples
    raise scp.fail("the leads were recorded one group after another, with no sample common to all of them")


def _add_reference_beat(
    scp: _ScpFile,
    leads: list[_Lead],
    residuals: list[np.ndarray],
    reference: _Encoded,
    huffman: _Huffman | None,
    rhythm_avm: int,
    interval_us: int,
) -> list[np.ndarray]:
    """Add the reference beat back over each type-0 QRS complex's subtraction zone (section 4)."""
    length_ms, fiducial, beats, _ = scp.qrs_locations()
    if reference.interval_us != interval_us:
        raise scp.fail(
            f"reference beat sampled every {reference.interval_us} µs, rhythm every {interval_us} µs (no bimodal flag)"
        )
    beat_samples = length_ms * 1000 // reference.interval_us
    names = [lead.name for lead in leads]
    beat_leads = _decode_streams(reference, [beat_samples] * len(leads), huffman, "section 5 (reference beat)", names)
    scale = reference.avm_nv / rhythm_avm
    out = []
    for lead, residual, beat in zip(leads, residuals, beat_leads, strict=True):
        restored = residual.astype(np.float64)
        beat = beat * scale
        for kind, begin, centre, end in beats:
            if kind != 0 or end < begin:
                continue
            # Rhythm sample i (1-based) lies at position i - centre + fiducial of the reference beat (1-based); a
            # zone reaching past the lead or the beat is added where both exist.
            low = max(begin, lead.first, centre - fiducial + 1)
            high = min(end, lead.last, centre - fiducial + len(beat))
            if high >= low:
                restored[low - lead.first : high - lead.first + 1] += beat[
                    low - centre + fiducial - 1 : high - centre + fiducial
                ]
        out.append(np.rint(restored).astype(np.int64))
    return out
