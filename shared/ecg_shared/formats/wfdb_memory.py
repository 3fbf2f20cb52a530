"""WFDB records decoded from bytes in memory, through wfdb's own parsing and sample decoding.

``wfdb.rdrecord`` reads from files, so a record that arrives as bytes (an upload, a blob) would have to be written
to a temporary directory first, and its header parser looks each field's rules up in pandas tables (about 250
``DataFrame.loc`` calls for a 12-lead header). Together that was 7 ms of the 7.4 ms it took to read a 12-lead
PTB-XL record. This module feeds the bytes to the same wfdb functions that ``rdrecord`` uses below the file layer:
the header's line regexes and field rules, ``_rd_dat_signals`` (which decodes every sample format, byte offsets and
format 8's differences) and ``Record.dac`` (digital to physical, with wfdb's invalid-sample NaNs). The field rules
are read from wfdb's tables once, at import.

It covers single-segment records with one sample per frame and no skew, i.e. every record in PhysioNet's ECG sets
that this platform reads; :func:`decode_wfdb` returns ``None`` for anything else (multi-segment records, several
samples per frame, skew, FLAC-compressed formats), and the caller falls back to ``wfdb.rdrecord`` on files.
wfdb is pinned in requirements/constraints.txt; tests/shared/test_wfdb_memory.py checks that this path and
``rdrecord`` give identical samples on the real data sets.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from wfdb.io import _header, _signal
from wfdb.io.header import parse_header_content, wfdb_strptime
from wfdb.io.record import Record as WfdbRecord

_RECORD_FIELDS = list(_header.RECORD_SPECS.index)
_RECORD_DEFAULTS = _header.RECORD_SPECS["read_default"].to_dict()
_RECORD_TYPES = _header.RECORD_SPECS["allowed_types"].to_dict()
_SIGNAL_FIELDS = list(_header.SIGNAL_SPECS.index)
_SIGNAL_DEFAULTS = _header.SIGNAL_SPECS["read_default"].to_dict()
_SIGNAL_TYPES = _header.SIGNAL_SPECS["allowed_types"].to_dict()
_READABLE_FORMATS = frozenset(_signal.ALIGNED_FMTS) | frozenset(_signal.UNALIGNED_FMTS)


@dataclass
class WfdbContent:
    """What :func:`decode_wfdb` read: physical samples (n, leads) as wfdb gives them, and the header's fields."""

    record_name: str
    fs: float
    sig_name: list[str | None]
    units: list[str | None]
    comments: list[str]
    p_signal: np.ndarray
    adc_gain: list[float] | None = None  # counts per unit of each signal: p_signal is (digital - baseline) / adc_gain


def parse_record_line(line: str) -> dict:
    """wfdb's ``_header._parse_record_line`` with its field rules read once (same regex, defaults and casts)."""
    match = _header.rx_record.match(line)
    if match is None:
        raise _header.HeaderSyntaxError("invalid syntax in record line")
    fields = dict(zip(_RECORD_FIELDS, match.groups(), strict=True))
    for name, value in fields.items():
        if value == "":
            fields[name] = _RECORD_DEFAULTS[name]
        elif _RECORD_TYPES[name] == _header.int_types:
            fields[name] = int(value)
        elif _RECORD_TYPES[name] == _header.float_types:
            number = float(value)
            fields[name] = int(number) if name == "fs" and round(number, 8) == float(int(number)) else number
        elif name == "base_time":
            fields[name] = wfdb_strptime(value)
        elif name == "base_date":
            fields[name] = datetime.datetime.strptime(value, "%d/%m/%Y").date()
    if fields["base_date"] and fields["base_time"]:
        fields["base_datetime"] = datetime.datetime.combine(fields["base_date"], fields["base_time"])
    return fields


def parse_signal_lines(lines: list[str]) -> dict[str, list]:
    """wfdb's ``_header._parse_signal_lines`` with its field rules read once (same regex, defaults and casts)."""
    fields: dict[str, list] = {name: [None] * len(lines) for name in _SIGNAL_FIELDS}
    for ch, line in enumerate(lines):
        match = _header.rx_signal.match(line)
        if match is None:
            raise _header.HeaderSyntaxError("invalid syntax in signal line")
        values = dict(zip(_SIGNAL_FIELDS, match.groups(), strict=True))
        for name in _SIGNAL_FIELDS:
            value = values[name]
            if value == "":
                value = _SIGNAL_DEFAULTS[name]
                if name == "baseline" and values["adc_zero"] != "":
                    value = int(values["adc_zero"])
            elif _SIGNAL_TYPES[name] is _header.int_types:
                value = int(value)
            elif _SIGNAL_TYPES[name] is _header.float_types:
                value = float(value)
                if name == "adc_gain" and value == 0:
                    value = 200.0
            fields[name][ch] = value
    return fields


