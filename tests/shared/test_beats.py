"""Beat detection and beat features (ecg_shared.beats) against reference computations on real CinC 2017 records:
neurokit2's R-peaks and its HRV time-domain indices from the same beats."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ecg_shared.beats import FEATURE_NAMES, FeatureSpec, beat_features, detect_beats, recording_features
from ecg_shared.formats import read_ecg
from ecg_shared.heart import detect_rpeaks
from ecg_shared.preprocessing import filter_signal


def cinc(data_dir, label: str, n: int) -> list:
    labels = csv.reader((data_dir / "cinc2017" / "REFERENCE.csv").open())
    names = [name for name, found in labels if found == label][:n]
    return [read_ecg(data_dir / "cinc2017" / f"{name}.hea") for name in names]


def cleaned_lead(record) -> np.ndarray:
    return filter_signal(record.signal[:, :1], record.sampling_rate, 0.5, 40.0)[:, 0]


def features_of(record) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, beat_features(cleaned_lead(record), record.sampling_rate), strict=True))


def test_regular_synthetic_rhythm():
    fs = 250.0
    t = np.arange(int(30 * fs)) / fs
    ecg = np.exp(-(((t % 0.75) - 0.3) ** 2) / 2e-4)  # 80 bpm
    features = dict(zip(FEATURE_NAMES, beat_features(ecg, fs), strict=True))
    assert features["beats_valid"] == 1 and features["heart_rate_bpm"] == pytest.approx(80, abs=0.5)
    assert features["rr_cv"] < 0.01 and features["irregular_fraction"] == 0 and features["beat_correlation"] > 0.99


def test_too_few_beats_give_zeros_and_no_validity():
    flat = np.zeros(3000)
    assert not beat_features(flat, 300.0).any()
    assert detect_beats(flat, 300.0).size == 0


def test_beats_agree_with_neurokit2_on_real_records(data_dir):
    """The same beats as the platform's neurokit2 detector (ecg_shared.heart), up to where in the QRS each marks
    it: ours marks the largest deflection, neurokit2 the R peak, a constant offset per record (the S wave in an
    inverted lead)."""
    matched = total = rates_agree = 0
    records = cinc(data_dir, "N", 25)
    for record in records:
        ours = detect_beats(cleaned_lead(record), record.sampling_rate)
        reference = detect_rpeaks(record.signal[:, 0], record.sampling_rate)
        nearest = np.array([ours[np.argmin(np.abs(ours - r))] - r for r in reference])
        shift = np.median(nearest)
        assert abs(shift) <= 0.06 * record.sampling_rate  # within one QRS
        matched += int(np.sum(np.abs(nearest - shift) <= 0.05 * record.sampling_rate))
        total += len(reference)
        rates = [60 * record.sampling_rate / np.median(np.diff(beats)) for beats in (ours, reference)]
        rates_agree += abs(rates[0] - rates[1]) <= 2.0
    # measured: 901 of 970 beats (93%); heart rate within 2 bpm on 22 of 25 records
    assert matched / total >= 0.9, f"{matched} of {total} neurokit2 beats found within 50 ms"
    assert rates_agree >= 0.85 * len(records), f"heart rate within 2 bpm on {rates_agree} of {len(records)}"


def test_rr_features_match_neurokit2_hrv_on_the_same_beats(data_dir):
    import neurokit2 as nk

    for record in cinc(data_dir, "N", 10):
        lead = cleaned_lead(record)
        beats = detect_beats(lead, record.sampling_rate)
        rr = np.diff(beats) / record.sampling_rate
        if not ((rr >= 0.2) & (rr <= 3.0)).all():
            continue  # a detection gap: our features drop it, neurokit2 keeps it
        ours = dict(zip(FEATURE_NAMES, beat_features(lead, record.sampling_rate, beats), strict=True))
        hrv = nk.hrv_time(beats, sampling_rate=record.sampling_rate).iloc[0]
        mean_rr = hrv["HRV_MeanNN"] / 1000
        assert ours["heart_rate_bpm"] == pytest.approx(60 / mean_rr, rel=1e-4)
        assert ours["rmssd_rel"] * mean_rr * 1000 == pytest.approx(hrv["HRV_RMSSD"], rel=1e-3)
        assert ours["rr_cv"] == pytest.approx(hrv["HRV_SDNN"] / hrv["HRV_MeanNN"], rel=0.1)  # ddof 0 vs 1


def test_irregularity_separates_atrial_fibrillation_from_sinus_rhythm(data_dir):
    normal = [features_of(r) for r in cinc(data_dir, "N", 60)]
    af = [features_of(r) for r in cinc(data_dir, "A", 60)]
    truth = [0] * len(normal) + [1] * len(af)
    for name in ("rr_cv", "irregular_fraction", "rmssd_rel"):
        assert roc_auc_score(truth, [f[name] for f in normal + af]) > 0.8, name


def test_morphology_features_and_axis_on_a_real_12_lead_record(data_dir):
    record = read_ecg(data_dir / "ptbxl" / "00001_lr.hea")  # a normal ECG (PTB-XL: NORM)
    spec = FeatureSpec("II", tuple(record.lead_names))
    cleaned = filter_signal(record.signal, record.sampling_rate, 0.5, 40.0)
    vector = recording_features(cleaned, record.sampling_rate, record.lead_names, spec)
    values = dict(zip(spec.names, vector, strict=True))
    assert len(vector) == len(spec.names) == len(FEATURE_NAMES) + 4 * 12 + 1 + 3 * 12 + 3
    assert values["beats_valid"] == 1 and 40 < values["heart_rate_bpm"] < 120
    assert all(values[f"{lead}_qrs_amplitude"] > 0.1 for lead in ("I", "II", "V5"))  # mV
    assert -180 <= values["qrs_axis_deg"] <= 180
    # aVR mirrors the limb leads: its net QRS has the opposite sign to lead II's in a normal ECG
    assert np.sign(values["aVR_qrs_net"]) == -np.sign(values["II_qrs_net"])
    # R grows and S shrinks across the chest leads: V1 mostly S, V6 mostly R, the transition between
    assert values["V1_s_depth"] > values["V1_r_height"] and values["V6_r_height"] > values["V6_s_depth"]
    assert 2 <= values["r_transition"] <= 6
    for lead in record.lead_names:  # the net deflection and the amplitude are the R and S waves' difference and span
        r, s = values[f"{lead}_r_height"], values[f"{lead}_s_depth"]
        assert values[f"{lead}_qrs_net"] == pytest.approx(r - max(s, values[f"{lead}_q_depth"]), abs=1e-5)
    assert 0.5 < values["sokolow_lyon_mv"] < 3.5  # under the 3.5 mV of left ventricular hypertrophy
    assert values["sokolow_lyon_mv"] == pytest.approx(
        values["V1_s_depth"] + max(values["V5_r_height"], values["V6_r_height"]), abs=1e-5
    )
    assert values["cornell_mv"] == pytest.approx(values["aVL_r_height"] + values["V3_s_depth"], abs=1e-5)


def _beats_with_waves(fs: float, waves: dict[str, tuple[float, float, float]]) -> np.ndarray:
    """(n_samples, leads) at ``fs``: 12 s of beats each second, every lead with its (Q, R, S) in mV: Q 30 ms before
    R, S 30 ms after, each a narrow Gaussian, on a flat baseline."""
    t = np.arange(int(12 * fs)) / fs
    phase = (t % 1.0) - 0.5  # R at the middle of each second

    def bump(centre: float) -> np.ndarray:
        return np.exp(-(((phase - centre) / 0.006) ** 2) / 2)

    return np.column_stack([-q * bump(-0.03) + r * bump(0.0) - s * bump(0.03) for q, r, s in waves.values()])


def test_qrs_waves_and_voltage_criteria_of_known_beats():
    leads = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    rng = np.random.default_rng(0)
    waves = {lead: tuple(rng.uniform(0.1, 1.0, 3).round(2)) for lead in leads}
    waves["II"] = (0.1, 1.5, 0.2)  # the rhythm lead: a clear R
    waves.update({"V1": (0.0, 0.2, 1.2), "V2": (0.0, 0.4, 1.0), "V3": (0.1, 0.7, 0.6), "V5": (0.1, 1.6, 0.3)})
    fs = 500.0
    spec = FeatureSpec("II", leads)
    values = dict(zip(spec.names, recording_features(_beats_with_waves(fs, waves), fs, list(leads), spec), strict=True))
    for lead, (q, r, s) in waves.items():
        assert [values[f"{lead}_q_depth"], values[f"{lead}_r_height"], values[f"{lead}_s_depth"]] == pytest.approx(
            [q, r, s], abs=2e-3
        ), lead
    r_v6 = waves["V6"][1]
    assert values["sokolow_lyon_mv"] == pytest.approx(1.2 + max(1.6, r_v6), abs=4e-3)
    assert values["cornell_mv"] == pytest.approx(waves["aVL"][1] + 0.6, abs=4e-3)
    assert values["r_transition"] == 3  # V3: R 0.7 over S 0.6


def test_feature_versions():
    """A model is served the features it was trained on: beats-1 without the waves, whose vector beats-2 extends;
    an unknown version is refused by name."""
    leads = ("I", "II", "V1", "V5", "V6")
    old, new = FeatureSpec("II", leads, "beats-1"), FeatureSpec("II", leads, "beats-2")
    assert new.names[: len(old.names)] == old.names
    waves = [f"{lead}_{wave}" for lead in leads for wave in ("q_depth", "r_height", "s_depth")]
    assert new.names[len(old.names) :] == [*waves, "sokolow_lyon_mv"]  # Cornell needs aVL and V3, the transition V1-V6
    signal = _beats_with_waves(250.0, {lead: (0.1, 1.0, 0.3) for lead in leads})
    a = recording_features(signal, 250.0, list(leads), old)
    b = recording_features(signal, 250.0, list(leads), new)
    assert len(a) == len(old.names) and len(b) == len(new.names)
    np.testing.assert_array_equal(a, b[: len(a)])
    assert FeatureSpec("II").names == FeatureSpec("II", version="beats-1").names  # no morphology: no waves either
    assert FeatureSpec.from_dict({"rhythm_lead": "II", "morphology_leads": list(leads)}).version == "beats-1"
    with pytest.raises(ValueError, match="beats-9"):
        FeatureSpec("II", leads, "beats-9")


def test_sleepecg_step_by_step_finds_sleepecgs_beats_on_real_records(data_dir):
    """beats.sleepecg_heartbeats keeps the band-pass's initial conditions per rate: the same beats as
    sleepecg.detect_heartbeats, at the rates the models use and the records' own (measured: 1,878 signals)."""
    import sleepecg

    from ecg_shared.beats import sleepecg_heartbeats
    from ecg_shared.preprocessing import resample

    records = cinc(data_dir, "N", 5) + cinc(data_dir, "A", 5) + cinc(data_dir, "~", 3)
    records += [read_ecg(data_dir / "ptbxl" / f"0000{i}_lr.hea") for i in (1, 2, 3)]
    records.append(read_ecg(data_dir / "wellnest" / "sample-10s.raw"))
    for record in records:
        lead = filter_signal(record.signal[:, -1:], record.sampling_rate, 0.5, 40.0)
        for rate in (record.sampling_rate, 150.0, 100.0):
            x = resample(lead, record.sampling_rate, rate)[:, 0].astype(np.float64)
            np.testing.assert_array_equal(sleepecg_heartbeats(x, rate), sleepecg.detect_heartbeats(x, rate))


