"""The model registry: every model's versions (stage, metrics, model card) and promotion."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import text

from ecg_gateway.errors import COMMON_ERRORS, INT32_MAX, KEYED_ERRORS, error_responses
from ecg_gateway.security import require_api_key
from ecg_shared import registry
from ecg_shared.db import ModelVersion, session_scope
from ecg_shared.model_metadata import ModelMetadata
from ecg_shared.promotion import NAME_PATTERN, REVIEWED, GateRequest, GateResult
from ecg_shared.schemas import ErrorAnswer
from ecg_shared.settings import get_settings

router = APIRouter(prefix="/api/models", tags=["models"], responses=error_responses(*COMMON_ERRORS))
VersionNumber = Annotated[int, Path(ge=1, le=INT32_MAX, description="the version number")]


class MeasurementReference(BaseModel):
    name: str
    description: str
    reference: float | None = Field(
        description="its median over the normal recordings of the training split (null: the file predates it)"
    )


class VersionInputs(BaseModel):
    """What a version's answer rests on: its network, the measurements fused with it, and their blend."""

    answer: str = Field(description="in words: the network alone, the measurements alone, or both and their weights")
    network_weight: float | None = Field(description="the network's weight in the blend (null: a network alone)")
    measurements: list[MeasurementReference] = Field(description="the measurements its trees read, in input order")


class ModelVersionView(BaseModel):
    name: str
    version: int
    family: str
    stage: str
    classes: list[str]
    normal_classes: list[str]
    unreadable_classes: list[str]
    threshold: float | None
    leads: list[str]
    metrics: dict[str, Any]
    model_card: dict[str, Any]
    training_job_id: int | None
    created_at: datetime
    promoted_at: datetime | None
    inputs: VersionInputs | None = Field(description="what its answer rests on (null: its metadata cannot say)")


class ModelView(BaseModel):
    name: str
    active_version: int | None
    versions: list[ModelVersionView]


class ModelList(BaseModel):
    models: list[ModelView]


def version_inputs(onnx_metadata: dict[str, Any]) -> VersionInputs | None:
    """What the answer of a version with this metadata (``ModelMetadata.to_dict()``) rests on."""
    try:
        meta = ModelMetadata.from_dict(onnx_metadata)
    except (KeyError, TypeError, ValueError):  # older or foreign metadata: nothing to say rather than a guess
        return None
    spec = meta.feature_spec
    if spec is None:
        return VersionInputs(answer="the network alone, from the signal", network_weight=None, measurements=[])
    weight = meta.network_weight
    if weight == 0:
        answer = "the measurements alone: on validation the blend did best without the network"
    elif weight == 1:
        answer = "the network alone: on validation the blend did best without the measurements"
    elif weight is None:
        answer = "the network and the measurements, blended (the file predates storing the weights)"
    else:
        answer = (
            f"the network (weight {weight:g}) and the measurements (weight {1 - weight:g}): the blend that did best "
            "on validation"
        )
    references = meta.feature_reference or [None] * len(spec.names)
    return VersionInputs(
        answer=answer,
        network_weight=weight,
        measurements=[
            MeasurementReference(name=name, description=description, reference=reference)
            for name, description, reference in zip(spec.names, spec.descriptions, references, strict=True)
        ],
    )


def version_view(row: ModelVersion) -> ModelVersionView:
    meta = row.onnx_metadata or {}
    return ModelVersionView(
        name=row.name,
        version=row.version,
        family=row.family,
        stage=row.stage,
        classes=meta.get("classes", []),
        normal_classes=meta.get("normal_classes", []),
        unreadable_classes=meta.get("unreadable_classes", []),
        threshold=meta.get("threshold"),
        leads=list((meta.get("preprocessing") or {}).get("leads", [])),
        metrics=row.metrics or {},
        model_card=row.model_card or {},
        training_job_id=row.training_job_id,
        created_at=row.created_at,
        promoted_at=row.promoted_at,
        inputs=version_inputs(meta),
    )


def _models(rows: list[ModelVersion]) -> list[ModelView]:
    grouped: dict[str, list[ModelVersion]] = {}
    for row in rows:
        grouped.setdefault(row.name, []).append(row)
    return [
        ModelView(
            name=name,
            versions=[version_view(v) for v in versions],
            active_version=next((v.version for v in versions if v.stage == "active"), None),
        )
        for name, versions in grouped.items()
    ]


