"""Beats of one ECG lead and the rhythm evidence a cardiologist reads from them, as a fixed vector of features.

Atrial fibrillation is defined by irregularly irregular RR intervals without P waves; premature beats, pauses and
flutter show in the RR series and in how alike the beats are. :func:`beat_features` measures these on one lead with
sleepecg's compiled Pan-Tompkins detector. It is the one implementation: training computes it on each cleaned
recording, inference on the same cleaned lead, and the model's ONNX graph takes the vector as its ``features`` input.

>>> import numpy as np
>>> fs = 150.0
>>> t = np.arange(int(20 * fs)) / fs
>>> ecg = np.exp(-(((t % 0.8) - 0.4) ** 2) / 2e-4)  # a spike every 0.8 s: 75 bpm, perfectly regular
>>> features = dict(zip(FEATURE_NAMES, beat_features(ecg, fs)))
>>> round(float(features["heart_rate_bpm"])), bool(features["rr_cv"] < 0.01), float(features["beats_valid"])
(75, True, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

FEATURES_VERSION = "beats-2"  # what new models get; a model keeps the version it was trained with
# beats-1: the beat features, and for morphology leads their median beat's QRS, ST and T and the QRS axis;
# beats-2: also each morphology lead's Q, R and S waves and the voltage criteria they give.
FEATURE_VERSIONS = ("beats-1", "beats-2")
MIN_BEATS = 4  # fewer beats than this: the RR features are undefined (zeros) and beats_valid is 0
MIN_RR_S, MAX_RR_S = 0.2, 3.0  # 20-300 bpm; intervals outside are detection gaps or double detections
BEAT_BEFORE_S, BEAT_AFTER_S = 0.25, 0.40  # a beat's segment around its R peak
P_WINDOW_S = (-0.25, -0.08)  # where the P wave lies before the R peak
T_WINDOW_S = (0.15, 0.40)  # where the T wave lies after it
QRS_HALF_WIDTH_S = 0.06
REFINE_S = 0.08  # a detection is moved to the largest deflection within this reach

# Each beat feature and what it measures, in the words the explanation page shows (its unit in brackets).
FEATURE_DESCRIPTIONS = {
    "beats_valid": "beats found: 1 when at least four beats were detected",
    "heart_rate_bpm": "heart rate (bpm)",
    "rr_median_s": "median RR interval (s)",
    "rr_min_rel": "shortest RR interval / median RR",
    "rr_max_rel": "longest RR interval / median RR",
    "rr_cv": "RR variation (SD / mean of the RR intervals)",
    "rmssd_rel": "RMSSD of successive RR differences / mean RR",
    "pnn50": "share of successive RR differences over 50 ms",
    "pnn20": "share of successive RR differences over 20 ms",
    "madsd_rel": "median successive RR difference / median RR",
    "irregular_fraction": "share of successive RR differences over 15 % of the interval",
    "turning_point_ratio": "turning points of the RR series / those of a random series",
    "sd1_sd2": "Poincaré SD1/SD2 (short- over long-term RR variability)",
    "sample_entropy": "sample entropy of the RR series",
    "premature_fraction": "share of premature beats followed by a longer interval",
    "beat_correlation": "how alike the beats are (mean correlation with the median beat)",
    "beat_outlier_fraction": "share of beats unlike the median beat (correlation under 0.8)",
    "p_wave_ratio": "P-wave size / QRS amplitude (median beat)",
    "p_wave_consistency": "how consistent each beat's P wave is with the median beat's",
    "t_wave_ratio": "T-wave size / QRS amplitude (median beat)",
    "qrs_width_s": "QRS width at half amplitude (s)",
    "qrs_amplitude": "QRS amplitude, peak to peak (mV)",
    "beat_coverage": "share of the recording the detected beats cover",
}
FEATURE_NAMES = tuple(FEATURE_DESCRIPTIONS)
N_FEATURES = len(FEATURE_NAMES)


def detect_beats(signal: np.ndarray, sampling_rate: float) -> np.ndarray:
    """R-peak sample indices of one lead: sleepecg's compiled detector, each detection moved to the largest
    deflection of the QRS within 80 ms (sleepecg marks the peak of its integrated signal, which may lie before
    it), so every beat is marked at the same point of its complex. Empty for a flat, short or broken lead."""
    x = np.asarray(signal, dtype=np.float64).ravel()
    if x.size < 2 * sampling_rate or not np.all(np.isfinite(x)) or np.ptp(x) < 1e-6:
        return np.array([], dtype=np.int64)
    try:
        peaks = np.asarray(sleepecg_heartbeats(x, sampling_rate), dtype=np.int64)
    except (ValueError, IndexError, ZeroDivisionError):
        return np.array([], dtype=np.int64)
    if not peaks.size:
        return peaks
    reach = max(round(REFINE_S * sampling_rate), 1)
    offsets = np.arange(-reach, reach + 1)
    around = np.clip(peaks[:, None] + offsets[None, :], 0, x.size - 1)
    deviation = np.abs(x[around] - np.median(x[around], axis=1, keepdims=True))
    return np.unique(around[np.arange(len(peaks)), np.argmax(deviation, axis=1)])


def sleepecg_heartbeats(x: np.ndarray, sampling_rate: float) -> np.ndarray:
    """``sleepecg.detect_heartbeats(x, sampling_rate)`` (its compiled backend), step by step as sleepecg takes them,
    with its 5-30 Hz band-pass's initial conditions computed once per rate: sleepecg keeps the filter's design but
    solves for them on every call, half of its time on a 10 s lead. The same beats (tested against sleepecg on real
    records); sleepecg itself where its compiled module is missing."""
    import sleepecg

    try:
        from sleepecg._heartbeat_detection import _squared_moving_integration, _thresholding
    except ImportError:
        return sleepecg.detect_heartbeats(x, sampling_rate)
    from ecg_shared.preprocessing import zero_phase

    if len(x) < 2:
        raise ValueError("ECG signal must have more than one sample.")
    first = 0
    if x[1] == x[0]:  # a flat start would mess up the detection thresholds
        nonflat = np.nonzero(x != x[0])[0]
        if not len(nonflat):
            raise ValueError("ECG signal is flat.")
        first = nonflat[0]
    sos, zi, padlen = _sleepecg_band(sampling_rate)
    signal = x[first:]
    if signal.shape[0] <= padlen:
        raise ValueError("ECG signal too short for sleepecg's band-pass")
    filtered = np.ascontiguousarray(zero_phase(sos, zi, signal, padlen))
    derivative = np.correlate(filtered, np.array([-1, -2, 0, 2, 1]), mode="same")  # Pan & Tompkins' five points
    integrated = _squared_moving_integration(derivative, int(0.15 * sampling_rate))  # a 150 ms window
    return np.where(_thresholding(filtered, integrated, sampling_rate))[0] + first


@lru_cache(maxsize=32)
def _sleepecg_band(sampling_rate: float) -> tuple[np.ndarray, np.ndarray, int]:
    """sleepecg's band-pass (second order, 5-30 Hz), its ``sosfilt_zi`` and sosfiltfilt's default padding length."""
    from scipy.signal import butter, sosfilt_zi

    sos = butter(N=2, Wn=(5, 30), btype="bandpass", output="sos", fs=sampling_rate)
    taps = 2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return sos, sosfilt_zi(sos), 3 * taps


def beat_features(signal: np.ndarray, sampling_rate: float, beats: np.ndarray | None = None) -> np.ndarray:
    """The :data:`FEATURE_NAMES` vector (float32) of one lead at ``sampling_rate``; ``beats`` if already detected."""
    x = np.asarray(signal, dtype=np.float64).ravel()
    peaks = detect_beats(x, sampling_rate) if beats is None else np.asarray(beats, dtype=np.int64)
    out = dict.fromkeys(FEATURE_NAMES, 0.0)
    rr = np.diff(peaks) / sampling_rate
    rr = rr[(rr >= MIN_RR_S) & (rr <= MAX_RR_S)]
    if len(peaks) >= MIN_BEATS and rr.size >= MIN_BEATS - 1:
        out.update(_rr_features(rr))
        out.update(_morphology_features(x, peaks, sampling_rate))
        out["beats_valid"] = 1.0
        out["beat_coverage"] = float(min(len(peaks) * np.median(rr) / (x.size / sampling_rate), 2.0))
    return np.array([out[name] for name in FEATURE_NAMES], dtype=np.float32)


def _rr_features(rr: np.ndarray) -> dict[str, float]:
    mean, median = float(rr.mean()), float(np.median(rr))
    diff = np.diff(rr)
    abs_diff = np.abs(diff)
    features = {
        "heart_rate_bpm": 60.0 / mean,
        "rr_median_s": median,
        "rr_min_rel": float(rr.min() / median),
        "rr_max_rel": float(rr.max() / median),
        "rr_cv": float(rr.std() / mean),
        "rmssd_rel": float(np.sqrt(np.mean(diff**2)) / mean) if diff.size else 0.0,
        "pnn50": float(np.mean(abs_diff > 0.05)) if diff.size else 0.0,
        "pnn20": float(np.mean(abs_diff > 0.02)) if diff.size else 0.0,
        "madsd_rel": float(np.median(abs_diff) / median) if diff.size else 0.0,
        "irregular_fraction": float(np.mean(abs_diff > 0.15 * rr[:-1])) if diff.size else 0.0,
        "turning_point_ratio": _turning_point_ratio(rr),
        "sd1_sd2": _sd1_sd2(rr),
        "sample_entropy": _sample_entropy(rr),
        "premature_fraction": _premature_fraction(rr),
    }
    return features


def _turning_point_ratio(rr: np.ndarray) -> float:
    if rr.size < 3:
        return 0.0
    middle, before, after = rr[1:-1], rr[:-2], rr[2:]
    turns = ((middle > before) & (middle > after)) | ((middle < before) & (middle < after))
    return float(turns.sum() / (2.0 * (rr.size - 2) / 3.0))


def _sd1_sd2(rr: np.ndarray) -> float:
    if rr.size < 3:
        return 0.0
    a, b = rr[:-1], rr[1:]
    sd1 = np.std((b - a) / np.sqrt(2))
    sd2 = np.std((b + a) / np.sqrt(2))
    return float(sd1 / sd2) if sd2 > 1e-9 else 0.0


def _sample_entropy(rr: np.ndarray, m: int = 2, r_factor: float = 0.2) -> float:
    """SampEn(m, r) of the RR series; capped at 4 where no template of length m+1 matches."""
    n = rr.size
    if n < m + 2:
        return 0.0
    r = r_factor * rr.std()
    if r <= 1e-9:
        return 0.0
    # Two templates match when every pair of their values lies within r (Chebyshev distance <= r): which pairs of
    # single values do is computed once, and a template of length L matches where L diagonal steps all do. The
    # same counts as comparing the templates themselves, at a fraction of the cost.
    close = np.abs(rr[:, None] - rr[None, :]) <= r
    count = n - m  # templates of length m (of the first n - 1 values) and of length m + 1: as many

    def matches(length: int) -> int:
        both = close[:count, :count].copy()
        for k in range(1, length):
            both &= close[k : k + count, k : k + count]
        return int(both.sum() - count)  # pairs, each counted twice, minus self-matches

    b, a = matches(m), matches(m + 1)
    if a == 0 or b == 0:
        return 4.0
    return float(min(-np.log(a / b), 4.0))


def _premature_fraction(rr: np.ndarray) -> float:
    if rr.size < 3:
        return 0.0
    reference = np.median(rr)
    early = rr[:-1] < 0.85 * reference
    compensated = rr[1:] > 1.1 * rr[:-1]
    return float(np.mean(early & compensated))


def _morphology_features(x: np.ndarray, peaks: np.ndarray, fs: float) -> dict[str, float]:
    before, after = round(BEAT_BEFORE_S * fs), round(BEAT_AFTER_S * fs)
    inside = peaks[(peaks - before >= 0) & (peaks + after < x.size)]
    if inside.size < MIN_BEATS - 1:
        return {}
    beats = x[inside[:, None] + np.arange(-before, after + 1)[None, :]]
    beats = beats - np.median(beats, axis=1, keepdims=True)
    template = np.median(beats, axis=0)
    correlation = _rows_correlation(beats, template)
    offsets = np.arange(-before, after + 1) / fs
    qrs = np.abs(offsets) <= QRS_HALF_WIDTH_S
    p_window = (offsets >= P_WINDOW_S[0]) & (offsets <= P_WINDOW_S[1])
    t_window = (offsets >= T_WINDOW_S[0]) & (offsets <= T_WINDOW_S[1])
    qrs_amplitude = float(np.ptp(template[qrs]))
    scale = qrs_amplitude if qrs_amplitude > 1e-9 else 1.0
    return {
        "beat_correlation": float(correlation.mean()),
        "beat_outlier_fraction": float(np.mean(correlation < 0.8)),
        "p_wave_ratio": float(np.ptp(template[p_window]) / scale),
        "p_wave_consistency": float(_rows_correlation(beats[:, p_window], template[p_window]).mean()),
        "t_wave_ratio": float(np.ptp(template[t_window]) / scale),
        "qrs_width_s": _half_amplitude_width(template, before, fs),
        "qrs_amplitude": qrs_amplitude,
    }


def _rows_correlation(rows: np.ndarray, reference: np.ndarray) -> np.ndarray:
    a = rows - rows.mean(axis=1, keepdims=True)
    b = reference - reference.mean()
    denominator = np.sqrt((a**2).sum(axis=1) * (b**2).sum())
    return np.where(denominator > 1e-12, (a @ b) / np.maximum(denominator, 1e-12), 0.0)


def _half_amplitude_width(template: np.ndarray, centre: int, fs: float) -> float:
    """Width (s) of the region around the R peak where |template| stays above half its peak there."""
    magnitude = np.abs(template - np.median(template))
    half_width = round(QRS_HALF_WIDTH_S * fs)
    window = magnitude[max(centre - half_width, 0) : centre + half_width + 1]
    if not window.size or window.max() <= 1e-12:
        return 0.0
    start = max(centre - half_width, 0)
    centre = start + int(np.argmax(window))
    peak = magnitude[centre]
    above = magnitude >= peak / 2
    left = centre
    while left > 0 and above[left - 1]:
        left -= 1
    right = centre
    while right < len(above) - 1 and above[right + 1]:
        right += 1
    return float((right - left + 1) / fs)


# --- Several leads: the rhythm on one, the morphology a cardiologist reads on each ---------------------------------

MORPHOLOGY_NAMES = ("qrs_amplitude", "qrs_net", "st_level", "t_amplitude")
WAVE_NAMES = ("q_depth", "r_height", "s_depth")  # beats-2, in mV from the PR baseline
LEAD_DESCRIPTIONS = {  # of one lead's median beat
    "qrs_amplitude": "QRS amplitude, peak to peak (mV)",
    "qrs_net": "net QRS deflection (mV)",
    "st_level": "ST level against the PR segment (mV)",
    "t_amplitude": "T amplitude against the PR segment (mV)",
    "q_depth": "Q depth (mV)",
    "r_height": "R height (mV)",
    "s_depth": "S depth (mV)",
}
COMBINED_DESCRIPTIONS = {
    "qrs_axis_deg": "frontal QRS axis, from I and aVF (degrees)",
    "sokolow_lyon_mv": "Sokolow-Lyon voltage: S in V1 + the taller R of V5 and V6 (mV)",
    "cornell_mv": "Cornell voltage: R in aVL + S in V3 (mV)",
    "r_transition": "R-wave transition: the first of V1-V6 whose R outgrows its S (7: none)",
}
PRECORDIAL = ("V1", "V2", "V3", "V4", "V5", "V6")
# beats-2, where a model reads the leads each needs: (name, leads, value from each lead's R height r and S depth s)
VOLTAGE_CRITERIA = (
    # S in V1 + the taller R of V5 and V6 (left ventricular hypertrophy)
    ("sokolow_lyon_mv", ("V1", "V5", "V6"), lambda r, s: s["V1"] + max(r["V5"], r["V6"])),
    # R in aVL + S in V3 (left ventricular hypertrophy)
    ("cornell_mv", ("aVL", "V3"), lambda r, s: r["aVL"] + s["V3"]),
    # the first of V1-V6 whose R outgrows its S (1-6); 7: none
    ("r_transition", PRECORDIAL, lambda r, s: next((k + 1 for k, v in enumerate(PRECORDIAL) if r[v] > s[v]), 7)),
)
ST_WINDOW_S = (0.06, 0.10)  # after the R peak: the ST segment (J point + 60 ms, at usual QRS widths)
PR_BASELINE_S = (-0.12, -0.06)  # the PR segment: the isoelectric reference for ST and T


@dataclass(frozen=True)
class FeatureSpec:
    """Which features a model takes: the beat features of ``rhythm_lead``, then, for each of ``morphology_leads``,
    its median beat's QRS amplitude, net QRS deflection, ST level and T amplitude (the beats found on the rhythm
    lead), and the frontal QRS axis when both I and aVF are among them; from version beats-2 also each of those
    leads' Q depth, R height and S depth, and the voltage criteria whose leads are among them. Stored with the
    model, which is served the version it was trained with."""

    rhythm_lead: str = "II"
    morphology_leads: tuple[str, ...] = ()
    version: str = FEATURES_VERSION

    def __post_init__(self) -> None:
        if self.version not in FEATURE_VERSIONS:
            raise ValueError(
                f"beat features version {self.version!r} is not one this code computes ({', '.join(FEATURE_VERSIONS)})"
            )

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self._columns()]

    @property
    def descriptions(self) -> list[str]:
        """What each of :attr:`names` measures, in words, with the lead it is measured on."""
        return [description for _, description, _ in self._columns()]

    @property
    def lead_columns(self) -> dict[str, list[int]]:
        """For each morphology lead, the columns of :attr:`names` measured on that lead's median beat alone."""
        columns: dict[str, list[int]] = {lead: [] for lead in self.morphology_leads}
        for i, (_, _, lead) in enumerate(self._columns()):
            if lead is not None:
                columns[lead].append(i)
        return columns

    def _columns(self) -> list[tuple[str, str, str | None]]:
        """(name, description, the morphology lead it is measured on alone, or None) of each feature, in order."""
        on_rhythm_lead = f", lead {self.rhythm_lead}" if self.morphology_leads else ""  # one lead: no need to say
        columns = [(name, text + on_rhythm_lead, None) for name, text in FEATURE_DESCRIPTIONS.items()]

        def per_lead(names: tuple[str, ...]) -> list[tuple[str, str, str | None]]:
            return [
                (f"{lead}_{name}", f"{LEAD_DESCRIPTIONS[name]}, lead {lead}", lead)
                for lead in self.morphology_leads
                for name in names
            ]

        columns += per_lead(MORPHOLOGY_NAMES)
        if self._has_axis:
            columns.append(("qrs_axis_deg", COMBINED_DESCRIPTIONS["qrs_axis_deg"], None))
        if self._has_waves:
            columns += per_lead(WAVE_NAMES)
            columns += [(name, COMBINED_DESCRIPTIONS[name], None) for name, _, _ in self._criteria]
        return columns

    @property
    def _has_axis(self) -> bool:
        return "I" in self.morphology_leads and "aVF" in self.morphology_leads

    @property
    def _has_waves(self) -> bool:
        return self.version != "beats-1" and bool(self.morphology_leads)

    @property
    def _criteria(self) -> list[tuple]:
        return [criterion for criterion in VOLTAGE_CRITERIA if set(criterion[1]) <= set(self.morphology_leads)]

    def to_dict(self) -> dict:
        return {
            "rhythm_lead": self.rhythm_lead,
            "morphology_leads": list(self.morphology_leads),
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        return cls(data["rhythm_lead"], tuple(data.get("morphology_leads", ())), data.get("version", "beats-1"))


def recording_features(
    signal: np.ndarray, sampling_rate: float, lead_names: list[str], spec: FeatureSpec, beats: np.ndarray | None = None
) -> np.ndarray:
    """The vector ``spec.names`` describes (float32) of a (n_samples, n_leads) signal whose columns are
    ``lead_names``; a single-lead signal serves as the rhythm lead whatever its name."""
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    rhythm_column = lead_names.index(spec.rhythm_lead) if spec.rhythm_lead in lead_names else 0
    rhythm = x[:, rhythm_column]
    peaks = detect_beats(rhythm, sampling_rate) if beats is None else np.asarray(beats, dtype=np.int64)
    values = [beat_features(rhythm, sampling_rate, peaks)]
    if spec.morphology_leads:
        columns = [lead_names.index(lead) for lead in spec.morphology_leads]
        measured = _lead_morphology(x[:, columns], peaks, sampling_rate, spec._has_waves)
        morphology, waves = measured[:, : len(MORPHOLOGY_NAMES)], measured[:, len(MORPHOLOGY_NAMES) :]
        values.append(morphology.ravel())
        if spec._has_axis:
            net = morphology[:, MORPHOLOGY_NAMES.index("qrs_net")]
            lead_i, lead_avf = net[spec.morphology_leads.index("I")], net[spec.morphology_leads.index("aVF")]
            axis = np.degrees(np.arctan2(lead_avf, lead_i)) if abs(lead_i) + abs(lead_avf) > 1e-9 else 0.0
            values.append(np.array([axis]))
        if spec._has_waves:
            values.append(waves.ravel())
            values.append(_voltage_criteria(waves, spec))
    return np.concatenate(values).astype(np.float32)


def _voltage_criteria(waves: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """``spec``'s voltage criteria from its leads' (Q, R, S) rows; zeros when no beat was measured."""
    if not waves.any():
        return np.zeros(len(spec._criteria))
    r = dict(zip(spec.morphology_leads, waves[:, WAVE_NAMES.index("r_height")], strict=True))
    s = dict(zip(spec.morphology_leads, waves[:, WAVE_NAMES.index("s_depth")], strict=True))
    return np.array([value(r, s) for _, _, value in spec._criteria], dtype=np.float64)


def _lead_morphology(x: np.ndarray, peaks: np.ndarray, fs: float, waves: bool = False) -> np.ndarray:
    """(n_leads, len(MORPHOLOGY_NAMES)), then with ``waves`` the len(WAVE_NAMES) columns, from each lead's median
    beat; zeros without enough beats. The waves within the QRS window, from the PR baseline: R is the lead's highest
    point, Q the depth of its lowest point up to R, S the depth of its lowest point from R on (0 where it stays above
    the baseline)."""
    out = np.zeros((x.shape[1], len(MORPHOLOGY_NAMES) + (len(WAVE_NAMES) if waves else 0)))
    before, after = round(BEAT_BEFORE_S * fs), round(BEAT_AFTER_S * fs)
    inside = peaks[(peaks - before >= 0) & (peaks + after < x.shape[0])] if peaks.size else peaks
    if inside.size < MIN_BEATS - 1:
        return out
    offsets = np.arange(-before, after + 1) / fs
    templates = np.median(x[inside[:, None] + np.arange(-before, after + 1)[None, :], :], axis=0)  # (samples, leads)

    def window(bounds: tuple[float, float]) -> np.ndarray:
        return (offsets >= bounds[0]) & (offsets <= bounds[1])

    baseline = templates[window(PR_BASELINE_S)].mean(axis=0)
    qrs = templates[np.abs(offsets) <= QRS_HALF_WIDTH_S] - baseline
    t_wave = templates[window(T_WINDOW_S)] - baseline
    out[:, 0] = np.ptp(qrs, axis=0)
    out[:, 1] = qrs.max(axis=0) + qrs.min(axis=0)
    out[:, 2] = templates[window(ST_WINDOW_S)].mean(axis=0) - baseline
    out[:, 3] = t_wave[np.argmax(np.abs(t_wave), axis=0), np.arange(x.shape[1])]
    if waves:
        top = np.argmax(qrs, axis=0)  # each lead's R
        position = np.arange(qrs.shape[0])[:, None]
        out[:, 4] = np.maximum(0.0, -np.where(position <= top, qrs, np.inf).min(axis=0))
        out[:, 5] = np.maximum(0.0, qrs[top, np.arange(x.shape[1])])
        out[:, 6] = np.maximum(0.0, -np.where(position >= top, qrs, np.inf).min(axis=0))
    return out
