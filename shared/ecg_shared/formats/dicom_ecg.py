"""DICOM waveform ECGs (12-lead ECG, General ECG and Hemodynamic waveform storage), read with pydicom.

pydicom parses the file (explicit or implicit VR, any byte order it supports) and unpacks each multiplex group's
samples; this module chooses the group and the channels and applies the file's scale:

- **Multiplex group:** the rhythm group, never a median or representative beat (those are kept as a note in the
  metadata). Among the others, the one with the most ECG channels, then the longest.
- **Channels:** those whose source code (SCPECG ``5.6.3-9-N``, MDC ``2:N``), code meaning or label names an ECG lead
  and whose sensitivity is in volts. Pressure, respiration and other channels of a hemodynamic study are left out.
- **Scale:** ``mV = (raw * Channel Sensitivity * Sensitivity Correction Factor + Channel Baseline) * units``, the
  units from the Channel Sensitivity Units Sequence (UCUM ``uV``, ``mV``, ``V``, ``nV``).
- **Padding:** rows where every channel equals the Waveform Padding Value are dropped from the end; inside the data a
  padded sample is filled by linear interpolation when the padding value is the sample type's extreme (a value
  inside the range, such as 0, cannot be told from a real sample there).

Only the dataset elements listed in ``_WANTED`` are read, so patient, physician and institution fields are never
parsed, let alone kept.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

from ecg_shared.formats.lead_codes import (
    KNOWN_LEADS,
    distinct_lead_names,
    lead_from_code,
    lead_from_text,
    standard_order,
)
from ecg_shared.formats.leads import derive_limb_leads
from ecg_shared.formats.record import EcgFormatError, Record

SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.1.1": "12-lead ECG",
    "1.2.840.10008.5.1.4.1.1.9.1.2": "General ECG",
    "1.2.840.10008.5.1.4.1.1.9.1.3": "Ambulatory ECG",
    "1.2.840.10008.5.1.4.1.1.9.2.1": "Hemodynamic waveform",
    "1.2.840.10008.5.1.4.1.1.9.3.1": "Basic cardiac electrophysiology waveform",
}

_WANTED = [
    "SOPClassUID",
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "SoftwareVersions",
    "AcquisitionDateTime",
    "ContentDate",
    "ContentTime",
    "WaveformSequence",
]

_VOLT_UNITS_TO_MV = {"NV": 1e-6, "UV": 1e-3, "MV": 1.0, "V": 1e3}
_UNIT_WORDS = {"NANOVOLT": "NV", "MICROVOLT": "UV", "MILLIVOLT": "MV", "VOLT": "V"}
_SAMPLE_TYPES = {
    (8, "SB"): np.int8,
    (8, "UB"): np.uint8,
    (16, "SS"): np.int16,
    (16, "US"): np.uint16,
    (32, "SL"): np.int32,
    (32, "UL"): np.uint32,
    (64, "SV"): np.int64,
    (64, "UV"): np.uint64,
}
_FIRST_TAGS = (b"\x02\x00\x00\x00", b"\x08\x00\x05\x00", b"\x08\x00\x08\x00", b"\x08\x00\x16\x00")
_BEAT_WORDS = ("MEDIAN", "BEAT", "AVERAGE", "REPRESENTATIVE", "TEMPLATE")


def looks_like_dicom(head: bytes) -> bool:
    """True for a DICOM Part 10 file (``DICM`` after the 128-byte preamble) or a bare dataset from (0002/0008,xxxx)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    # A bare dataset starts with (0002,0000) UL or (0008,0005/0008/0016), explicit (VR letters) or implicit (a
    # 32-bit length under 64 KiB).
    if len(head) < 8 or head[:4] not in _FIRST_TAGS:
        return False
    return head[4:6] in (b"UL", b"CS", b"UI") or head[6:8] == b"\x00\x00"


def _code_item(sequence: Any) -> Any:
    return sequence[0] if sequence else None


