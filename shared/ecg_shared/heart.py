"""R-peaks and heart rate with neurokit2."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecg_shared.formats.record import Record

_PREFERRED_LEADS = ("II", "I", "V5", "V2")


@dataclass
class HeartRate:
    bpm: float | None
    rpeaks: np.ndarray  # sample indices at the record's own rate
    lead: str

    def to_dict(self) -> dict:
        return {
            "bpm": None if self.bpm is None else round(self.bpm, 1),
            "lead": self.lead,
            "rpeaks": self.rpeaks.tolist(),
        }


def detect_rpeaks(signal: np.ndarray, sampling_rate: float) -> np.ndarray:
    """R-peak sample indices of one lead (neurokit2's default cleaning and detector)."""
    import neurokit2 as nk

    x = np.asarray(signal, dtype=np.float64)
    if x.size < 2 * sampling_rate or not np.all(np.isfinite(x)) or np.ptp(x) < 1e-3:
        return np.array([], dtype=np.int64)
    try:
        cleaned = nk.ecg_clean(x, sampling_rate=round(sampling_rate), method="neurokit")
        _, info = nk.ecg_peaks(cleaned, sampling_rate=round(sampling_rate), method="neurokit")
    except (ValueError, IndexError, ZeroDivisionError):
        return np.array([], dtype=np.int64)
    return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)


def rate_from_rpeaks(rpeaks: np.ndarray, sampling_rate: float) -> float | None:
    """Median-RR heart rate in beats per minute; None without two plausible beats."""
    if len(rpeaks) < 2:
        return None
    rr = np.diff(rpeaks) / sampling_rate
    rr = rr[(rr > 0.2) & (rr < 3.0)]  # 20-300 bpm
    return float(60.0 / np.median(rr)) if rr.size else None


def heart_rate(record: Record) -> HeartRate:
    """Heart rate from lead II where present, else the first usable lead of a preferred list, else lead one."""
    candidates = [lead for lead in _PREFERRED_LEADS if lead in record.lead_names] or record.lead_names[:1]
    for lead in candidates:
        peaks = detect_rpeaks(record.lead(lead), record.sampling_rate)
        bpm = rate_from_rpeaks(peaks, record.sampling_rate)
        if bpm is not None:
            return HeartRate(bpm, peaks, lead)
    return HeartRate(None, np.array([], dtype=np.int64), candidates[0])