def decode_wfdb(header_text: str, read_file: Callable[[str], bytes]) -> WfdbContent | None:
    """Decode a record from its header text and its signal files' bytes (``read_file(name)``, by the header's names).

    Returns ``None`` for records this path does not cover (see the module's doc). Raises what ``read_file`` raises
    for a missing file, and wfdb's or NumPy's errors for malformed content.
    """
    header_lines, comment_lines = parse_header_content(header_text)
    if not header_lines:
        raise _header.HeaderSyntaxError("the header has no record line")
    record = parse_record_line(header_lines[0])
    if record["n_seg"] is not None or len(header_lines) < 2:
        return None
    signals = parse_signal_lines(header_lines[1:])
    n_sig = len(header_lines) - 1
    if (
        any(spf != 1 for spf in signals["samps_per_frame"])
        or any(signals["skew"])
        or not set(signals["fmt"]) <= _READABLE_FORMATS
    ):
        return None
    channels_by_file: dict[str, list[int]] = {}
    for ch, name in enumerate(signals["file_name"]):
        channels_by_file.setdefault(name, []).append(ch)
    sig_len = record["sig_len"]
    if sig_len is None:  # as rdrecord does: from the size of the first signal file
        first = signals["file_name"][0]
        size = len(read_file(first)) - (signals["byte_offset"][0] or 0)
        sig_len = int(size / (_signal.BYTES_PER_SAMPLE[signals["fmt"][0]] * len(channels_by_file[first])))

    digital: list[np.ndarray | None] = [None] * n_sig
    for file_name, channels in channels_by_file.items():
        fmt = signals["fmt"][channels[0]]
        byte_offset = signals["byte_offset"][channels[0]] or 0
        if any(signals["fmt"][ch] != fmt for ch in channels):
            return None  # wfdb requires one format per file too; let rdrecord give its error
        file_signals = _decode_file(read_file(file_name), fmt, len(channels), sig_len, byte_offset, signals, channels)
        for ch, samples in zip(channels, file_signals, strict=True):
            digital[ch] = samples

    d_signal = np.column_stack(digital)
    converted = WfdbRecord(
        d_signal=d_signal, n_sig=n_sig, fmt=signals["fmt"], adc_gain=signals["adc_gain"], baseline=signals["baseline"]
    )
    return WfdbContent(
        record_name=record["record_name"],
        fs=float(record["fs"]),
        sig_name=list(signals["sig_name"]),
        units=list(signals["units"]),
        comments=[line.strip(" \t#") for line in comment_lines],
        p_signal=converted.dac(return_res=64),
        adc_gain=list(signals["adc_gain"]),
    )


def _decode_file(
    data: bytes, fmt: str, n_channels: int, sig_len: int, byte_offset: int, signals: dict, channels: list[int]
) -> list[np.ndarray]:
    """One signal file's channels, each a 1-D array of digital samples, by wfdb's ``_rd_dat_signals``."""
    start_byte, n_read_samples, *_ = _signal._dat_read_params(
        fmt, sig_len, byte_offset, [0] * n_channels, n_channels, 0, sig_len
    )
    unaligned = fmt in _signal.UNALIGNED_FMTS  # loaded as bytes, as _rd_dat_file does
    count = _signal._required_byte_num("read", fmt, n_read_samples) if unaligned else n_read_samples
    loaded = np.frombuffer(data, dtype=np.dtype(_signal.DATA_LOAD_TYPES[fmt]), count=count, offset=start_byte)
    return _signal._rd_dat_signals(
        file_name=None,
        dir_name=None,
        pn_dir=None,
        fmt=fmt,
        n_sig=n_channels,
        sig_len=sig_len,
        byte_offset=byte_offset,
        samps_per_frame=[1] * n_channels,
        skew=[0] * n_channels,
        init_value=[signals["init_value"][ch] for ch in channels],
        sampfrom=0,
        sampto=sig_len,
        no_file=True,
        sig_data=loaded,
    )
