"""The classification API: what `POST /classify` takes as JSON and what it answers.

The inference service produces :class:`ClassifyResponse`; the gateway forwards it and ``ecg classify --json`` prints
it (plus ``file``). Field meanings are documented in ``docs/inference.md``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Call = Literal["normal", "abnormal", "unreadable"]


class ClassifyJsonRequest(BaseModel):
    """Samples sent as JSON instead of a file.

    ``samples`` is row-major, one row per time step: shape (n_samples, n_leads), so ``samples[t][k]`` is lead
    ``leads[k]`` at time ``t`` (in millivolts). A single-lead recording may be a flat list.
    """

    samples: list[list[float]] | list[float] = Field(min_length=1)
    sampling_rate: float = Field(gt=0, description="Hz")
    leads: list[str] = Field(min_length=1, description="lead names, one per column of samples")


def classify_openapi_request_body() -> dict:
    """The OpenAPI ``requestBody`` of ``POST /classify`` (multipart upload or JSON samples), for both services."""
    from ecg_shared.formats import FORMATS

    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "Wellnest raw, a WFDB zip (.hea + .dat/.mat), CSV, .npy or .npz",
                        },
                        "format": {"type": "string", "enum": list(FORMATS), "description": "skip format detection"},
                        "fs": {"type": "number", "description": "sampling rate (Hz) for formats that carry none"},
                    },
                }
            },
            "application/json": {"schema": ClassifyJsonRequest.model_json_schema()},
        },
    }


class QualityView(BaseModel):
    usable: bool
    reasons: list[str]
    leads: dict[str, list[str]]
    noise_score: float


class RecordingView(BaseModel):
    format: str | None
    sampling_rate: float
    leads: list[str]
    duration_s: float
    n_samples: int
    heart_rate_bpm: float | None
    quality: QualityView


class ModelResult(BaseModel):
    name: str
    version: int | None
    family: str
    leads: list[str] = Field(description="the recording's leads this model read")
    probabilities: dict[str, float] = Field(description="mean over windows, keyed by the class labels as trained")
    predicted_class: str
    call: Call
    p_abnormal: float = Field(description="sum of the abnormal classes' probabilities")
    threshold: float
    windows: int


class Verdict(BaseModel):
    label: Call
    probability: float
    rule: str


class SegmentImportance(BaseModel):
    start_s: float
    end_s: float
    importance: float


class ModelExplanation(BaseModel):
    """Occlusion: how much the probability of ``target_class`` drops when a lead or a time segment is blanked."""

    model: str
    target_class: str
    leads: dict[str, float]
    segments: list[SegmentImportance]


class Timings(BaseModel):
    read_ms: float
    preprocess_ms: float
    inference_ms: float
    explain_ms: float
    total_ms: float
    providers: list[str] = Field(description="execution providers of the onnxruntime sessions that ran")


class ClassifyResponse(BaseModel):
    recording: RecordingView
    models: list[ModelResult]
    verdict: Verdict
    explanation: list[ModelExplanation] | None = None
    explanation_note: str | None = Field(
        None, description="why an explanation that was asked for is missing (the recording is too long for one)"
    )
    timings: Timings
