"""The model registry: every model's versions (stage, metrics, model card) and promotion."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import BaseModel

from ecg_gateway.errors import COMMON_ERRORS, INT32_MAX, KEYED_ERRORS, error_responses
from ecg_gateway.security import require_api_key
from ecg_shared import registry
from ecg_shared.db import ModelVersion, session_scope

router = APIRouter(prefix="/api/models", tags=["models"], responses=error_responses(*COMMON_ERRORS))
VersionNumber = Annotated[int, Path(ge=1, le=INT32_MAX, description="the version number")]


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


class ModelView(BaseModel):
    name: str
    active_version: int | None
    versions: list[ModelVersionView]


class ModelList(BaseModel):
    models: list[ModelView]


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


@router.post(
    "/{name}/versions/{version}/promote",
    response_model=ModelVersionView,
    dependencies=[Depends(require_api_key)],
    responses=error_responses(*KEYED_ERRORS, 404),
    summary="Make this version the active one (the previous active version is archived)",
)
def promote_version(name: str, version: VersionNumber) -> ModelVersionView:
    """Committed before the answer is sent: a 200 means the inference service will pick the version up."""
    try:
        with session_scope() as session:
            row = registry.promote(session, name, version)
            view = version_view(row)
    except registry.RegistryError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return view
