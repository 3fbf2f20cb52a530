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


def test_each_variant_sets_one_measurement_then_one_leads_measurements_to_the_reference():
    values, reference = _features()
    plan = plan_measurements(values, reference.tolist(), SPEC)
    n, leads = len(SPEC.names), SPEC.lead_columns
    assert plan.lead_names == ["I", "II", "V1"] and plan.variants.shape == (n + 3, n)
    assert np.array_equal(plan.features[0], values) and np.array_equal(plan.features[1:], plan.variants)
    for j in range(n):
        changed = np.flatnonzero(plan.variants[j] != values)
        assert changed.tolist() == [j]
    for k, lead in enumerate(plan.lead_names):
        changed = np.flatnonzero(plan.variants[n + k] != values)
        assert changed.tolist() == leads[lead] and len(changed) == 7  # QRS, net, ST, T, Q, R, S of that lead
    assert all("not measured" not in d for d in plan.descriptions)


def test_without_beats_the_beat_measurements_are_said_to_be_unmeasured_not_zero():
    values, reference = _features(beats_valid=0.0)
    values[1:N_FEATURES] = 0.0
    plan = plan_measurements(values, reference.tolist(), SPEC)
    assert "not measured" not in plan.descriptions[0]
    assert all(d.endswith("not measured, fewer than four beats found") for d in plan.descriptions[1:N_FEATURES])
    assert all("not measured" not in d for d in plan.descriptions[N_FEATURES:])


def test_importances_are_the_drops_of_the_shown_probability_largest_first():
    """The blend is linear: a variant's window probabilities are the windows' own, minus the recording's features
    part, plus the variant's."""
    values, reference = _features()
    n = len(SPEC.names)
    plan = plan_measurements(values, reference.tolist(), SPEC)
    shown = np.array([[0.3, 0.7], [0.1, 0.9]], np.float32)  # two windows: the recording's P(class 1) is 0.8
    parts = np.tile(np.array([[0.1, 0.4]], np.float32), (1 + n + 3, 1))  # row 0: the recording's own
    parts[1 + 4] = [0.3, 0.2]  # measurement 4 at its reference: 0.6, a drop of 0.2
    parts[1 + 9] = [0.0, 0.5]  # measurement 9: 0.9, it argued against the class by 0.1
    parts[1 + n + 2] = [0.4, 0.1]  # lead V1's measurements: 0.5
    explanation = explain("m", ["a", "b"], shown, None, measurements=plan, features_parts=parts)
    assert explanation.target_class == "b" and explanation.lead_method == "measurements"
    first, second = explanation.measurements[:2]
    assert (first.name, second.name) == (SPEC.names[4], SPEC.names[9])
    assert abs(first.importance - 0.2) < 1e-6 and first.reference == 0.0
    assert abs(second.importance + 0.1) < 1e-6 and second.value == round(float(values[9]), 6)
    assert all(m.importance == 0 for m in explanation.measurements[2:])
    assert abs(explanation.leads["V1"] - 0.3) < 1e-6 and explanation.leads["I"] == 0
