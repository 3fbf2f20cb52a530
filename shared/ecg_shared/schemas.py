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
    reasons: list[str] = Field(description="why the recording is not usable (empty when it is)")
    leads: dict[str, list[str]] = Field(
        description="per lead, its problems in plain words: flat, clipped, noisy, 'noise burst at 4-5 s'"
    )
    noise_score: float
    repairs: list[str] = Field(
        default_factory=list,
        description="what the file's reader changed to read it, in plain words (e.g. Wellnest frames filled in)",
    )
    unreadable_leads: list[str] = Field(
        default_factory=list,
        description="the leads no model may read: a model reading one of them is not judged. Every lead with no "
        "signal (flat, missing samples); where most leads have problems, every lead with one; all of them when the "
        "recording as a whole fails (too short, no clean lead)",
    )


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
    probabilities: dict[str, float] = Field(
        description="calibrated (the model's calibration, fitted on its validation split) mean over windows, keyed by "
        "the class labels as trained"
    )
    predicted_class: str
    call: Call
    p_abnormal: float = Field(description="sum of the abnormal classes' probabilities")
    threshold: float
    windows: int
    not_judged: str | None = Field(
        None,
        description="why this model's answer is not used, in plain words (its call is then 'unreadable'): one of "
        "the leads it reads is not readable (quality.unreadable_leads). Its probabilities are what it computed on "
        "those leads and mean nothing",
    )
    caveat: str | None = Field(
        None,
        description="what this answer must be read with, in plain words, or null: the recording fills less than half "
        "of the model's window, so the model read mostly zero padding, on inputs shorter than those it learned from "
        "and was validated on (the rhythm model on a 10 s 12-lead recording: docs/inference.md)",
    )


class Verdict(BaseModel):
    label: Call
    probability: float | None = Field(
        description="of the verdict's label, from the models' calibrated probabilities; null where a rule decided it "
        "(the recording failed the quality check, or no model could be judged): no probability stands behind it"
    )
    rule: str = Field(description="why: each model's call and how they were combined, in words")
    p_abnormal: float | None = Field(None, description="the combined probability of abnormal (not when unreadable)")
    disagreement: bool = Field(False, description="the models that could read the recording call it differently")
    anchor: str | None = Field(None, description="the model whose log-odds and threshold the combination starts from")


class SegmentImportance(BaseModel):
    start_s: float
    end_s: float
    importance: float


class MeasurementImportance(BaseModel):
    """One of the model's input measurements (``ecg_shared.beats``), and how much the probability of the explained
    class drops when it is set to its ``reference``: its median over the training split's normal recordings."""

    name: str
    description: str
    value: float = Field(description="measured on this recording")
    reference: float = Field(description="its median over the normal recordings the model was trained on")
    importance: float = Field(
        description="the explained class's calibrated probability minus its probability with this measurement at "
        "its reference, every other one unchanged: positive supports the class"
    )


class ModelExplanation(BaseModel):
    """Occlusion: how much the probability of ``target_class`` drops when a lead or a time segment is blanked, and
    (for a model fused with measurements) when one measurement is set to what it is in normal recordings."""

    model: str
    target_class: str
    leads: dict[str, float] = Field(
        description="importance per lead, for the leads this model read: blanking the lead's signal, or (lead_method "
        "'measurements') setting every measurement of that lead's median beat to its reference"
    )
    lead_method: Literal["signal", "measurements"] = "signal"
    segments: list[SegmentImportance] = Field(
        description="importance per time segment of the leads this model read (models[].leads), not of the others"
    )
    measurements: list[MeasurementImportance] = Field(
        default_factory=list,
        description="a model fused with measurements: each one's importance, largest first (by absolute value)",
    )
    note: str | None = Field(
        None,
        description="why there are no segment importances: e.g. a model whose answer comes from measurements of the "
        "whole recording (its network's weight in the blend is 0), which blanking a stretch of signal cannot change",
    )


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


# --- Error answers (both services) -------------------------------------------------------------------------------


class ValidationProblem(BaseModel):
    """One problem with the request: where (``loc``: ``["query", "limit"]``, ``["body", "rows", 3, "blob"]``) and
    what. Never the submitted value, which may be a secret."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorAnswer(BaseModel):
    """Every 4xx and 5xx answer: ``detail`` is one sentence naming the problem, or, for a request that does not
    match the schema (422), the list of its problems."""

    detail: str | list[ValidationProblem]


def validation_problems(errors: list[dict]) -> list[dict]:
    """Pydantic/FastAPI validation errors as :class:`ValidationProblem` dicts: without ``input``, ``ctx`` or
    ``url``, which echo what was submitted (a SAS token, a connection string)."""
    return [
        {"loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())], "msg": e["msg"], "type": e["type"]}
        for e in errors
    ]
