"""Long recordings (a Holter file, tiled to 5 minutes) are cleaned and quality-checked lead by lead (pairs of leads
for the spectrum): the same result to the bit as all leads at once, at a fraction of the memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from ecg_shared import preprocessing, quality
from ecg_shared.formats import Record, read_ecg
from tests.inference.onnx_models import twelve_lead_metadata

LEAD_BY_LEAD_SAMPLES = preprocessing.LEAD_BY_LEAD_SAMPLES


@pytest.fixture(scope="module")
def holter(data_dir: Path) -> Record:
    path = data_dir / "formats" / "ishne_holter" / "ECG_P28.01.ecg"
    if not path.is_file():
        pytest.skip(f"ISHNE sample missing: {path}")
    record = read_ecg(path)  # 95.6 s, 12 leads, 1000 Hz
    long = Record(np.tile(record.signal, (3, 1)), record.sampling_rate, record.lead_names, record.metadata)
    assert long.signal.size > preprocessing.LEAD_BY_LEAD_SAMPLES
    return long


def _peak_and_result(function, monkeypatch, lead_by_lead: bool):
    threshold = LEAD_BY_LEAD_SAMPLES if lead_by_lead else 10**12
    monkeypatch.setattr(preprocessing, "LEAD_BY_LEAD_SAMPLES", threshold)
    monkeypatch.setattr(quality, "LEAD_BY_LEAD_SAMPLES", threshold)
    tracemalloc.start()
    try:
        result = function()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def test_cleaning_lead_by_lead_is_bit_identical_with_a_third_of_the_memory(holter, monkeypatch):
    spec = twelve_lead_metadata().preprocessing
    peak_whole, whole = _peak_and_result(lambda: preprocessing.clean(holter, spec), monkeypatch, False)
    peak_leads, by_lead = _peak_and_result(lambda: preprocessing.clean(holter, spec), monkeypatch, True)
    assert by_lead.dtype == whole.dtype == np.float32 and by_lead.shape == whole.shape
    np.testing.assert_array_equal(by_lead, whole)
    assert peak_leads < peak_whole / 3


def test_quality_over_a_long_recording_is_the_same_with_less_memory(holter, monkeypatch):
    peak_whole, whole = _peak_and_result(lambda: quality.assess_quality(holter), monkeypatch, False)
    peak_pairs, pairs = _peak_and_result(lambda: quality.assess_quality(holter), monkeypatch, True)
    assert pairs.to_dict() == whole.to_dict()
    odd = np.ascontiguousarray(holter.signal[:, :7])  # an odd lead count: the last lead goes with its neighbour
    monkeypatch.setattr(quality, "LEAD_BY_LEAD_SAMPLES", 10**12)
    expected = quality.noise_fraction(odd, holter.sampling_rate)
    monkeypatch.setattr(quality, "LEAD_BY_LEAD_SAMPLES", 1000)
    np.testing.assert_array_equal(quality.noise_fraction(odd, holter.sampling_rate), expected)
    assert peak_pairs < peak_whole / 2
