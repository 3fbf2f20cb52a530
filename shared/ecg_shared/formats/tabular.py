"""CSV (a header row of lead names, one column per lead) and NumPy ``.npy`` / ``.npz`` signals.

Sampling rate: the ``fs`` hint, or for CSV a first comment line such as ``# fs=500`` (also ``sampling_rate=``);
for ``.npz`` an ``fs`` or ``sampling_rate`` array. Values are millivolts unless ``units="uV"`` is given.
A ``time``/``t`` column in a CSV is dropped (and gives the rate when nothing else does).
"""

from __future__ import annotations

import io
import re

import numpy as np

from ecg_shared.formats.record import EcgFormatError, Record, check_expanded_size

_FS_FIELD = re.compile(r"(?:fs|sampling_rate|sampling-rate|sample_rate)\s*[=:]\s*([0-9.]+)", re.IGNORECASE)
_TIME_COLUMNS = {"time", "t", "time_s", "seconds"}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _units_scale(units: str | None) -> float:
    scale = {None: 1.0, "mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3}.get(units.lower() if units else None)
    if scale is None:
        raise EcgFormatError(f"unknown units {units!r}; use mV, uV or V")
    return scale


def _require_fs(fs: float | None, what: str) -> float:
    if fs is None:
        raise EcgFormatError(f"{what} carries no sampling rate: pass fs (Hz)")
    try:
        value = float(fs)
    except (TypeError, ValueError):
        raise EcgFormatError(f"sampling rate must be a number, got {fs!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise EcgFormatError(f"sampling rate must be positive, got {fs!r}")
    return value


def read_csv(data: bytes, fs: float | None = None, units: str | None = None, source: str | None = None) -> Record:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise EcgFormatError("CSV is not UTF-8 text") from None
    lines = [line for line in text.splitlines() if line.strip()]
    header_fs = None
    while lines and lines[0].lstrip().startswith("#"):
        match = _FS_FIELD.search(lines[0])
        header_fs = float(match.group(1)) if match else header_fs
        lines.pop(0)
    if len(lines) < 2:
        raise EcgFormatError("CSV needs a header row of lead names and at least one row of samples")
    names = [name.strip() for name in lines[0].split(",")]
    if all(_is_number(name) for name in names):
        raise EcgFormatError("CSV needs a header row of lead names (e.g. I,II,V1); its first row holds numbers")
    try:
        values = np.loadtxt(io.StringIO("\n".join(lines[1:])), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise EcgFormatError(f"CSV holds a non-numeric sample: {exc}") from None
    if values.shape[1] != len(names):
        raise EcgFormatError(f"CSV header names {len(names)} columns but rows have {values.shape[1]}")
    time_columns = [i for i, name in enumerate(names) if name.lower() in _TIME_COLUMNS]
    if time_columns and fs is None and header_fs is None and len(values) > 1:
        step = np.median(np.diff(values[:, time_columns[0]]))
        header_fs = 1.0 / step if step > 0 else None
    keep = [i for i in range(len(names)) if i not in time_columns]
    if not keep:
        raise EcgFormatError("CSV has no lead columns")
    rate = _require_fs(fs if fs is not None else header_fs, "CSV")
    signal = values[:, keep] * _units_scale(units)
    return Record(signal, rate, [names[i] for i in keep], {"format": "csv", "source": source})


def _signal_from_array(array: np.ndarray, what: str) -> np.ndarray:
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.size == 0:
        raise EcgFormatError(f"{what} must hold a 2-D (samples, leads) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise EcgFormatError(f"{what} holds non-numeric data ({array.dtype})")
    # Stored lead-major, (leads, samples), as many tools do: transpose.
    if array.shape[0] <= 15 and array.shape[1] > array.shape[0]:
        array = array.T
    return array.astype(np.float32)


def _default_leads(n: int) -> list[str]:
    from ecg_shared.formats.record import STANDARD_12_LEADS

    return list(STANDARD_12_LEADS) if n == 12 else [f"lead{i + 1}" for i in range(n)]


def read_numpy(
    data: bytes,
    fs: float | None = None,
    leads: list[str] | None = None,
    units: str | None = None,
    source: str | None = None,
) -> Record:
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, OSError, EOFError, zipfile errors...
        raise EcgFormatError(f"not a readable NumPy file: {exc}") from None
    label = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            check_expanded_size([member.file_size for member in loaded.zip.infolist()], "the .npz archive")
            keys = set(loaded.files)
            key = next((k for k in ("signal", "signals", "ecg", "data", "x") if k in keys), None)
            if key is None:
                raise EcgFormatError(f".npz needs a 'signal' array, found {sorted(keys)}")
            array = loaded[key]
            for fs_key in ("fs", "sampling_rate"):
                if fs is None and fs_key in keys:
                    fs = float(np.asarray(loaded[fs_key]).reshape(-1)[0])
            for lead_key in ("leads", "lead_names"):
                if leads is None and lead_key in keys:
                    leads = [str(x) for x in np.asarray(loaded[lead_key]).reshape(-1)]
            if "label" in keys:
                label = str(np.asarray(loaded["label"]).reshape(-1)[0])
        what, fmt = ".npz signal", "npz"
    else:
        array, what, fmt = loaded, ".npy array", "npy"
    signal = _signal_from_array(np.asarray(array), what) * _units_scale(units)
    names = list(leads) if leads else _default_leads(signal.shape[1])
    if len(names) != signal.shape[1]:
        raise EcgFormatError(f"{len(names)} lead names for {signal.shape[1]} signal columns")
    metadata = {"format": fmt, "source": source}
    if label:
        metadata["label"] = label
    return Record(signal, _require_fs(fs, what), names, metadata)
