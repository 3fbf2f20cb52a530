"""Signal processing shared by training and inference: one implementation, described by a :class:`PreprocessingSpec`.

A model is trained on ``prepare(record, spec)`` windows and served on the same function with the spec stored in its
ONNX metadata, so the two can never drift apart. Functions take arrays of shape (n_samples, n_leads) and an explicit
``sampling_rate``, in the style of wfdb and neurokit2.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import signal as sp

from ecg_shared.formats.record import EcgFormatError, Record, normalise_lead_name

PREPROCESSING_VERSION = "1"
NORMALISATIONS = ("zscore", "minmax", "none")


@dataclass(frozen=True)
class PreprocessingSpec:
    """Everything that turns a recording into model input. Stored with every model."""

    sampling_rate: float
    window_samples: int
    leads: tuple[str, ...]
    highpass_hz: float | None = 0.5
    lowpass_hz: float | None = 40.0
    notch_hz: float | None = None
    normalisation: str = "zscore"
    version: str = PREPROCESSING_VERSION
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}")
        object.__setattr__(self, "leads", tuple(normalise_lead_name(n) for n in self.leads))

    @property
    def window_s(self) -> float:
        return self.window_samples / self.sampling_rate

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PreprocessingSpec:
        fields = json.loads(text)
        fields["leads"] = tuple(fields["leads"])
        return cls(**fields)


# --- Filtering ---------------------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def design_filter(
    sampling_rate: float, highpass_hz: float | None, lowpass_hz: float | None, notch_hz: float | None, order: int = 4
) -> np.ndarray | None:
    """Second-order sections for baseline high-pass, low-pass and powerline notch; None when nothing applies."""
    nyquist = sampling_rate / 2
    sections = []
    if highpass_hz:
        sections.append(sp.butter(order // 2, highpass_hz, btype="highpass", fs=sampling_rate, output="sos"))
    if lowpass_hz and lowpass_hz < 0.95 * nyquist:
        sections.append(sp.butter(order, lowpass_hz, btype="lowpass", fs=sampling_rate, output="sos"))
    if notch_hz and notch_hz < 0.95 * nyquist and not (lowpass_hz and lowpass_hz < notch_hz * 0.8):
        b, a = sp.iirnotch(notch_hz, Q=30.0, fs=sampling_rate)
        sections.append(sp.tf2sos(b, a))
    return np.vstack(sections) if sections else None


def filter_signal(
    signal: np.ndarray,
    sampling_rate: float,
    highpass_hz: float | None = 0.5,
    lowpass_hz: float | None = 40.0,
    notch_hz: float | None = None,
) -> np.ndarray:
    """Zero-phase (forward-backward) filtering along the time axis: ``scipy.signal.sosfiltfilt`` (odd padding), with
    the filter's steady-state initial conditions computed once per design instead of on every call."""
    key = (float(sampling_rate), highpass_hz, lowpass_hz, notch_hz)
    sos = design_filter(*key)
    if sos is None:
        return np.asarray(signal, dtype=np.float32)
    x = np.asarray(signal)
    padlen = max(min(3 * (2 * len(sos) + 1), x.shape[0] - 1), 0)
    return zero_phase(sos, steady_state(*key), x, padlen).astype(np.float32)


def zero_phase(sos: np.ndarray, zi: np.ndarray, x: np.ndarray, padlen: int) -> np.ndarray:
    """``scipy.signal.sosfiltfilt(sos, x, axis=0, padlen=padlen)`` given ``zi = scipy.signal.sosfilt_zi(sos)``,
    which the caller computes once per design (a linear solve per section: a third of a 12-lead 10 s call): the steps
    of sosfiltfilt in its order, padded in ``x``'s own dtype as it pads, so the result is the same to the bit."""
    zi = zi.reshape((len(sos), 2) + (1,) * (x.ndim - 1))
    ext = np.concatenate((2 * x[:1] - x[padlen:0:-1], x, 2 * x[-1:] - x[-2 : -padlen - 2 : -1])) if padlen else x
    forward, _ = sp.sosfilt(sos, ext, axis=0, zi=zi * ext[:1])
    backward, _ = sp.sosfilt(sos, forward[::-1], axis=0, zi=zi * forward[-1:])
    y = backward[::-1]
    return y[padlen:-padlen] if padlen else y


