"""Filtering, resampling, windowing, normalisation and the shared prepare() pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_shared.formats import EcgFormatError, Record, read_ecg
from ecg_shared.preprocessing import (
    PreprocessingSpec,
    filter_signal,
    fit_length,
    normalise,
    prepare,
    resample,
    sliding_windows,
    window_starts,
)


def sine(freq: float, fs: float, seconds: float = 10.0) -> np.ndarray:
    t = np.arange(int(fs * seconds)) / fs
    return np.sin(2 * np.pi * freq * t)[:, None].astype(np.float32)


def amplitude(x: np.ndarray) -> float:
    core = x[len(x) // 4 : -len(x) // 4]  # away from the edges
    return float(np.sqrt(2) * core.std())


def test_band_pass_keeps_the_ecg_band_and_removes_wander_and_hum():
    fs = 500
    assert amplitude(filter_signal(sine(10, fs), fs)) == pytest.approx(1, abs=0.02)
    assert amplitude(filter_signal(sine(0.05, fs), fs)) < 0.05  # baseline wander
    assert amplitude(filter_signal(sine(100, fs), fs)) < 0.01  # above the low-pass
    notched = filter_signal(sine(50, fs), fs, highpass_hz=None, lowpass_hz=None, notch_hz=50)
    assert amplitude(notched) < 0.05


def test_filtering_is_zero_phase():
    fs = 250
    x = sine(5, fs)
    y = filter_signal(x, fs)
    lag = np.argmax(np.correlate(y[:, 0], x[:, 0], mode="full")) - (len(x) - 1)
    assert lag == 0


@pytest.mark.parametrize("shape", [(3000, 1), (1000, 12), (30,), (7, 2), (2, 3), (1, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("fs", "bands"), [(300, (0.5, 40, None)), (100, (0.5, 40, 50)), (150, (None, 40, None))])
def test_filtering_is_scipys_sosfiltfilt_to_the_bit(shape, dtype, fs, bands):
    """filter_signal keeps the steady state per design, and must still be exactly sosfiltfilt with odd padding."""
    from scipy.signal import sosfiltfilt

    from ecg_shared.preprocessing import design_filter

    x = np.random.default_rng(len(shape) * fs).standard_normal(shape).astype(dtype)
    sos = design_filter(float(fs), *bands)
    padlen = max(min(3 * (2 * len(sos) + 1), x.shape[0] - 1), 0)
    expected = sosfiltfilt(sos, x, axis=0, padlen=padlen).astype(np.float32)
    np.testing.assert_array_equal(filter_signal(x, fs, *bands), expected)


def test_resample_changes_length_and_keeps_the_waveform():
    x = sine(3, 300)
    y = resample(x, 300, 100)
    assert y.shape == (1000, 1)
    np.testing.assert_allclose(y[100:-100, 0], sine(3, 100)[100:-100, 0], atol=0.02)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("rate", "target"), [(300, 150), (100, 150), (500, 100), (500, 150), (257, 100), (1000, 300)])
def test_resample_equals_scipy_resample_poly_to_the_bit(rate, target, dtype):
    """The cached anti-aliasing filter is the one resample_poly designs itself: same output, bit for bit."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    x = np.random.default_rng(rate).standard_normal((2 * rate + 7, 3)).astype(dtype)
    ratio = Fraction(target / rate).limit_denominator(1000)
    expected = resample_poly(x, ratio.numerator, ratio.denominator, axis=0).astype(np.float32)
    np.testing.assert_array_equal(resample(x, rate, target), expected)
    np.testing.assert_array_equal(resample(x, rate, target), expected)  # again, from the cache


def test_resample_removes_content_above_the_new_nyquist():
    y = resample(sine(80, 500), 500, 100)  # 80 Hz cannot exist at 100 Hz: it must not alias to 20 Hz
    assert amplitude(y) < 0.05


def test_fit_length_crops_and_pads():
    x = np.arange(10, dtype=np.float32)[:, None]
    assert fit_length(x, 4)[:, 0].tolist() == [3, 4, 5, 6]
    assert fit_length(x, 4, align="start")[:, 0].tolist() == [0, 1, 2, 3]
    assert fit_length(x, 12)[:, 0].tolist() == [*list(range(10)), 0, 0]


def test_sliding_windows_cover_the_whole_signal():
    assert window_starts(10, 4, 4) == [0, 4, 6]
    assert window_starts(3, 4, 4) == [0]
    windows = sliding_windows(np.arange(10, dtype=np.float32)[:, None], 4)
    assert windows.shape == (3, 4, 1)
    assert windows[-1, :, 0].tolist() == [6, 7, 8, 9]


