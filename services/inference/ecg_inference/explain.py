"""Occlusion explanations: blank a lead or a time segment, see how much the predicted class loses.

The occluded copies of a recording's windows are built up front and sent to onnxruntime in the same call as the
windows themselves, so an explanation costs one larger batch, not extra round trips. "Blank" means the lead's mean
over the window (zero after z-scoring, the baseline after min-max scaling).

A segment's importance is the exact change of the recording-level probability (the mean over windows) when that
segment is blanked in every window that covers it; a lead's importance likewise with the lead blanked everywhere.
Positive: the segment or lead supports the predicted class.

A model fused with measurements of the whole recording (``ecg_shared.beats``: heart rate, RR irregularity, each
lead's QRS, ST and T...) is also explained measurement by measurement: the same change of probability when one
measurement, all others unchanged, is set to its reference, the median over the training split's normal recordings
(the model's ``feature_reference``). Blanking signal leaves these measurements as they are, so for a model whose
answer is its measurements' alone (network weight 0) this is the whole explanation, and its lead importances come
from setting each lead's own measurements to their reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecg_shared.beats import N_FEATURES, FeatureSpec
from ecg_shared.calibration import calibrate
from ecg_shared.schemas import MeasurementImportance, ModelExplanation, SegmentImportance

MAX_SEGMENTS = 120  # long recordings get longer segments rather than thousands of them


@dataclass
class OcclusionPlan:
    """Occluded inputs for one model on one recording, and which window and segment or lead each one blanks."""

    inputs: np.ndarray  # (n_occluded, window, leads)
    segments: list[tuple[float, float]]  # seconds
    segment_rows: list[list[tuple[int, int]]]  # per segment: (window index, row in inputs)
    lead_names: list[str]
    lead_rows: list[list[int]]  # per lead: rows in inputs, one per window

    @property
    def size(self) -> int:
        return int(self.inputs.shape[0])


def plan_occlusion(
    windows: np.ndarray,
    starts: list[int],
    real_length: int,
    sampling_rate: float,
    lead_names: list[str],
    segment_s: float,
) -> OcclusionPlan:
    """Occluded copies of ``windows`` (starting at sample ``starts`` of a signal of ``real_length`` samples)."""
    n_windows, window, n_leads = windows.shape
    covered = max(real_length, 1)
    segment = max(round(segment_s * sampling_rate), 1, -(-covered // MAX_SEGMENTS))
    # What "blank" means: each lead's mean over the window's real samples (0 after z-scoring; the baseline level
    # after min-max scaling), so an occluded stretch carries no shape but no artificial step either.
    real_rows = [max(1, min(window, covered - start)) for start in starts]
    fill = [windows[w, :rows].mean(axis=0) for w, rows in enumerate(real_rows)]
    copies: list[np.ndarray] = []
    segments, segment_rows = [], []
    for seg_start in range(0, covered, segment):
        seg_end = min(seg_start + segment, covered)
        rows = []
        for w, start in enumerate(starts):
            lo, hi = max(seg_start - start, 0), min(seg_end - start, window)
            if lo >= hi:
                continue
            copy = windows[w].copy()
            copy[lo:hi] = fill[w]
            rows.append((w, len(copies)))
            copies.append(copy)
        segments.append((seg_start / sampling_rate, seg_end / sampling_rate))
        segment_rows.append(rows)
    lead_rows = []
    for lead in range(n_leads):
        rows = []
        for w in range(n_windows):
            copy = windows[w].copy()
            copy[:, lead] = fill[w][lead]
            rows.append(len(copies))
            copies.append(copy)
        lead_rows.append(rows)
    inputs = np.stack(copies) if copies else np.zeros((0, window, n_leads), np.float32)
    return OcclusionPlan(inputs.astype(np.float32, copy=False), segments, segment_rows, list(lead_names), lead_rows)


@dataclass
class MeasurementPlan:
    """Copies of a recording's measurements, each with one measurement (then one lead's measurements) set to its
    reference: ``variants`` (n_variants, n_features), run through the model's features part alone."""

    variants: np.ndarray
    names: list[str]
    descriptions: list[str]
    values: np.ndarray
    reference: np.ndarray
    lead_names: list[str]  # a variant each after the measurements', in this order

    @property
    def features(self) -> np.ndarray:
        """The rows for the features part: the recording's own measurements, then the variants."""
        return np.vstack([self.values[None, :], self.variants])


