"""Explanations by measurement (ecg_inference.explain): which variants are run, and what is read back from them."""

from __future__ import annotations

import numpy as np

from ecg_inference.explain import explain, plan_measurements
from ecg_shared.beats import N_FEATURES, FeatureSpec

SPEC = FeatureSpec("II", ("I", "II", "V1"))


def _features(beats_valid: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    values = rng.uniform(1.0, 2.0, len(SPEC.names)).astype(np.float32)
    values[0] = beats_valid
    return values, np.zeros(len(SPEC.names), np.float32)


def test_each_variant_sets_one_measurement_then_one_leads_measurements_to_the_reference_for_every_window():
    values, reference = _features()
    windows = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)
    plan = plan_measurements(windows, values, reference.tolist(), SPEC)
    n, leads = len(SPEC.names), SPEC.lead_columns
    assert plan.lead_names == ["I", "II", "V1"] and plan.size == 2 * (n + 3)
    variants = plan.features.reshape(n + 3, 2, n)
    assert np.array_equal(variants[:, 0], variants[:, 1])  # the same variant with each window
    assert np.array_equal(plan.windows.reshape(n + 3, 2, 5, 3)[7], windows)  # the signal is not touched
    for j in range(n):
        changed = np.flatnonzero(variants[j, 0] != values)
        assert changed.tolist() == [j]
    for k, lead in enumerate(plan.lead_names):
        changed = np.flatnonzero(variants[n + k, 0] != values)
        assert changed.tolist() == leads[lead] and len(changed) == 7  # QRS, net, ST, T, Q, R, S of that lead
    assert all("not measured" not in d for d in plan.descriptions)


def test_without_beats_the_beat_measurements_are_said_to_be_unmeasured_not_zero():
    values, reference = _features(beats_valid=0.0)
    values[1:N_FEATURES] = 0.0
    plan = plan_measurements(np.zeros((1, 5, 3), np.float32), values, reference.tolist(), SPEC)
    assert "not measured" not in plan.descriptions[0]
    assert all(d.endswith("not measured, fewer than four beats found") for d in plan.descriptions[1:N_FEATURES])
    assert all("not measured" not in d for d in plan.descriptions[N_FEATURES:])


def test_importances_are_the_drops_of_the_shown_probability_largest_first():
    values, reference = _features()
    n = len(SPEC.names)
    plan = plan_measurements(np.zeros((2, 5, 3), np.float32), values, reference.tolist(), SPEC)
    shown = np.array([[0.3, 0.7], [0.1, 0.9]], np.float32)  # two windows: the recording's P(class 1) is 0.8
    measured = np.repeat(shown[None], n + 3, axis=0)
    measured[4] = [[0.5, 0.5], [0.3, 0.7]]  # measurement 4 at its reference: 0.6, a drop of 0.2
    measured[9] = [[0.1, 0.9], [0.1, 0.9]]  # measurement 9: 0.9, it argued against the class by 0.1
    measured[n + 2] = [[0.6, 0.4], [0.4, 0.6]]  # lead V1's measurements: 0.5
    explanation = explain(
        "m", ["a", "b"], shown, None, measurements=plan, measured_probabilities=measured.reshape(-1, 2)
    )
    assert explanation.target_class == "b" and explanation.lead_method == "measurements"
    first, second = explanation.measurements[:2]
    assert (first.name, second.name) == (SPEC.names[4], SPEC.names[9])
    assert abs(first.importance - 0.2) < 1e-6 and first.reference == 0.0
    assert abs(second.importance + 0.1) < 1e-6 and second.value == round(float(values[9]), 6)
    assert all(m.importance == 0 for m in explanation.measurements[2:])
    assert abs(explanation.leads["V1"] - 0.3) < 1e-6 and explanation.leads["I"] == 0
