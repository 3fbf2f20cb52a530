"""Philips XLI waveform decompression, as documented by sierra-ecg-tools (MIT, C. Watford).

The decoded base64 is one chunk per lead. A chunk is an 8-byte header (little-endian: int32 size of the compressed
payload, 2 unused bytes, int16 start value) and the payload: an LZW stream of 10-bit codes, MSB first. The LZW
output, split in halves, gives the high bytes (first half) and low bytes (second half) of 16-bit words; those words
drive a second-order predictor: sample[i] = 2·sample[i−1] − sample[i−2] − residual[i], where the residual of sample 2
is the header's start value and that of sample i > 2 is word[i−1] − 64. The first two samples are the words
themselves. Every step is checked against the data's length, so hostile input ends in an :class:`EcgFormatError`.
"""

from __future__ import annotations

import numpy as np

from ecg_shared.formats.record import EcgFormatError

_CODE_BITS = 10
_LAST_CODE = (1 << _CODE_BITS) - 2  # the highest code in the dictionary; 1023 ends the stream
_HEADER_BYTES = 8


def _lzw_decode(payload: bytes, max_bytes: int) -> bytes:
    table: list[bytes] = [bytes([code]) for code in range(256)]
    out = bytearray()
    previous = b""
    bit_buffer = 0
    bit_count = 0
    position = 0
    while True:
        while bit_count < _CODE_BITS and position < len(payload):
            bit_buffer = (bit_buffer << 8) | payload[position]
            bit_count += 8
            position += 1
        if bit_count < _CODE_BITS:
            break
        bit_count -= _CODE_BITS
        code = (bit_buffer >> bit_count) & ((1 << _CODE_BITS) - 1)
        bit_buffer &= (1 << bit_count) - 1
        if code > _LAST_CODE:
            break
        if code < len(table):
            entry = table[code]
        elif code == len(table) and previous:  # the code being defined by this very step (the KwKwK case)
            entry = previous + previous[:1]
        else:
            raise EcgFormatError(f"Philips XLI: LZW code {code} refers to no dictionary entry (corrupt data)")
        if previous and len(table) <= _LAST_CODE:
            table.append(previous + entry[:1])
        out += entry
        if len(out) > max_bytes:  # a decompression bomb: LZW turns 10 bits into up to 1 KiB
            raise EcgFormatError(
                f"Philips XLI: a chunk decompresses past the {max_bytes // 2} samples the file declares"
            )
        previous = entry
    return bytes(out)


def _predict(words: np.ndarray, start: int) -> np.ndarray:
    """Undo the second-order prediction: with d[i] = s[i] − s[i−1], d[i] = d[i−1] − residual[i]."""
    if words.size < 3:
        return words.astype(np.int16)
    residuals = np.empty(words.size - 2, dtype=np.int64)
    residuals[0] = start
    residuals[1:] = words[2:-1].astype(np.int64) - 64
    differences = (int(words[1]) - int(words[0])) - np.cumsum(residuals)
    samples = np.empty(words.size, dtype=np.int64)
    samples[:2] = words[:2]
    samples[2:] = int(words[1]) + np.cumsum(differences)
    return samples.astype(np.int16)  # the device's 16-bit arithmetic: wrap, as its encoder did


def xli_decode(data: bytes, max_samples: int = 1 << 20, max_chunks: int | None = None) -> list[np.ndarray]:
    """The samples (int16 counts) of the first ``max_chunks`` chunks (all by default), in their order.

    A chunk that decompresses to more than ``max_samples`` samples is refused, so a crafted stream cannot expand
    10-bit codes into gigabytes.
    """
    leads: list[np.ndarray] = []
    offset = 0
    while offset < len(data) and (max_chunks is None or len(leads) < max_chunks):
        if len(data) - offset < _HEADER_BYTES:
            raise EcgFormatError(f"Philips XLI: {len(data) - offset} stray bytes after lead {len(leads)}")
        size = int.from_bytes(data[offset : offset + 4], "little", signed=True)
        start = int.from_bytes(data[offset + 6 : offset + 8], "little", signed=True)
        offset += _HEADER_BYTES
        if size < 0 or size > len(data) - offset:
            raise EcgFormatError(
                f"Philips XLI: chunk {len(leads) + 1} claims {size} bytes but {len(data) - offset} remain "
                "(truncated or corrupt data)"
            )
        decoded = _lzw_decode(data[offset : offset + size], 2 * max_samples + 1)
        offset += size
        if len(decoded) % 2:
            decoded += b"\x00"
        half = len(decoded) // 2
        buffer = np.frombuffer(decoded, dtype=np.uint8)
        words = ((buffer[:half].astype(np.uint16) << 8) | buffer[half:]).view(np.int16)
        leads.append(_predict(words, start))
    return leads
