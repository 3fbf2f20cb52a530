"""The gateway: the upload web page and the public REST API; forwards classification to the inference service.

Run: ``python -m ecg_gateway --host 0.0.0.0 --port 8000`` (the Procfile's ``gateway`` entry).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError

from ecg_gateway.forwarding import InferenceClient
from ecg_gateway.metrics import MetricsMiddleware
from ecg_gateway.routes import classify, drift, health, jobs, models, pages, recordings
from ecg_shared.settings import get_settings

log = logging.getLogger("ecg_gateway")
STATIC_DIR = Path(__file__).resolve().parent / "static"


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.inference = InferenceClient()
    try:
        yield
    finally:
        await app.state.inference.close()


def create_app() -> FastAPI:
    logging.basicConfig(level=get_settings().log_level)
    app = FastAPI(
        title="ECG classification gateway",
        description="Classify ECG recordings, browse stored recordings, run ingestion and training jobs, manage "
        "model versions. Endpoints that change state need the `X-API-Key` header.",
        version="1.0",
        lifespan=lifespan,
    )
    app.add_middleware(GZipMiddleware, minimum_size=2048)  # traces for plotting are large JSON
    app.add_middleware(MetricsMiddleware)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for module in (health, classify, recordings, models, drift, jobs, pages):
        app.include_router(module.router)

    @app.exception_handler(OperationalError)
    async def database_unavailable(request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable on %s %s: %s", request.method, request.url.path, exc.orig)
        return JSONResponse({"detail": "the database is unavailable; try again shortly"}, status_code=503)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error in the gateway; it has been logged"}, status_code=500)

    return app


app = create_app()
