"""Wellnest raw blobs: the real device recording, exact round trips, corruption and resynchronisation."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_shared.formats import STANDARD_12_LEADS, EcgFormatError, Record, read_ecg, read_wellnest, write_wellnest
from ecg_shared.formats.record import counts_to_mv
from ecg_shared.formats.wellnest import FRAME_BYTES
from ecg_shared.heart import heart_rate

GAIN = 1241.0


def synthetic_12_lead(seconds: float = 4.0, fs: float = 500.0, seed: int = 0) -> Record:
    """Nine independent channels on the 12-bit grid, with aVR/aVL/aVF derived as the device does."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    counts = rng.integers(-2048, 2048, size=(n, 9))
    mv = counts / GAIN
    i, ii, iii = mv[:, 0], mv[:, 1], mv[:, 2]
    signal = np.column_stack([i, ii, iii, -(i + ii) / 2, (i - iii) / 2, (ii + iii) / 2, mv[:, 3:]])
    return Record(signal, fs, list(STANDARD_12_LEADS), {})


def test_real_recording_decodes_to_5000_by_12_at_500_hz_near_75_bpm(wellnest_sample):
    record = read_ecg(wellnest_sample)
    assert record.format == "wellnest"
    assert record.signal.shape == (5000, 12)
    assert record.sampling_rate == 500.0
    assert record.lead_names == list(STANDARD_12_LEADS)
    assert record.metadata["dropped_frames"] == 0
    # Physiological amplitudes at the default gain of 1241 counts/mV: R waves of about 1-2 mV, not 10-20.
    assert 0.5 < np.ptp(record.lead("II")) < 4.0
    assert heart_rate(record).bpm == pytest.approx(75, abs=5)


def test_derived_leads_follow_einthoven_and_goldberger(wellnest_sample):
    r = read_ecg(wellnest_sample)
    i, ii, iii = r.lead("I"), r.lead("II"), r.lead("III")
    np.testing.assert_allclose(r.lead("aVR"), -(i + ii) / 2, atol=1e-6)
    np.testing.assert_allclose(r.lead("aVL"), (i - iii) / 2, atol=1e-6)
    np.testing.assert_allclose(r.lead("aVF"), (ii + iii) / 2, atol=1e-6)
    # Every lead is whole counts over its gain (the augmented leads: half sums, so doubled counts over twice it).
    assert r.counts_per_mv == (1241.0,) * 3 + (2482.0,) * 3 + (1241.0,) * 6
    counts = np.rint(r.signal.astype(np.float64) * np.array(r.counts_per_mv))
    np.testing.assert_array_equal(counts_to_mv(counts, np.array(r.counts_per_mv)), r.signal)


def test_encode_decode_round_trip_is_exact_to_12_bit_quantisation():
    record = synthetic_12_lead()
    decoded = read_wellnest(write_wellnest(record, gain=GAIN), gain=GAIN)
    assert decoded.signal.shape == record.signal.shape
    np.testing.assert_allclose(decoded.signal, record.signal, atol=1e-6)


def test_real_recording_survives_write_and_read_byte_for_byte(wellnest_sample):
    raw = wellnest_sample.read_bytes()
    assert write_wellnest(read_ecg(raw)) == raw


def test_writer_resamples_other_rates_to_500_hz(data_dir):
    ptbxl = read_ecg(data_dir / "ptbxl" / "00001_lr.hea")
    decoded = read_ecg(write_wellnest(ptbxl))
    assert decoded.sampling_rate == 500.0
    assert decoded.n_samples == 5000
    # The quantisation step is 1/1241 mV; resampling adds a little ringing, nothing more.
    original_ii = ptbxl.lead("II")
    assert np.corrcoef(decoded.lead("II")[::5], original_ii)[0, 1] > 0.97


def test_gain_is_a_setting(monkeypatch):
    from ecg_shared.settings import get_settings

    blob = write_wellnest(synthetic_12_lead(), gain=GAIN)
    monkeypatch.setenv("ECG_WELLNEST_GAIN", "124.1")
    get_settings.cache_clear()
    try:
        tenfold = read_wellnest(blob)
    finally:
        monkeypatch.delenv("ECG_WELLNEST_GAIN")
        get_settings.cache_clear()
    np.testing.assert_allclose(tenfold.signal, read_wellnest(blob, gain=GAIN).signal * 10, rtol=1e-5, atol=1e-6)


def test_a_flipped_sync_byte_drops_one_frame_and_keeps_the_time_axis():
    record = synthetic_12_lead(seconds=10)
    blob = bytearray(write_wellnest(record, gain=GAIN))
    for frame in (100, 2000, 4321):
        blob[frame * FRAME_BYTES] = 0x00
    decoded = read_wellnest(bytes(blob), gain=GAIN)
    assert decoded.n_samples == record.n_samples
    assert decoded.metadata["dropped_frames"] == 3
    good = np.ones(record.n_samples, dtype=bool)
    good[[100, 2000, 4321]] = False
    np.testing.assert_allclose(decoded.signal[good], record.signal[good], atol=1e-6)
    # The gap is filled by interpolating its neighbours.
    expected = (record.signal[99] + record.signal[101]) / 2
    np.testing.assert_allclose(decoded.signal[100], expected, atol=1e-5)
    assert decoded.counts_per_mv is None  # interpolated counts are not whole: stored as float32 millivolts


def test_garbage_inserted_between_frames_is_skipped_and_resynchronised():
    record = synthetic_12_lead(seconds=10)
    blob = write_wellnest(record, gain=GAIN)
    cut = 1234 * FRAME_BYTES
    corrupted = blob[:cut] + b"\x01\x02\x03\xba\x05" + blob[cut:]
    decoded = read_wellnest(corrupted, gain=GAIN)
    assert decoded.n_samples == record.n_samples
    np.testing.assert_allclose(decoded.signal, record.signal, atol=1e-6)


def test_truncated_tail_is_ignored():
    record = synthetic_12_lead(seconds=10)
    blob = write_wellnest(record, gain=GAIN)[:-7]
    decoded = read_wellnest(blob, gain=GAIN)
    assert decoded.n_samples == record.n_samples - 1
    assert decoded.metadata["trailing_bytes_ignored"] == FRAME_BYTES - 7


def test_more_than_one_percent_bad_frames_is_rejected():
    blob = bytearray(write_wellnest(synthetic_12_lead(seconds=10), gain=GAIN))
    for frame in range(10, 5000, 90):  # 56 of 5000 frames
        blob[frame * FRAME_BYTES + 1] = 0x00
    with pytest.raises(EcgFormatError, match="corrupt"):
        read_wellnest(bytes(blob), gain=GAIN)


def test_recordings_under_two_seconds_are_rejected():
    blob = write_wellnest(synthetic_12_lead(seconds=1.5), gain=GAIN)
    with pytest.raises(EcgFormatError, match="too short"):
        read_wellnest(blob, gain=GAIN)


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"", "empty"),
        (b"\xba\x88\x00", "shorter than one"),
        (bytes(range(256)) * 40, "no frame"),
    ],
)
def test_unreadable_blobs_raise_the_documented_error(blob, message):
    with pytest.raises(EcgFormatError, match=message):
        read_wellnest(blob, gain=GAIN)


def test_writer_needs_the_device_leads():
    single = Record(np.zeros((1000, 1)), 300, ["ECG"], {})
    with pytest.raises(EcgFormatError, match="needs leads"):
        write_wellnest(single)