def _channel_lead(channel: Any) -> str | None:
    """The channel's lead name from its source code, code meaning or label; None for a non-ECG channel."""
    source = _code_item(channel.get("ChannelSourceSequence"))
    if source is not None:
        lead = lead_from_code(source.get("CodingSchemeDesignator", ""), source.get("CodeValue", ""))
        if lead:
            return lead
        meaning = lead_from_text(source.get("CodeMeaning", ""))
        if meaning in KNOWN_LEADS:
            return meaning
    label = lead_from_text(channel.get("ChannelLabel", ""))
    return label if label in KNOWN_LEADS else None


def _units_to_mv(channel: Any) -> float | None:
    units = _code_item(channel.get("ChannelSensitivityUnitsSequence"))
    if units is None:
        return None
    code = str(units.get("CodeValue", "")).strip().upper().replace("µ", "U")
    if code in _VOLT_UNITS_TO_MV:
        return _VOLT_UNITS_TO_MV[code]
    word = str(units.get("CodeMeaning", "")).strip().upper()
    return _VOLT_UNITS_TO_MV.get(_UNIT_WORDS.get(word, ""))


def _is_beat_group(group: Any) -> bool:
    label = str(group.get("MultiplexGroupLabel", "")).upper()
    return any(word in label for word in _BEAT_WORDS)


def _ecg_channels(group: Any) -> list[tuple[int, str]]:
    channels = group.get("ChannelDefinitionSequence") or []
    return [(index, lead) for index, channel in enumerate(channels) if (lead := _channel_lead(channel))]


def _choose_group(groups: list[Any]) -> int:
    def rank(index: int) -> tuple:
        group = groups[index]
        originality = str(group.get("WaveformOriginality", "")).upper()
        return (
            len(_ecg_channels(group)) > 0,
            not _is_beat_group(group),
            originality == "ORIGINAL",
            len(_ecg_channels(group)),
            int(group.get("NumberOfWaveformSamples", 0) or 0),
        )

    best = max(range(len(groups)), key=rank)
    if not _ecg_channels(groups[best]):
        raise EcgFormatError("DICOM waveform has no ECG channel (no channel names an ECG lead)")
    if _is_beat_group(groups[best]):
        label = groups[best].get("MultiplexGroupLabel", "")
        raise EcgFormatError(f"DICOM waveform holds only a representative beat ({label!r}), no rhythm data")
    return best


def _raw_samples(group: Any, index: int, little_endian: bool) -> np.ndarray:
    bits = int(group.get("WaveformBitsAllocated", 0) or 0)
    interpretation = str(group.get("WaveformSampleInterpretation", "")).strip().upper()
    dtype = _SAMPLE_TYPES.get((bits, interpretation))
    if dtype is None:
        raise EcgFormatError(
            f"DICOM multiplex group {index + 1}: unsupported samples ({bits} bits, interpretation {interpretation!r}; "
            "mu-law and A-law audio encodings are not ECG)"
        )
    n_channels = int(group.get("NumberOfWaveformChannels", 0) or 0)
    n_samples = int(group.get("NumberOfWaveformSamples", 0) or 0)
    data = group.get("WaveformData")
    if n_channels <= 0 or n_samples <= 0 or data is None:
        raise EcgFormatError(f"DICOM multiplex group {index + 1} has no samples")
    needed = n_channels * n_samples * np.dtype(dtype).itemsize
    if len(data) < needed:
        raise EcgFormatError(
            f"DICOM multiplex group {index + 1} is truncated: {n_channels} channels x {n_samples} samples need "
            f"{needed} bytes of waveform data, the file holds {len(data)}"
        )
    # OW data of the (retired) big-endian transfer syntax is stored in 16-bit big-endian words.
    order = "<" if little_endian or np.dtype(dtype).itemsize == 1 else ">"
    samples = np.frombuffer(bytes(data[:needed]), dtype=np.dtype(dtype).newbyteorder(order))
    return samples.astype(np.dtype(dtype)).reshape(n_samples, n_channels)