def _sample_entropy_by_templates(rr: np.ndarray, m: int = 2, r_factor: float = 0.2) -> float:
    """SampEn as first written: every pair of templates compared whole."""
    n = rr.size
    if n < m + 2:
        return 0.0
    r = r_factor * rr.std()
    if r <= 1e-9:
        return 0.0

    def matches(length: int) -> int:
        templates = np.lib.stride_tricks.sliding_window_view(rr[: n - m + length - 1], length)
        distance = np.max(np.abs(templates[:, None, :] - templates[None, :, :]), axis=2)
        return int((distance <= r).sum() - len(templates))

    b, a = matches(m), matches(m + 1)
    return 4.0 if a == 0 or b == 0 else float(min(-np.log(a / b), 4.0))


def test_sample_entropy_counts_the_matches_of_whole_templates():
    from ecg_shared.beats import _sample_entropy

    rng = np.random.default_rng(0)
    for i in range(3000):
        n = int(rng.integers(0, 100))
        series = (
            rng.normal(0.8, 0.05, n),
            np.round(rng.normal(0.8, 0.05, n), 2),  # ties: values exactly r apart
            rng.integers(50, 90, n) / 100.0,
            0.8 + (rng.random(n) < 0.1) * 0.2,  # a regular rhythm with a few long intervals
        )[i % 4]
        assert _sample_entropy(series) == _sample_entropy_by_templates(series)
