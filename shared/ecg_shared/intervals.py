"""The basic ECG intervals (PR, QRS, QT and QTc) from neurokit2's delineator, as an ECG cart prints them.

Measured on one lead, the heart-rate lead of :func:`ecg_shared.heart.heart_rate` (II where present), at the R-peaks
found there: ``nk.ecg_clean`` then ``nk.ecg_delineate(method="prominence")`` (Emrich et al. 2024). Per beat,
PR = QRS onset - P onset, QRS = QRS offset - QRS onset, QT = T offset - QRS onset; the median over the beats is
reported. QTc is Bazett's, QT / sqrt(RR in s), with RR the median R-R interval.

An interval is reported only when it can be trusted; otherwise it is None with the reason in plain words:
fewer than MIN_BEATS beats delineated, beats that disagree (interquartile range above MAX_SPREAD_MS: in atrial
fibrillation there is no P wave to time, and the delineator's "P onsets" scatter), or a median outside the
plausible range.

Why the prominence method: on the real recordings here, the wavelet method ("dwt", neurokit2's default) gave QRS
134 ms on the Wellnest sample and 200-350 ms on normal CinC 2017 strips; the prominence method 90 ms and 77-100 ms.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ecg_shared.formats.record import Record
from ecg_shared.heart import heart_rate

METHOD = "prominence"
QTC_FORMULA = "Bazett"
MIN_BEATS = 4
MIN_RATE_HZ = 100.0  # below this the waves' onsets and offsets are not resolved
MAX_SPREAD_MS = 40.0
PLAUSIBLE_MS = {"PR": (60.0, 400.0), "QRS": (40.0, 250.0), "QT": (200.0, 700.0)}
# (name, the wave boundary it starts at, the one it ends at), in neurokit2's names
_INTERVALS = (
    ("PR", "ECG_P_Onsets", "ECG_R_Onsets"),
    ("QRS", "ECG_R_Onsets", "ECG_R_Offsets"),
    ("QT", "ECG_R_Onsets", "ECG_T_Offsets"),
)


@dataclass
class Interval:
    ms: float | None  # median over the beats; None when not measured
    beats: int  # beats where both boundaries were found
    note: str = ""  # why it was not measured


@dataclass
class Intervals:
    lead: str
    heart_rate_bpm: float | None
    beats: int  # R-peaks detected
    pr: Interval
    qrs: Interval
    qt: Interval
    qtc_ms: float | None
    qtc_formula: str = QTC_FORMULA
    method: str = f"neurokit2 ecg_delineate ({METHOD})"


def _not_measured(note: str) -> Interval:
    return Interval(None, 0, note)


def _summarise(name: str, durations_ms: np.ndarray) -> Interval:
    values = durations_ms[np.isfinite(durations_ms) & (durations_ms > 0)]
    if values.size < MIN_BEATS:
        return Interval(None, int(values.size), f"delineated on {values.size} beats, fewer than {MIN_BEATS}")
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    if q3 - q1 > MAX_SPREAD_MS:
        return Interval(None, int(values.size), f"inconsistent across beats (spread {q3 - q1:.0f} ms)")
    low, high = PLAUSIBLE_MS[name]
    if not low <= median <= high:
        return Interval(None, int(values.size), f"implausible value ({median:.0f} ms)")
    return Interval(float(median), int(values.size))


def measure_intervals(record: Record) -> Intervals:
    """PR, QRS, QT and QTc of the recording, each None with a note where it cannot be measured reliably."""
    import neurokit2 as nk

    rate = heart_rate(record)
    fs = record.sampling_rate

    def without(note: str) -> Intervals:
        missing = _not_measured(note)
        return Intervals(rate.lead, rate.bpm, len(rate.rpeaks), missing, missing, missing, None)

    if fs < MIN_RATE_HZ:
        return without(f"sampling rate {fs:g} Hz is below {MIN_RATE_HZ:g} Hz")
    if len(rate.rpeaks) < MIN_BEATS or rate.bpm is None:
        return without(f"{len(rate.rpeaks)} beats detected, fewer than {MIN_BEATS}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # neurokit2 warns per beat where a wave is not found
            cleaned = nk.ecg_clean(record.lead(rate.lead).astype(np.float64), sampling_rate=round(fs))
            _, waves = nk.ecg_delineate(cleaned, {"ECG_R_Peaks": rate.rpeaks}, sampling_rate=round(fs), method=METHOD)
    except (ValueError, IndexError, ZeroDivisionError) as exc:
        return without(f"the delineator failed ({exc})")
    measured = {}
    for name, start, end in _INTERVALS:
        starts = np.asarray(waves.get(start, []), dtype=np.float64)
        ends = np.asarray(waves.get(end, []), dtype=np.float64)
        # One entry per beat, NaN where the boundary was not found; neurokit2 drops a boundary at sample 0, which
        # can only be the first beat's, so the lists are aligned from their ends.
        n = min(starts.size, ends.size)
        measured[name] = _summarise(name, (ends[ends.size - n :] - starts[starts.size - n :]) * 1000.0 / fs)
    qt = measured["QT"]
    qtc = None if qt.ms is None else float(qt.ms / np.sqrt(60.0 / rate.bpm))
    return Intervals(rate.lead, rate.bpm, len(rate.rpeaks), measured["PR"], measured["QRS"], qt, qtc)