def _padding_mask(group: Any, raw: np.ndarray) -> np.ndarray | None:
    """True where a sample is padding, or None without a padding value."""
    padding = group.get("WaveformPaddingValue")
    if padding is None or len(padding) < raw.dtype.itemsize:
        return None
    value = np.frombuffer(bytes(padding[: raw.dtype.itemsize]), dtype=raw.dtype)[0]
    return raw == value


def _apply_padding(raw: np.ndarray, padded: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Drop trailing all-padding rows; interpolate interior padded samples when the value is the type's extreme."""
    full_rows = np.all(padded, axis=1)
    keep = len(full_rows)
    while keep and full_rows[keep - 1]:
        keep -= 1
    trimmed = len(full_rows) - keep
    signal = raw[:keep].astype(np.float64)
    padded = padded[:keep]
    info = np.iinfo(raw.dtype)
    filled = 0
    if keep and padded.any():
        value = raw[:keep][padded][0]
        if value in (info.min, info.max):
            axis = np.arange(keep)
            for column in np.flatnonzero(padded.any(axis=0)):
                good = ~padded[:, column]
                if not good.any():
                    raise EcgFormatError("DICOM waveform channel holds only padding values")
                signal[~good, column] = np.interp(axis[~good], axis[good], signal[good, column])
                filled += int((~good).sum())
    return signal, trimmed, filled


def _scaled(group: Any, signal: np.ndarray, channels: list[tuple[int, str]]) -> tuple[np.ndarray, list[str]]:
    definitions = group.ChannelDefinitionSequence
    columns, names = [], []
    for index, lead in channels:
        channel = definitions[index]
        to_mv = _units_to_mv(channel)
        if to_mv is None:
            if not channel.get("ChannelSensitivityUnitsSequence") and channel.get("ChannelSensitivity") is not None:
                raise EcgFormatError(f"DICOM ECG channel {lead} gives a sensitivity without its units")
            continue  # a channel measured in something other than volts is not an ECG lead
        sensitivity = channel.get("ChannelSensitivity")
        if sensitivity is None:
            raise EcgFormatError(f"DICOM ECG channel {lead} has no Channel Sensitivity: its scale is unknown")
        correction = channel.get("ChannelSensitivityCorrectionFactor")
        baseline = channel.get("ChannelBaseline")
        gain = float(sensitivity) * (1.0 if correction is None else float(correction))
        if not np.isfinite(gain) or gain == 0:
            raise EcgFormatError(f"DICOM ECG channel {lead} has an unusable sensitivity {gain!r}")
        offset = 0.0 if baseline is None else float(baseline)
        columns.append(((signal[:, index] * gain + offset) * to_mv).astype(np.float32))
        names.append(lead)
    if not columns:
        raise EcgFormatError("DICOM waveform has no ECG channel measured in volts")
    return np.column_stack(columns), names


def _filters(group: Any, index: int) -> dict[str, float]:
    channel = group.ChannelDefinitionSequence[index]
    keys = {
        "FilterLowFrequency": "highpass_hz",
        "FilterHighFrequency": "lowpass_hz",
        "NotchFilterFrequency": "notch_hz",
    }
    return {name: float(channel.get(key)) for key, name in keys.items() if channel.get(key) not in (None, "")}


def _recorded_at(ds: Any) -> str | None:
    stamp = str(ds.get("AcquisitionDateTime", "") or "")
    if not stamp:
        stamp = str(ds.get("ContentDate", "") or "") + str(ds.get("ContentTime", "") or "")
    digits = stamp.split(".")[0].split("+")[0].split("-")[0]
    if len(digits) < 8 or not digits.isdigit():
        return None
    iso = f"{digits[0:4]}-{digits[4:6]}-{digits[6:8]}"
    if len(digits) >= 12:
        iso += f"T{digits[8:10]}:{digits[10:12]}" + (f":{digits[12:14]}" if len(digits) >= 14 else "")
    return iso


def read_dicom_ecg(data: bytes, source: str | None = None) -> Record:
    """Decode a DICOM waveform file's rhythm ECG into millivolts."""
    import pydicom

    # pydicom checks each value as it converts it and warns and logs what it finds wrong, the value included: this
    # reader wants no file content in the logs, so values are taken as they are (a bad one fails where it is used).
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _decode(data, source)


def _decode(data: bytes, source: str | None) -> Record:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(bytes(data)), force=True, specific_tags=_WANTED)
        groups = list(ds.get("WaveformSequence") or [])
        sop_class = str(ds.get("SOPClassUID", "") or "")
    except InvalidDicomError as exc:
        raise EcgFormatError(f"not a readable DICOM file: {exc}") from None
    except EcgFormatError:
        raise
    except Exception as exc:  # pydicom raises many types on a damaged file
        raise EcgFormatError(f"damaged DICOM file: {type(exc).__name__}: {exc}") from None
    if not groups:
        kind = SOP_CLASSES.get(sop_class, sop_class or "unknown SOP class")
        raise EcgFormatError(f"DICOM file ({kind}) has no waveform data: no Waveform Sequence (5400,0100)")

    try:
        chosen = _choose_group(groups)
        group = groups[chosen]
        rate = float(group.get("SamplingFrequency", 0) or 0)
        if not np.isfinite(rate) or rate <= 0:
            raise EcgFormatError(f"DICOM multiplex group {chosen + 1} has no sampling frequency")
        raw = _raw_samples(group, chosen, little_endian=ds.original_encoding[1] is not False)
        padded = _padding_mask(group, raw)
        if padded is None:
            signal, trimmed, filled = raw.astype(np.float64), 0, 0
        else:
            signal, trimmed, filled = _apply_padding(raw, padded)
        if len(signal) == 0:
            raise EcgFormatError("DICOM waveform holds only padding values")
        channels = _ecg_channels(group)
        millivolts, names = _scaled(group, signal, channels)
        metadata: dict[str, Any] = {
            "format": "dicom_ecg",
            "sop_class": SOP_CLASSES.get(sop_class, sop_class or None),
            "multiplex_group": str(group.get("MultiplexGroupLabel", "") or "") or None,
            "filters": _filters(group, channels[0][0]),
        }
    except EcgFormatError:
        raise
    except Exception as exc:  # malformed values inside the waveform module (non-numeric strings, bad sequences)
        raise EcgFormatError(f"damaged DICOM waveform module: {type(exc).__name__}: {exc}") from None

    for key, name in (("Manufacturer", "manufacturer"), ("ManufacturerModelName", "model")):
        if ds.get(key):
            metadata[name] = str(ds.get(key))
    if ds.get("SoftwareVersions"):
        metadata["software"] = str(ds.get("SoftwareVersions"))
    recorded_at = _recorded_at(ds)
    if recorded_at:
        metadata["recorded_at"] = recorded_at
    beats = [g for g in groups if _is_beat_group(g)]
    if beats:
        beat = beats[0]
        metadata["representative_beat"] = {
            "samples": int(beat.get("NumberOfWaveformSamples", 0) or 0),
            "sampling_rate": float(beat.get("SamplingFrequency", 0) or 0),
            "channels": int(beat.get("NumberOfWaveformChannels", 0) or 0),
        }
    if trimmed or filled:
        metadata["padding"] = {"trailing_samples_dropped": trimmed, "samples_interpolated": filled}
    ignored = int(group.get("NumberOfWaveformChannels", 0) or 0) - len(names)
    if ignored:
        metadata["ignored_channels"] = ignored
    names = distinct_lead_names(names, "DICOM waveform")
    if source:
        metadata["source"] = source
    order = standard_order(names)
    return derive_limb_leads(Record(millivolts[:, order], rate, [names[k] for k in order], metadata))
