"""The gateway: the upload web page and the public REST API; forwards classification to the inference service.

Run: ``python -m ecg_gateway --host 0.0.0.0 --port 8000`` (the Procfile's ``gateway`` entry).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from ecg_gateway.errors import RefuseNulBytes, install_error_handlers
from ecg_gateway.forwarding import InferenceClient
from ecg_gateway.metrics import MetricsMiddleware
from ecg_gateway.routes import classify, drift, health, jobs, models, pages, recordings, report, reviews
from ecg_shared.logs import RequestIdMiddleware, configure_service_logging
from ecg_shared.settings import get_settings

log = logging.getLogger("ecg_gateway")
STATIC_DIR = Path(__file__).resolve().parent / "static"
SWAGGER_UI_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"  # Swagger UI 5, as the package ships it


@asynccontextmanager
async def lifespan(app: FastAPI):
    configure_service_logging(get_settings().log_level)  # when serving, not on import (tests read the schema)
    app.state.inference = InferenceClient()
    try:
        yield
    finally:
        await app.state.inference.close()


def create_app() -> FastAPI:
    app = FastAPI(
        title="ECG classification gateway",
        description="Classify ECG recordings, browse stored recordings, run ingestion and training jobs, manage "
        "model versions. Endpoints that change state need the `X-API-Key` header. Every error answer is "
        '`{"detail": ...}`: a sentence naming the problem, or (422, a request that does not match the schema) the '
        "list of problems. Every answer carries `X-Request-ID` (the client's, or a new one), which the gateway's and "
        "the inference service's log lines about the request carry too.",
        version="1.0",
        lifespan=lifespan,
        docs_url=None,  # served below from the gateway's own copy of Swagger UI, not from a CDN
        redoc_url=None,
    )
    app.add_middleware(RefuseNulBytes)
    app.add_middleware(GZipMiddleware, minimum_size=2048)  # traces for plotting are large JSON
    app.add_middleware(MetricsMiddleware)
    app.mount("/static/swagger-ui", StaticFiles(directory=SWAGGER_UI_DIR), name="swagger-ui")
    app.add_middleware(RequestIdMiddleware)  # outermost: every log line of the request carries its id
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        """Swagger UI from the fastapi-offline package's copy: the page works on a network without internet access."""
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} · API",
            swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/swagger-ui/favicon.png",
        )

    for module in (health, classify, report, recordings, reviews, models, drift, jobs, pages):
        app.include_router(module.router)
    install_error_handlers(app)
    return app


app = create_app()