def test_normalisations():
    x = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 20.0]])
    z = normalise(x, "zscore")
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-4)
    m = normalise(x, "minmax")
    np.testing.assert_allclose(m.min(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(m.max(axis=0), 1, atol=1e-4)
    with pytest.raises(ValueError):
        normalise(x, "l2")


def test_spec_round_trips_through_json():
    spec = PreprocessingSpec(300, 9000, ("ii",), notch_hz=50, normalisation="minmax")
    assert spec.leads == ("II",)
    assert PreprocessingSpec.from_json(spec.to_json()) == spec


def test_prepare_on_a_real_long_single_lead_recording(data_dir):
    record = read_ecg(data_dir / "cinc2017" / "A00001.hea")  # 30 s at 300 Hz
    spec = PreprocessingSpec(sampling_rate=100, window_samples=1000, leads=("II",))
    batch = prepare(record, spec)
    assert batch.shape == (3, 1000, 1)
    assert batch.dtype == np.float32
    np.testing.assert_allclose(batch.mean(axis=1), 0, atol=1e-4)


def test_prepare_selects_and_orders_leads_by_name(data_dir):
    record = read_ecg(data_dir / "ptbxl" / "00001_lr.hea")
    spec = PreprocessingSpec(
        sampling_rate=100,
        window_samples=1000,
        leads=("V1", "I"),
        normalisation="none",
        highpass_hz=None,
        lowpass_hz=None,
    )
    batch = prepare(record, spec)
    np.testing.assert_allclose(batch[0, :, 0], record.lead("V1"), atol=1e-6)
    np.testing.assert_allclose(batch[0, :, 1], record.lead("I"), atol=1e-6)


def test_prepare_pads_a_short_recording_after_normalising_it():
    record = Record(sine(5, 100, seconds=4), 100, ["II"], {})
    spec = PreprocessingSpec(sampling_rate=100, window_samples=1000, leads=("II",))
    batch = prepare(record, spec)
    assert batch.shape == (1, 1000, 1)
    assert np.all(batch[0, 400:] == 0)
    assert batch[0, :400].std() == pytest.approx(1, abs=0.01)


def test_prepare_rejects_missing_leads_and_nan():
    record = Record(np.zeros((1000, 1)), 100, ["I"], {})
    spec12 = PreprocessingSpec(100, 1000, ("I", "II"))
    with pytest.raises(EcgFormatError, match="lacks lead"):
        prepare(record, spec12)
    bad = Record(np.full((1000, 1), np.nan), 100, ["II"], {})
    with pytest.raises(EcgFormatError, match="NaN"):
        prepare(bad, PreprocessingSpec(100, 1000, ("II",)))


def test_a_requests_filterings_give_each_models_inputs_to_the_bit(data_dir):
    """FilteredLeads: lead II band-passed once with the other eleven serves the 12-lead spec, the single-lead spec and
    the heart rate; every clean() equals the one that filters by itself."""
    from ecg_shared.preprocessing import FilteredLeads, clean

    for record in (read_ecg(data_dir / "wellnest" / "sample-10s.raw"), read_ecg(data_dir / "ptbxl" / "00001_lr.hea")):
        filtered = FilteredLeads(record)
        for spec in (
            PreprocessingSpec(100, 1000, tuple(record.lead_names), normalisation="minmax"),
            PreprocessingSpec(150, 4500, ("II",)),
            PreprocessingSpec(250, 1000, ("V1", "II"), notch_hz=50),
        ):
            np.testing.assert_array_equal(clean(record, spec, filtered), clean(record, spec))
        # II was filtered once for all of them (with the twelve), once more with the notch
        assert sum(column == record.lead_names.index("II") for column, _ in filtered._columns) == 2


def test_the_heart_rate_on_the_requests_filtering_is_the_same(data_dir):
    from ecg_shared.heart import heart_rate
    from ecg_shared.preprocessing import FilteredLeads

    for path in ("wellnest/sample-10s.raw", "ptbxl/00001_lr.hea", "cinc2017/A00001.hea"):
        record = read_ecg(data_dir / path)
        alone, shared = heart_rate(record), heart_rate(record, FilteredLeads(record))
        assert shared.bpm == pytest.approx(alone.bpm, abs=0.05) and shared.lead == alone.lead
