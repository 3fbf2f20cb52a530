"""Signal quality verdicts and heart rate on synthetic and real signals."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_shared.formats import Record, read_ecg
from ecg_shared.heart import heart_rate
from ecg_shared.quality import assess_quality


def synthetic_ecg(bpm: float = 60, fs: float = 500, seconds: float = 10, leads: int = 1) -> np.ndarray:
    import neurokit2 as nk

    x = nk.ecg_simulate(duration=seconds, sampling_rate=fs, heart_rate=bpm, noise=0.0, random_state=1)
    return np.tile(x[:, None], (1, leads)).astype(np.float32)


def test_clean_synthetic_ecg_is_usable_with_the_right_rate():
    record = Record(synthetic_ecg(bpm=72), 500, ["II"], {})
    report = assess_quality(record)
    assert report.usable, report
    assert heart_rate(record).bpm == pytest.approx(72, abs=3)


def test_nan_makes_a_recording_unusable_and_names_the_lead():
    x = synthetic_ecg(leads=2)
    x[100:110, 1] = np.nan
    report = assess_quality(Record(x, 500, ["I", "II"], {}))
    assert not report.usable
    assert "NaN" in report.reasons[0]
    assert report.leads["II"] and not report.leads["I"]


def test_flat_line_is_unusable():
    report = assess_quality(Record(np.zeros((5000, 1)), 500, ["II"], {}))
    assert not report.usable
    assert "flat" in report.leads["II"][0]


def test_one_disconnected_lead_of_twelve_is_reported_but_usable():
    x = synthetic_ecg(leads=12)
    x[:, 7] = 0.0
    report = assess_quality(Record(x, 500, [f"L{i}" for i in range(12)], {}))
    assert report.usable
    assert report.leads["L7"] and sum(bool(v) for v in report.leads.values()) == 1


def test_clipping_is_detected():
    x = np.clip(synthetic_ecg() * 3, -0.5, 0.5)
    assert "clipped" in " ".join(assess_quality(Record(x, 500, ["II"], {})).leads["II"])


def test_clipped_fraction_of_all_leads_at_once_equals_lead_by_lead(data_dir):
    """The vectorised check counts what the lead-by-lead formula it replaced counts, on real recordings (the
    Wellnest sample's lead II reaches the 12-bit ceiling) and on a synthetic clipped lead."""
    from ecg_shared.quality import clipped_fraction

    def one_lead(x: np.ndarray) -> float:
        high, low = x.max(), x.min()
        tol = 1e-6 * max(1.0, float(np.abs(x).max()))
        return float(np.mean((x >= high - tol) | (x <= low + tol)))

    signals = [
        read_ecg(data_dir / "wellnest" / "sample-10s.raw").signal,
        read_ecg(data_dir / "ptbxl" / "00001_lr.hea").signal,
        read_ecg(data_dir / "cinc2017" / "A00001.hea").signal,
        np.clip(synthetic_ecg(leads=2) * 3, -0.5, 0.5),
    ]
    for x in signals:
        assert clipped_fraction(x).tolist() == [one_lead(x[:, i]) for i in range(x.shape[1])]
    assert clipped_fraction(signals[0])[1] > 0.02  # lead II of the Wellnest sample


def test_noise_is_detected():
    rng = np.random.default_rng(0)
    noisy = rng.normal(scale=1.0, size=(5000, 1))
    report = assess_quality(Record(noisy, 500, ["II"], {}))
    assert not report.usable
    assert "noisy" in report.leads["II"][0]
    assert report.noise_score > 0.5


def test_too_short():
    report = assess_quality(Record(synthetic_ecg(seconds=1.5), 500, ["II"], {}))
    assert not report.usable and "too short" in report.reasons[0]


def test_real_recordings(data_dir, wellnest_sample):
    assert assess_quality(read_ecg(data_dir / "ptbxl" / "00001_lr.hea")).usable
    cinc = read_ecg(data_dir / "cinc2017" / "A00001.hea")
    assert assess_quality(cinc).usable
    assert heart_rate(cinc).bpm == pytest.approx(79, abs=6)
    wellnest = read_ecg(wellnest_sample)
    report = assess_quality(wellnest)
    assert report.usable
    # The device's 12-bit range tops out at 2047/1241 = 1.65 mV: this recording's tall R waves in lead II hit it.
    assert any("clipped" in issue for issue in report.leads["II"])


def test_rpeaks_are_neurokit2s_on_real_recordings(data_dir):
    """detect_rpeaks runs neurokit2's detector step by step (heart.neurokit_rpeaks): the same peaks as nk.ecg_peaks on
    the same cleaned lead (measured: the same on 1,239 leads of 613 real recordings)."""
    import neurokit2 as nk

    from ecg_shared.heart import detect_rpeaks
    from ecg_shared.preprocessing import filter_signal

    headers = sorted((data_dir / "cinc2017").glob("*.hea"))[:30] + sorted((data_dir / "ptbxl").glob("*.hea"))[:30]
    for header in [*headers, data_dir / "wellnest" / "sample-10s.raw"]:
        record = read_ecg(header)
        lead = record.signal[:, record.lead_names.index("II") if "II" in record.lead_names else 0].astype(np.float64)
        cleaned = filter_signal(lead[:, None], record.sampling_rate, 0.5, 40.0)[:, 0].astype(np.float64)
        _, info = nk.ecg_peaks(cleaned, sampling_rate=round(record.sampling_rate), method="neurokit")
        peaks = detect_rpeaks(lead, record.sampling_rate)
        assert len(peaks) > 5
        np.testing.assert_array_equal(peaks, info["ECG_R_Peaks"])


def _with_burst(record: Record, lead: str, start_s: float, end_s: float) -> np.ndarray:
    """The record's signal with a muscle-artefact-like burst (white noise, 0.15 mV) added to one lead."""
    signal = record.signal.copy()
    lo, hi = round(start_s * record.sampling_rate), round(end_s * record.sampling_rate)
    signal[lo:hi, record.lead_names.index(lead)] += np.random.default_rng(0).normal(0, 0.15, hi - lo)
    return signal


def test_a_noise_burst_in_one_lead_is_named_with_its_seconds(wellnest_sample, data_dir):
    for path in (wellnest_sample, data_dir / "ptbxl" / "00001_lr.hea"):
        record = read_ecg(path)
        burst = Record(_with_burst(record, "V6", 4.0, 5.0), record.sampling_rate, record.lead_names, {})
        report = assess_quality(burst)
        assert "noise burst at 4-5 s" in report.leads["V6"], (path, report.leads)
        assert not any("burst" in issue for lead, issues in report.leads.items() if lead != "V6" for issue in issues)
        assert report.usable  # a remark: the rest of the lead and the other leads read


def test_clean_real_recordings_raise_no_burst(data_dir, wellnest_sample):
    for path in (wellnest_sample, data_dir / "ptbxl" / "00001_lr.hea", data_dir / "cinc2017" / "A00001.hea"):
        report = assess_quality(read_ecg(path))
        assert not [issue for issues in report.leads.values() for issue in issues if "burst" in issue], path


def test_the_readers_repairs_are_reported(wellnest_sample):
    from ecg_shared.formats.wellnest import FRAME_BYTES

    blob = bytearray(wellnest_sample.read_bytes())
    blob[1000 * FRAME_BYTES] = 0x00  # one frame loses its sync byte: dropped, then filled in
    record = read_ecg(bytes(blob) + b"\xba\x88\x01")  # and a partial frame at the end
    assert record.metadata["dropped_frames"] == 1
    report = assess_quality(record)
    assert report.repairs == [
        "1 corrupt or missing frame (2 ms) filled in by linear interpolation",
        "3 trailing bytes that make no whole frame ignored",
    ]
    assert assess_quality(read_ecg(wellnest_sample)).repairs == []


@pytest.mark.parametrize(("fs", "powerline"), [(500.0, 50.0), (300.0, 60.0), (100.0, 50.0), (1000.0, 0.0)])
def test_the_burst_filter_is_scipys_sosfiltfilt_to_the_bit(fs, powerline):
    """quality's high-frequency signal keeps the filter's initial conditions per design, and must still be exactly
    sosfiltfilt."""
    from scipy.signal import sosfiltfilt

    from ecg_shared.quality import _burst_filter, _high_frequency

    x = np.random.default_rng(int(fs)).standard_normal((int(4 * fs), 3)).astype(np.float32)
    sos, _ = _burst_filter(fs, powerline)
    np.testing.assert_array_equal(_high_frequency(x, fs, powerline), sosfiltfilt(sos, x, axis=0))


TWELVE = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def test_a_lead_with_no_signal_is_unreadable_in_a_usable_recording():
    x = synthetic_ecg(leads=12)
    x[:, 7] = 0.0
    report = assess_quality(Record(x, 500, TWELVE, {}))
    assert report.usable and report.unreadable_leads == ["V2"]
    assert report.readable_leads == [lead for lead in TWELVE if lead != "V2"]


def test_where_most_leads_have_problems_only_the_clean_ones_are_readable():
    x = synthetic_ecg(leads=12)
    x[:, 6:] = 0.0  # the chest leads off
    x[:, 5] += np.random.default_rng(0).normal(0, 2.0, len(x)).astype(np.float32)  # aVF: noise
    report = assess_quality(Record(x, 500, TWELVE, {}))
    assert not report.usable and report.reasons == ["7 of 12 leads have problems"]
    assert report.unreadable_leads == TWELVE[5:] and report.readable_leads == TWELVE[:5]


def test_a_recording_that_fails_as_a_whole_has_no_readable_lead():
    short = assess_quality(Record(synthetic_ecg(seconds=1.5, leads=2), 500, ["I", "II"], {}))
    assert not short.usable and short.unreadable_leads == ["I", "II"] and short.readable_leads == []
    x = synthetic_ecg(leads=2)
    x[5, 0] = np.nan
    missing = assess_quality(Record(x, 500, ["I", "II"], {}))
    assert missing.unreadable_leads == ["I", "II"]
    flat = assess_quality(Record(np.zeros((5000, 2)), 500, ["I", "II"], {}))
    assert flat.unreadable_leads == ["I", "II"]


def test_a_real_recording_whose_chest_leads_carry_no_signal(formats_dir):
    """A Contec ECG90A recording exported to EDF: V1-V6 hold one constant value; the limb leads read."""
    report = assess_quality(read_ecg(formats_dir / "edf" / "0000050.ECG.edf"))
    assert not report.usable
    assert {"V1", "V2", "V3", "V4", "V5", "V6"} <= set(report.unreadable_leads)
    assert {"I", "II"} <= set(report.readable_leads)