@lru_cache(maxsize=64)
def steady_state(
    sampling_rate: float, highpass_hz: float | None, lowpass_hz: float | None, notch_hz: float | None
) -> np.ndarray:
    """``scipy.signal.sosfilt_zi`` of :func:`design_filter`'s sections (a linear solve per section: worth caching)."""
    return sp.sosfilt_zi(design_filter(sampling_rate, highpass_hz, lowpass_hz, notch_hz))


# --- Resampling and windowing ------------------------------------------------------------------------------------


def resample(signal: np.ndarray, sampling_rate: float, target_rate: float) -> np.ndarray:
    """Polyphase resampling with scipy's anti-aliasing FIR; exact for rational rate ratios."""
    if abs(sampling_rate - target_rate) < 1e-9:
        return np.asarray(signal, dtype=np.float32)
    ratio = Fraction(target_rate / sampling_rate).limit_denominator(1000)
    x = np.asarray(signal)
    taps = antialiasing_fir(ratio.numerator, ratio.denominator, np.dtype(x.dtype).str)
    return sp.resample_poly(x, ratio.numerator, ratio.denominator, axis=0, window=taps).astype(np.float32)


@lru_cache(maxsize=64)
def antialiasing_fir(up: int, down: int, dtype: str) -> np.ndarray:
    """The low-pass FIR ``scipy.signal.resample_poly`` designs by default for ``up``/``down`` (``firwin``, Kaiser
    window, beta 5, 10 taps per rate on each side), cast as it casts it to a floating input's dtype. Designing it
    took a quarter of each call; given as ``window`` it is designed once per ratio, and the result is the same to
    the bit."""
    max_rate = max(up, down)
    taps = sp.firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    taps = taps.astype(dtype) if np.dtype(dtype).kind in "fc" else taps
    taps.flags.writeable = False  # shared by every call; resample_poly copies it before scaling
    return taps


def fit_length(signal: np.ndarray, n_samples: int, align: str = "center") -> np.ndarray:
    """Crop (centred, or from the start) or zero-pad at the end to exactly ``n_samples``."""
    length = signal.shape[0]
    if length >= n_samples:
        start = (length - n_samples) // 2 if align == "center" else 0
        return signal[start : start + n_samples]
    pad = np.zeros((n_samples - length, *signal.shape[1:]), dtype=signal.dtype)
    return np.concatenate([signal, pad], axis=0)


def window_starts(length: int, window: int, step: int) -> list[int]:
    """Start indices of sliding windows covering the whole signal, the last one aligned to its end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, step))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def sliding_windows(signal: np.ndarray, window: int, step: int | None = None) -> np.ndarray:
    """(n_windows, window, n_leads); a signal shorter than one window is zero-padded to one."""
    step = step or window
    return np.stack(
        [
            fit_length(signal[s : s + window], window, align="start")
            for s in window_starts(signal.shape[0], window, step)
        ]
    )


# --- Normalisation -----------------------------------------------------------------------------------------------


def normalise(signal: np.ndarray, method: str = "zscore", axis: int = 0) -> np.ndarray:
    """Per-lead normalisation along ``axis``: ``zscore`` (mean 0, sd 1), ``minmax`` (to [0, 1]) or ``none``."""
    x = np.asarray(signal, dtype=np.float32)
    if method == "zscore":
        return (x - x.mean(axis=axis, keepdims=True)) / (x.std(axis=axis, keepdims=True) + 1e-6)
    if method == "minmax":
        low, high = x.min(axis=axis, keepdims=True), x.max(axis=axis, keepdims=True)
        return (x - low) / (high - low + 1e-6)
    if method == "none":
        return x
    raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {method!r}")


# --- The pipeline ------------------------------------------------------------------------------------------------


def select_leads(record: Record, leads: tuple[str, ...] | list[str]) -> np.ndarray:
    """The columns a model wants, by name. A single-lead recording serves a single-lead model whatever its name."""
    if len(leads) == 1 and record.n_leads == 1:
        return record.signal
    missing = [lead for lead in leads if normalise_lead_name(lead) not in record.lead_names]
    if missing:
        raise EcgFormatError(f"recording lacks lead(s) {', '.join(missing)} (has {', '.join(record.lead_names)})")
    return np.column_stack([record.lead(lead) for lead in leads])


# Above this many samples (all leads together: 5.5 minutes of 12 leads at 500 Hz) a recording is cleaned one lead at
# a time. Filtering and resampling work in float64 with several full-length temporaries, about seven times the
# float32 input at once; one lead at a time that is one twelfth, for a result equal to the bit (each column is
# filtered and resampled on its own either way). Shorter recordings keep the one call for all leads, which is faster.
LEAD_BY_LEAD_SAMPLES = 2_000_000


def lead_columns(record: Record, leads: tuple[str, ...] | list[str]) -> list[int]:
    """The record's column of each of ``leads``, as :func:`select_leads` picks them (which names missing ones)."""
    if len(leads) == 1 and record.n_leads == 1:
        return [0]
    return [record.lead_names.index(normalise_lead_name(lead)) for lead in leads]


