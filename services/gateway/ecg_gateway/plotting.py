"""Traces for the browser: a recording filtered like an ECG machine's display and sized for plotting.

The page draws them on ECG paper (25 mm/s, 10 mm/mV). Display filtering is 0.5 Hz high-pass (baseline wander off)
and a low-pass at 100 Hz or below Nyquist, with the powerline notch; a trace with more than ECG_PLOT_MAX_POINTS
samples (all leads together: a 12-lead strip gets a twelfth each, a single lead the lot, for zooming into long
strips) is resampled (polyphase, anti-aliased) to fit.
"""

from __future__ import annotations

import numpy as np

from ecg_shared.formats import Record
from ecg_shared.preprocessing import filter_signal, resample
from ecg_shared.settings import get_settings

DISPLAY_HIGHPASS_HZ = 0.5
DISPLAY_LOWPASS_HZ = 100.0


def display_band(sampling_rate: float) -> tuple[float, float, float | None]:
    """(high-pass, low-pass, powerline notch or None) in Hz of the display filter at this sampling rate."""
    powerline = get_settings().powerline_hz
    return (
        DISPLAY_HIGHPASS_HZ,
        min(DISPLAY_LOWPASS_HZ, 0.45 * sampling_rate),
        powerline if powerline < 0.45 * sampling_rate else None,
    )


def display_signal(record: Record) -> np.ndarray:
    """The signal filtered for display at its own rate, float32 (n_samples, n_leads); NaN/inf samples become 0."""
    fs = float(record.sampling_rate)
    signal = np.asarray(record.signal, dtype=np.float32)
    signal = np.where(np.isfinite(signal), signal, 0.0).astype(np.float32)
    if signal.shape[0] > 30:
        highpass, lowpass, notch = display_band(fs)
        signal = filter_signal(signal, fs, highpass, lowpass, notch)
    return signal


def plot_trace(record: Record, max_points: int | None = None) -> dict:
    """``{sampling_rate, duration_s, units, lead_names, leads: {name: [mV, ...]}}``; NaN/inf become null.

    ``max_points``: samples per lead at most (default: ECG_PLOT_MAX_POINTS shared among the leads).
    """
    settings = get_settings()
    max_points = max_points or max(100, settings.plot_max_points // max(1, record.n_leads))
    fs = float(record.sampling_rate)
    finite = np.isfinite(record.signal)
    signal = display_signal(record)
    rate = fs
    if signal.shape[0] > max_points:
        rate = fs * max_points / signal.shape[0]
        signal = resample(signal, fs, rate)
        finite = np.ones(signal.shape, dtype=bool)  # positions no longer line up; gaps were zero-filled above
    leads = {}
    for index, name in enumerate(record.lead_names):
        column = np.round(signal[:, index].astype(np.float64), 4)
        values: list = column.tolist()
        if not finite[:, index].all():
            values = [v if ok else None for v, ok in zip(values, finite[:, index], strict=True)]
        leads[name] = values
    return {
        "sampling_rate": rate,
        "duration_s": record.duration_s,
        "units": "mV",
        "lead_names": list(record.lead_names),
        "leads": leads,
    }