@router.get("", response_model=ModelList, summary="Every registered model with its versions, newest first")
def list_models() -> ModelList:
    with session_scope() as session:
        return ModelList(models=_models(registry.list_versions(session)))


@router.get("/{name}", response_model=ModelView, responses=error_responses(404), summary="One model's versions")
def get_model(name: str) -> ModelView:
    with session_scope() as session:
        models = _models(registry.list_versions(session, name))
    if not models:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model named {name!r}")
    return models[0]


class Promotion(ModelVersionView):
    forced: bool = Field(description="promoted with force=true, without the gate")
    gate: GateResult | None = Field(description="the comparison that let it through (null when forced)")


GATE_REFUSED = "the version scores lower than the active one (or cannot be compared); force=true overrides"
EVALUATION = Query(
    REVIEWED,
    min_length=1,
    max_length=200,
    pattern=NAME_PATTERN,
    description="evaluation data: 'reviewed' (the clinician-reviewed recordings) or a dataset name",
)
VERSION = Path(ge=1, le=2**31 - 1)
NAME = Path(min_length=1, max_length=100, pattern=NAME_PATTERN)


async def _gate(request: Request, name: str, version: int, evaluation: str) -> GateResult:
    """Ask the inference service to score the version and the active one (``ecg_inference.gate``)."""
    body = GateRequest(name=name, version=version, evaluation=evaluation).model_dump()
    response = await request.app.state.inference.request(
        "POST", "/gate", json=body, timeout_s=get_settings().gate_timeout_s
    )
    if response.status_code == 404:
        raise HTTPException(status.HTTP_404_NOT_FOUND, response.json().get("detail", "not found"))
    if not response.is_success:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"the promotion gate failed (HTTP {response.status_code})"
        )
    return GateResult.model_validate(response.json())


@router.get(
    "/{name}/versions/{version}/comparison",
    response_model=GateResult,
    responses=error_responses(*COMMON_ERRORS, 404),
    summary="Score this version and the active one on the same evaluation data (what promotion checks)",
)
async def compare_version(
    request: Request, name: str = NAME, version: int = VERSION, evaluation: str = EVALUATION
) -> GateResult:
    """Both versions classify the evaluation recordings the way the inference service does and are scored with the
    training figures on the recordings both can read; ``passed`` says whether promotion would go ahead."""
    return await _gate(request, name, version, evaluation)


@router.post(
    "/{name}/versions/{version}/promote",
    response_model=Promotion,
    dependencies=[Depends(require_api_key)],
    responses=error_responses(*KEYED_ERRORS, 404) | {409: {"model": ErrorAnswer, "description": GATE_REFUSED}},
    summary="Make this version the active one, if it scores at least as well (the previous one is archived)",
)
async def promote_version(
    request: Request,
    name: str = NAME,
    version: int = VERSION,
    evaluation: str = EVALUATION,
    force: bool = Query(False, description="promote even if it scores lower or cannot be compared (skips the gate)"),
) -> Promotion:
    """The gate (``GET .../comparison``) runs first: a version scoring lower than the active one on the evaluation
    data, or one that cannot be compared on it, is refused with 409 unless ``force=true``. Committed before the
    answer is sent: a 200 means the inference service will pick the version up."""
    gate = None
    if not force:
        gate = await _gate(request, name, version, evaluation)
        if not gate.passed:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"not promoted: {gate.reason}; promote with force=true to override"
            )

    def promote() -> ModelVersionView:
        with session_scope() as session:
            if gate is not None and gate.active is not None:  # the comparison holds only against that version
                session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
                current = next((v.version for v in registry.active_versions(session) if v.name == name), None)
                if current != gate.active.version:
                    raise HTTPException(
                        status.HTTP_409_CONFLICT,
                        f"not promoted: v{current} became active while v{version} was compared with "
                        f"v{gate.active.version}; compare again",
                    )
            return version_view(registry.promote(session, name, version))

    try:
        view = await run_in_threadpool(promote)
    except registry.RegistryError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return Promotion(**view.model_dump(), forced=force, gate=gate)