def plan_measurements(features: np.ndarray, reference: list[float], spec: FeatureSpec) -> MeasurementPlan:
    """The variants of ``features`` (spec's vector of the recording) to explain it by."""
    values = np.asarray(features, dtype=np.float32)
    ref = np.asarray(reference, dtype=np.float32)
    n = len(values)
    leads = {lead: columns for lead, columns in spec.lead_columns.items() if columns}
    variants = np.repeat(values[None, :], n + len(leads), axis=0)
    variants[np.arange(n), np.arange(n)] = ref
    for row, columns in enumerate(leads.values(), start=n):
        variants[row, columns] = ref[columns]
    descriptions = list(spec.descriptions)
    if values[spec.names.index("beats_valid")] == 0:  # the beat features are 0s standing in for no measurement
        for i in range(1, N_FEATURES):
            descriptions[i] += ": not measured, fewer than four beats found"
    return MeasurementPlan(variants, spec.names, descriptions, values, ref, list(leads))


def explain(
    model_name: str,
    classes: list[str],
    window_probabilities: np.ndarray,
    calibration: dict | None = None,
    plan: OcclusionPlan | None = None,
    occluded_probabilities: np.ndarray | None = None,
    measurements: MeasurementPlan | None = None,
    features_parts: np.ndarray | None = None,
    note: str | None = None,
) -> ModelExplanation:
    """Importance of each segment and lead (``plan``: signal blanked) and each measurement (``measurements``: set to
    its reference) for the predicted class, from the probabilities of the planned inputs: changes of the calibrated
    recording-level probability (the one the answer shows). ``features_parts``: the model's features part on
    ``measurements.features`` (the recording's own first); the blend being linear, a variant's window probabilities
    are the windows' own minus the recording's features part plus the variant's."""

    def recording_probability(windows: np.ndarray) -> np.ndarray:
        return calibrate(windows.mean(axis=0, keepdims=True), calibration)[0]

    shown = recording_probability(window_probabilities)
    target = int(np.argmax(shown))
    segments, leads, lead_method = [], {}, "signal"
    if plan is not None:
        for (start_s, end_s), rows in zip(plan.segments, plan.segment_rows, strict=True):
            per_window = window_probabilities.copy()
            for window_index, row in rows:
                per_window[window_index] = occluded_probabilities[row]
            importance = float(shown[target] - recording_probability(per_window)[target])
            segments.append(
                SegmentImportance(start_s=round(start_s, 3), end_s=round(end_s, 3), importance=round(importance, 6))
            )
        leads = {
            name: round(float(shown[target] - recording_probability(occluded_probabilities[rows])[target]), 6)
            for name, rows in zip(plan.lead_names, plan.lead_rows, strict=True)
        }
    found = []
    if measurements is not None:
        changes = features_parts[1:] - features_parts[0]
        drops = [
            round(float(shown[target] - recording_probability(window_probabilities + c)[target]), 6) for c in changes
        ]
        found = sorted(
            (
                MeasurementImportance(
                    name=name,
                    description=description,
                    value=round(float(value), 6),
                    reference=round(float(reference), 6),
                    importance=drop,
                )
                for name, description, value, reference, drop in zip(
                    measurements.names,
                    measurements.descriptions,
                    measurements.values,
                    measurements.reference,
                    drops[: len(measurements.names)],  # the lead variants' drops come after the measurements'
                    strict=True,
                )
            ),
            key=lambda m: -abs(m.importance),
        )
        if plan is None:
            leads = dict(zip(measurements.lead_names, drops[len(measurements.names) :], strict=True))
            lead_method = "measurements"
    return ModelExplanation(
        model=model_name,
        target_class=classes[target],
        leads=leads,
        lead_method=lead_method,
        segments=segments,
        measurements=found,
        note=note,
    )