class FilteredLeads:
    """One request's filterings of a record, each lead filtered once per distinct filter: a 12-lead upload's
    models, heart rate and beats asked for the same 0.5-40 Hz band-pass of lead II three times. A column filtered
    with its neighbours equals, to the bit, the column filtered alone (``sosfilt`` runs along each column on its own).
    For recordings cleaned in one pass (up to LEAD_BY_LEAD_SAMPLES); :func:`clean` filters longer ones lead by
    lead without keeping them."""

    def __init__(self, record: Record) -> None:
        self.record = record
        self._columns: dict[tuple, np.ndarray] = {}

    def filtered(
        self, columns: list[int], highpass_hz: float | None, lowpass_hz: float | None, notch_hz: float | None
    ) -> np.ndarray:
        """(n_samples, len(columns)) float32: :func:`filter_signal` of those columns at the record's rate."""
        design = (highpass_hz, lowpass_hz, notch_hz)
        missing = list(dict.fromkeys(c for c in columns if (c, design) not in self._columns))
        if missing:
            done = filter_signal(self.record.signal[:, missing], self.record.sampling_rate, *design)
            for i, column in enumerate(missing):
                self._columns[(column, design)] = done[:, i]
        return np.column_stack([self._columns[(column, design)] for column in columns])


def clean(record: Record, spec: PreprocessingSpec, filtered: FilteredLeads | None = None) -> np.ndarray:
    """Selected leads, filtered at the native rate and resampled to the spec's rate: (n_samples, n_leads).
    ``filtered``: the request's filterings, to reuse a lead already filtered the same way (the same result)."""
    x = select_leads(record, spec.leads)
    if not np.all(np.isfinite(x)):
        raise EcgFormatError("signal contains NaN or infinite values")
    if filtered is not None and x.size <= LEAD_BY_LEAD_SAMPLES:
        columns = lead_columns(record, spec.leads)
        done = filtered.filtered(columns, spec.highpass_hz, spec.lowpass_hz, spec.notch_hz)
        return resample(done, record.sampling_rate, spec.sampling_rate)

    def one_pass(columns: np.ndarray) -> np.ndarray:
        filtered = filter_signal(columns, record.sampling_rate, spec.highpass_hz, spec.lowpass_hz, spec.notch_hz)
        return resample(filtered, record.sampling_rate, spec.sampling_rate)

    if x.size <= LEAD_BY_LEAD_SAMPLES or x.shape[1] == 1:
        return one_pass(x)
    first = one_pass(x[:, :1])
    cleaned = np.empty((first.shape[0], x.shape[1]), dtype=np.float32)
    cleaned[:, 0] = first[:, 0]
    for lead in range(1, x.shape[1]):
        cleaned[:, lead] = one_pass(x[:, lead : lead + 1])[:, 0]
    return cleaned


def window_batch(cleaned: np.ndarray, spec: PreprocessingSpec, step: int | None = None) -> np.ndarray:
    """Windows of a cleaned signal, each normalised on its own real samples before zero padding."""
    length = cleaned.shape[0]
    windows = []
    for start in window_starts(length, spec.window_samples, step or spec.window_samples):
        chunk = normalise(cleaned[start : start + spec.window_samples], spec.normalisation)
        windows.append(fit_length(chunk, spec.window_samples, align="start"))
    return np.stack(windows).astype(np.float32)


def prepare(record: Record, spec: PreprocessingSpec, step: int | None = None) -> np.ndarray:
    """Model input for a recording: (n_windows, window_samples, n_leads) float32."""
    return window_batch(clean(record, spec), spec, step)
