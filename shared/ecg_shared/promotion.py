"""The promotion gate's request and answer, shared by the inference service (which scores, ``ecg_inference.gate``),
the gateway (which asks before promoting) and the training worker (``auto_promote``)."""

from __future__ import annotations

import httpx
from pydantic import BaseModel, Field

from ecg_shared.settings import get_settings

REVIEWED = "reviewed"  # evaluation on the clinician-reviewed recordings (settled review labels)
DEFAULT_MAX_RECORDINGS = 500


NAME_PATTERN = r"^[^\x00-\x1f]+$"  # no control characters (Postgres text cannot hold NUL)


class GateRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    version: int = Field(ge=1, le=2**31 - 1)
    evaluation: str = Field(
        REVIEWED,
        min_length=1,
        max_length=200,
        pattern=NAME_PATTERN,
        description="'reviewed' (the reviewed recordings) or a dataset name",
    )
    max_recordings: int = Field(DEFAULT_MAX_RECORDINGS, ge=1, le=20_000, description="the first N by id")


class VersionScore(BaseModel):
    version: int | None = Field(description="null for a version not registered yet (a training job's candidate)")
    n: int = Field(description="evaluation recordings scored (those both versions can read)")
    agreement: float | None = Field(description="share called as labelled (normal/abnormal)")
    auc: float | None = Field(description="normal-vs-abnormal ROC AUC (null unless both kinds are present)")
    sensitivity: float | None
    specificity: float | None
    threshold: float
    score: float | None = Field(description="the compared figure")


class GateResult(BaseModel):
    name: str
    evaluation: str
    metric: str | None = Field(description="auc_abnormal or agreement: the figure compared")
    n: int
    labels: dict[str, int] = Field(description="evaluation recordings by label (normal, abnormal)")
    skipped: dict[str, int] = Field(description="recordings left out, by reason")
    candidate: VersionScore | None
    active: VersionScore | None
    passed: bool
    reason: str


def unopposed(name: str, evaluation: str, reason: str = "no active version to compare with") -> GateResult:
    """The gate's answer when there is nothing to compare against: it passes."""
    return GateResult(
        name=name, evaluation=evaluation, metric=None, n=0, labels={}, skipped={}, candidate=None, active=None,
        passed=True, reason=reason,
    )  # fmt: skip


def refused(name: str, evaluation: str, reason: str) -> GateResult:
    """The gate's answer when it could not compare (no data, or it could not run): not a pass."""
    return GateResult(
        name=name, evaluation=evaluation, metric=None, n=0, labels={}, skipped={}, candidate=None, active=None,
        passed=False, reason=reason,
    )  # fmt: skip


def ask_gate(name: str, version: int, evaluation: str = REVIEWED) -> GateResult:
    """The inference service's promotion gate (``POST /gate`` at ECG_INFERENCE_URL) for a registered version, for
    the training worker (``auto_promote``) and ``ecg models promote``; a gate that cannot be asked refuses, saying
    why. (The gateway asks through its own async client.)"""
    settings = get_settings()
    body = GateRequest(name=name, version=version, evaluation=evaluation).model_dump()
    try:
        response = httpx.post(f"{settings.inference_url.rstrip('/')}/gate", json=body, timeout=settings.gate_timeout_s)
    except httpx.HTTPError as exc:
        return refused(
            name, evaluation, f"the promotion gate could not run: inference unreachable ({type(exc).__name__})"
        )
    if response.status_code != 200:
        return refused(
            name, evaluation, f"the promotion gate could not run: inference answered HTTP {response.status_code}"
        )
    return GateResult.model_validate(response.json())
