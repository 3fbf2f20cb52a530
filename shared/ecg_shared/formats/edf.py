"""EDF and EDF+ recordings with ECG channels (patches, Holters), read with edfio.

The project checks the fixed header itself first, so that a file whose header lies about its size is refused by
name rather than read short or padded: the number of data records times the record size must be what the file holds
(a partial record at the end is ignored and counted in the metadata; an unknown count, -1, is taken from the size).

Channels: a signal is an ECG lead when its physical dimension is a voltage (nV, µV/uV, mV, V) and its label names an
ECG lead (``I``, ``ECG II``, ``EKG V1``, ``Lead aVF``) or says ECG/EKG (``ECG1``). Accelerometer, event, annotation,
lead-off, status and other channels are left out, and so are EEG and other voltages that are not labelled ECG. When
ECG channels differ in rate, the rate most of them share is kept. Values come out of edfio in the file's physical
units and are scaled to millivolts.

Only the start date and time, the EDF+ equipment field and the channels' prefiltering and transducer are kept: the
patient and recording fields (names, codes, technician) are never read into the record.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np

from ecg_shared.formats.lead_codes import KNOWN_LEADS, distinct_lead_names, lead_from_text, standard_order
from ecg_shared.formats.leads import derive_limb_leads
from ecg_shared.formats.record import EcgFormatError, Record

_VOLTS_TO_MV = {"nv": 1e-6, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "mv": 1.0, "v": 1e3}
_NOT_ECG = re.compile(
    r"acc|accel|gyro|magnet|event|annotation|lead.?off|loff|status|marker|trigger|battery|temp|resp|spo2|pleth|"
    r"position|impedance|pace|quality",
    re.IGNORECASE,
)
_SAYS_ECG = re.compile(r"ecg|ekg", re.IGNORECASE)


def looks_like_edf(head: bytes) -> bool:
    """True for an EDF/EDF+ header: version ``0`` padded to 8 bytes and numeric header-size and signal-count fields."""
    if len(head) < 256 or head[:8] != b"0       ":
        return False
    return head[184:192].strip().isdigit() and head[252:256].strip().isdigit()


def _number(field: bytes, what: str) -> int:
    text = field.decode("ascii", "replace").strip()
    try:
        return int(text)
    except ValueError:
        raise EcgFormatError(f"EDF header field {what} is not a whole number: {text!r}") from None


def _checked_size(data: bytes) -> tuple[bytes, int, int]:
    """The data to hand to edfio (with a definite record count), the record count, and trailing bytes ignored."""
    if len(data) < 256:
        raise EcgFormatError(f"EDF file of {len(data)} bytes is shorter than its 256-byte header (truncated)")
    header_bytes = _number(data[184:192], "'number of bytes in header'")
    n_records = _number(data[236:244], "'number of data records'")
    n_signals = _number(data[252:256], "'number of signals'")
    if n_signals <= 0 or header_bytes != 256 * (n_signals + 1):
        raise EcgFormatError(
            f"EDF header is inconsistent: {n_signals} signals need a {256 * (n_signals + 1)}-byte header, "
            f"it says {header_bytes}"
        )
    if len(data) < header_bytes:
        raise EcgFormatError(f"EDF file is truncated inside its {header_bytes}-byte header ({len(data)} bytes)")
    per_record = [
        _number(data[256 + 216 * n_signals + 8 * k : 256 + 216 * n_signals + 8 * (k + 1)], "'samples per record'")
        for k in range(n_signals)
    ]
    record_bytes = 2 * sum(per_record)
    if record_bytes <= 0 or min(per_record) < 0:
        raise EcgFormatError("EDF header gives no samples per data record")
    held, partial = divmod(len(data) - header_bytes, record_bytes)
    if n_records == -1:  # allowed while recording; the size tells
        n_records = held
        data = data[:236] + f"{n_records:<8d}".encode("ascii") + data[244:]
    if n_records != held:
        raise EcgFormatError(
            f"EDF header says {n_records} data records of {record_bytes} bytes, but the file holds {held} "
            f"(and {partial} bytes more): the header's record count is wrong or the file is truncated"
        )
    if n_records == 0:
        raise EcgFormatError("EDF file holds no data records")
    return data[: header_bytes + n_records * record_bytes], n_records, partial


def _ecg_name(label: str, dimension: str) -> str | None:
    """The lead name of an ECG channel, or None for any other channel."""
    if _VOLTS_TO_MV.get(dimension.strip().lower()) is None or _NOT_ECG.search(label):
        return None
    lead = lead_from_text(label)
    if lead in KNOWN_LEADS:
        return lead
    return label.strip() if _SAYS_ECG.search(label) else None


def _ecg_signal(signals: list[Any]) -> tuple[np.ndarray, list[Any], list[str]]:
    """The ECG channels sharing the most common rate, in mV, the edfio signals they came from, and their names."""
    ecg = [(signal, name) for signal in signals if (name := _ecg_name(signal.label, signal.physical_dimension))]
    if not ecg:
        found = ", ".join(f"{s.label.strip()!r} [{s.physical_dimension.strip()}]" for s in signals) or "none"
        raise EcgFormatError(f"EDF file has no ECG channel (a voltage labelled as an ECG lead); channels: {found}")
    rates = Counter(signal.sampling_frequency for signal, _ in ecg)
    rate = max(rates, key=lambda r: (rates[r], r))
    kept = [signal for signal, _ in ecg if signal.sampling_frequency == rate]
    names = distinct_lead_names([name for signal, name in ecg if signal.sampling_frequency == rate], "EDF file")
    out = np.empty((len(kept[0].data), len(kept)), dtype=np.float32)
    for column, channel in enumerate(kept):  # one float64 channel at a time, straight into the float32 record
        out[:, column] = channel.data * _VOLTS_TO_MV[channel.physical_dimension.strip().lower()]
    if not np.all(np.isfinite(out)):
        raise EcgFormatError("EDF channel scale is invalid (physical or digital range gives non-finite values)")
    return out, kept, names


def read_edf(data: bytes, source: str | None = None) -> Record:
    """Decode the ECG channels of an EDF/EDF+ file into millivolts."""
    import edfio

    data, n_records, partial = _checked_size(bytes(data))
    try:
        edf = edfio.read_edf(data, lazy_load_data=True, header_encoding="latin-1")  # "µV" in the wild
        signals = list(edf.signals)
        if edf.reserved.startswith("EDF+D"):
            raise EcgFormatError("EDF+D (discontinuous) recordings are not supported: their records have time gaps")
        signal, kept, names = _ecg_signal(signals)
    except EcgFormatError:
        raise
    except Exception as exc:  # edfio raises ValueError and others on non-compliant headers and records
        raise EcgFormatError(f"EDF file cannot be read: {type(exc).__name__}: {exc}") from None

    metadata: dict[str, Any] = {
        "format": "edf+" if edf.reserved.startswith("EDF+") else "edf",
        "data_records": n_records,
        "ignored_channels": [s.label.strip() for s in signals if not any(s is k for k in kept)],
        "filters": kept[0].prefiltering.strip() or None,
        "transducer": kept[0].transducer_type.strip() or None,
    }
    if partial:
        metadata["trailing_bytes_ignored"] = partial
    try:
        metadata["recorded_at"] = edf.startdatetime.isoformat() if edf.startdatetime else None
    except Exception:  # an unparseable start date is not a reason to refuse the signal
        metadata["recorded_at"] = None
    if metadata["format"] == "edf+":
        try:
            equipment = edf.recording.equipment_code
            if equipment and equipment != "X":
                metadata["device"] = equipment.replace("_", " ")
        except Exception:  # a free-text recording field: nothing to take
            pass
    if source:
        metadata["source"] = source
    order = standard_order(names)
    rate = kept[0].sampling_frequency
    return derive_limb_leads(Record(signal[:, order], rate, [names[k] for k in order], metadata))
