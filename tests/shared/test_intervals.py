"""PR, QRS, QT and QTc from neurokit2's delineator on the real recordings: plausible where the rhythm allows it,
withheld (with the reason) where it does not."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from ecg_shared.formats import Record, read_ecg
from ecg_shared.intervals import MAX_SPREAD_MS, measure_intervals


def _cinc(data_dir, label: str, count: int) -> list[Record]:
    folder = data_dir / "cinc2017"
    if not (folder / "REFERENCE.csv").is_file():
        pytest.skip(f"CinC 2017 missing: {folder}")
    with open(folder / "REFERENCE.csv") as file:
        names = [name for name, each in csv.reader(file) if each == label][:count]
    return [read_ecg(folder / f"{name}.hea") for name in names]


def test_real_wellnest_recording_has_normal_intervals_on_lead_ii(wellnest_sample):
    intervals = measure_intervals(read_ecg(wellnest_sample))
    assert intervals.lead == "II" and intervals.beats >= 10
    assert intervals.heart_rate_bpm == pytest.approx(75, abs=3)
    assert 120 <= intervals.pr.ms <= 220
    assert 60 <= intervals.qrs.ms <= 120
    assert 320 <= intervals.qt.ms <= 460
    # Bazett: QT / sqrt(RR), RR from the heart rate; above 60 bpm the corrected QT is longer.
    rr_s = 60.0 / intervals.heart_rate_bpm
    assert intervals.qtc_ms == pytest.approx(intervals.qt.ms / np.sqrt(rr_s))
    assert intervals.qtc_formula == "Bazett" and intervals.qtc_ms > intervals.qt.ms


def test_normal_sinus_strips_have_a_normal_qrs_and_qt(data_dir):
    qts = []
    for record in _cinc(data_dir, "N", 5):
        intervals = measure_intervals(record)
        assert intervals.qrs.ms is not None and 60 <= intervals.qrs.ms <= 120, intervals.qrs
        if intervals.qt.ms is None:  # T offsets that scatter over a long strip: withheld, and why
            assert intervals.qt.note.startswith("inconsistent across beats") and intervals.qtc_ms is None
        else:
            qts.append(intervals.qt.ms)
    assert len(qts) >= 3 and all(300 <= qt <= 520 for qt in qts), qts


def test_atrial_fibrillation_has_no_pr_interval(data_dir):
    """No P wave to time: the delineator's P onsets scatter, and the PR is withheld with the reason."""
    for record in _cinc(data_dir, "A", 5):
        pr = measure_intervals(record).pr
        assert pr.ms is None, f"a PR of {pr.ms} ms was reported in atrial fibrillation"
        assert pr.note.startswith("inconsistent across beats") and pr.beats >= 4
        assert float(pr.note.split("spread ")[1].split(" ms")[0]) > MAX_SPREAD_MS


def test_too_low_a_rate_or_no_beats_is_said_not_guessed(wellnest_sample):
    record = read_ecg(wellnest_sample)
    low = Record(record.signal[::10], record.sampling_rate / 10, record.lead_names)  # 50 Hz
    intervals = measure_intervals(low)
    assert intervals.pr.ms is None and intervals.qrs.ms is None and intervals.qt.ms is None
    assert intervals.qtc_ms is None and "below 100 Hz" in intervals.qrs.note
    flat = measure_intervals(Record(np.zeros((5000, 1)), 500, ["II"]))
    assert flat.qt.ms is None and flat.qtc_ms is None and "beats detected" in flat.qt.note
