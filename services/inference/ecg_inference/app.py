"""The inference service: ``POST /classify`` on onnxruntime, with health, readiness and Prometheus metrics.

Run: ``uvicorn ecg_inference.app:app --host 0.0.0.0 --port 8001``. See docs/inference.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from ecg_inference.batcher import MicroBatcher
from ecg_inference.classify import ClassificationError, PreparedRecording, build_response, prepare_recording
from ecg_inference.models import usable_cpus
from ecg_inference.request_body import ClassifyInput, read_classify_input
from ecg_inference.watcher import ModelWatcher
from ecg_shared.schemas import ClassifyResponse, classify_openapi_request_body
from ecg_shared.settings import get_settings

log = logging.getLogger("ecg_inference")

REQUESTS = Counter("ecg_inference_requests_total", "Classification requests", ["status"])
LATENCY = Histogram(
    "ecg_inference_request_seconds",
    "Classification latency, body received to answer ready",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
)


def _warm_up() -> None:
    """Import neurokit2 (about a second) before the first request rather than during it."""
    from ecg_shared.heart import detect_rpeaks

    t = np.arange(0, 5, 1 / 250)
    detect_rpeaks(np.sin(2 * np.pi * 1.2 * t) ** 15, 250)


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app.state.watcher = ModelWatcher()
    app.state.batcher = MicroBatcher(settings.batch_wait_ms)
    app.state.cpu_pool = ThreadPoolExecutor(max_workers=usable_cpus(), thread_name_prefix="preprocess")
    await asyncio.gather(app.state.watcher.start(), asyncio.to_thread(_warm_up))
    yield
    await app.state.watcher.stop()
    app.state.batcher.close()
    app.state.cpu_pool.shutdown(wait=False, cancel_futures=True)


app = FastAPI(title="ECG inference", version="1.0", lifespan=lifespan)


@app.exception_handler(ClassificationError)
async def classification_error(request: Request, exc: ClassificationError) -> JSONResponse:
    REQUESTS.labels(str(exc.status)).inc()
    return JSONResponse({"detail": exc.message}, status_code=exc.status)


@app.exception_handler(Exception)
async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """Last resort: a bug, logged with its traceback; the client learns nothing internal."""
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    REQUESTS.labels("500").inc()
    return JSONResponse({"detail": "internal error; see the inference service log"}, status_code=500)


@app.get("/healthz")
async def healthz(request: Request) -> dict:
    """Alive, with the models served and the execution providers their sessions really use."""
    models = request.app.state.watcher.current
    return {
        "status": "ok",
        "models": models.describe(),
        "providers": {m.name: m.providers for m in models.models.values()},
    }


@app.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready when at least one model is loaded and the last registry check succeeded."""
    watcher: ModelWatcher = request.app.state.watcher
    problems = []
    if not watcher.current:
        problems.append("no model loaded")
    if watcher.last_error:
        problems.append(f"model source {watcher.source} unavailable: {watcher.last_error}")
    body = {"ready": not problems, "problems": problems, "revision": watcher.current.revision}
    return JSONResponse(body, status_code=503 if problems else 200)


@app.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@app.get("/models")
async def list_models(request: Request) -> list[dict]:
    return request.app.state.watcher.current.describe()


def _prepare(given: ClassifyInput, models, explain: bool, only: str | None) -> PreparedRecording:
    t = time.perf_counter()
    record = given.to_record()
    return prepare_recording(record, models, explain, only, read_ms=(time.perf_counter() - t) * 1000)


@app.post("/classify", response_model=ClassifyResponse, openapi_extra={"requestBody": classify_openapi_request_body()})
async def classify(request: Request, explain: bool | None = None, model: str | None = None) -> Response:
    """Classify an uploaded file (multipart ``file``, optional ``format`` and ``fs``) or JSON samples.

    ``explain`` (default: setting ECG_EXPLAIN) adds occlusion importances; ``model`` restricts to one model.
    """
    models = request.app.state.watcher.current  # this request's snapshot, whatever reloads meanwhile
    if not models:
        raise ClassificationError(503, "no active model: register and promote a model version (ecg models seed)")
    given = await read_classify_input(request, get_settings().max_upload_bytes)
    started = time.perf_counter()
    explain = get_settings().explain if explain is None else explain
    loop = asyncio.get_running_loop()
    prepared = await loop.run_in_executor(request.app.state.cpu_pool, _prepare, given, models, explain, model)
    t = time.perf_counter()
    batcher: MicroBatcher = request.app.state.batcher
    outputs = await asyncio.gather(*(batcher.run(run.model, run.inputs) for run in prepared.runs))
    answer = build_response(prepared, list(outputs), (time.perf_counter() - t) * 1000, started)
    LATENCY.observe(time.perf_counter() - started)
    REQUESTS.labels("200").inc()
    # Serialised by pydantic-core directly: the model is already validated, FastAPI need not do it again.
    return Response(answer.model_dump_json(), media_type="application/json")
