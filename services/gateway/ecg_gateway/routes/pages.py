"""The web pages: upload and classify, training jobs, ingestion jobs, models. Data comes from the REST API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from ecg_shared.formats import FORMATS
from ecg_shared.jobs.training import MODEL_FAMILIES
from ecg_shared.settings import get_settings
from ecg_shared.vocabulary import page_vocabulary

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "templates")
router = APIRouter(include_in_schema=False)

PAGES = {
    "/": ("upload.html", "Classify"),
    "/training": ("training.html", "Training"),
    "/ingestion": ("ingestion.html", "Ingestion"),
    "/models": ("models.html", "Models"),
}


def _render(request: Request, path: str) -> HTMLResponse:
    template, title = PAGES[path]
    settings = get_settings()
    context = {
        "title": title,
        "path": path,
        "nav": [(p, t) for p, (_, t) in PAGES.items()],
        "classify_requires_key": settings.classify_requires_key,
        "max_upload_bytes": settings.max_upload_bytes,
        "vocabulary": page_vocabulary(),
        "formats": FORMATS,
        "families": MODEL_FAMILIES,
    }
    return TEMPLATES.TemplateResponse(request, template, context)


@router.get("/", response_class=HTMLResponse)
def upload_page(request: Request):
    return _render(request, "/")


@router.get("/training", response_class=HTMLResponse)
def training_page(request: Request):
    return _render(request, "/training")


@router.get("/ingestion", response_class=HTMLResponse)
def ingestion_page(request: Request):
    return _render(request, "/ingestion")


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request):
    return _render(request, "/models")
