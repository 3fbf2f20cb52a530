"""The inference service: ``POST /classify`` on onnxruntime, with health, readiness and Prometheus metrics.

Run: ``python -m ecg_inference --host 0.0.0.0 --port 8001`` (``ECG_INFERENCE_WORKERS`` processes of this app; see
``__main__.py``). See docs/inference.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from starlette.requests import ClientDisconnect

from ecg_inference.batcher import MicroBatcher
from ecg_inference.classify import ClassificationError, chosen_models, classify_submitting
from ecg_inference.drift import record_answer
from ecg_inference.gate import GateRequest, GateResult, gate_registered
from ecg_inference.request_body import read_classify_input
from ecg_inference.watcher import ModelWatcher
from ecg_shared.logs import RequestIdMiddleware, configure_service_logging
from ecg_shared.schemas import ClassifyResponse, classify_openapi_request_body, validation_problems
from ecg_shared.settings import get_settings

log = logging.getLogger("ecg_inference")

REQUESTS = Counter("ecg_inference_requests_total", "Classification requests", ["status"])
LATENCY = Histogram(
    "ecg_inference_request_seconds",
    "Classification latency, body received to answer ready",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
)


def _warm_up() -> None:
    """Import neurokit2 and sleepecg and run their detectors once (about a second) before this worker's first
    request, not in it."""
    from ecg_shared.beats import beat_features
    from ecg_shared.heart import detect_rpeaks

    t = np.arange(0, 5, 1 / 250)
    detect_rpeaks(np.sin(2 * np.pi * 1.2 * t) ** 15, 250)
    beat_features(np.sin(2 * np.pi * 1.2 * t) ** 15, 250)


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = get_settings()
    configure_service_logging(settings.log_level)
    app.state.watcher = ModelWatcher()
    app.state.batcher = MicroBatcher(settings.batch_wait_ms)
    # Long recordings are prepared here, one at a time, so that they leave the event loop to short requests.
    app.state.long_lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="long-recordings")
    await asyncio.gather(app.state.watcher.start(), asyncio.to_thread(_warm_up))
    yield
    await app.state.watcher.stop()
    app.state.batcher.close()
    app.state.long_lane.shutdown(wait=False, cancel_futures=True)


app = FastAPI(title="ECG inference", version="1.0", lifespan=lifespan)
app.add_middleware(RequestIdMiddleware)


@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with the list of problems, as the gateway answers it: without the submitted values."""
    REQUESTS.labels("422").inc()
    return JSONResponse({"detail": validation_problems(exc.errors())}, status_code=422)


@app.exception_handler(ClassificationError)
async def classification_error(request: Request, exc: ClassificationError) -> JSONResponse:
    REQUESTS.labels(str(exc.status)).inc()
    return JSONResponse({"detail": exc.message}, status_code=exc.status)


@app.exception_handler(ClientDisconnect)
async def client_disconnected(request: Request, exc: ClientDisconnect) -> Response:
    """The client went away before its body arrived: not an error of this service; counted as 499."""
    log.info("client disconnected before its request was read")
    REQUESTS.labels("499").inc()
    return Response(status_code=499)


@app.exception_handler(Exception)
async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """Last resort: a bug, logged with its traceback; the client learns nothing internal."""
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    REQUESTS.labels("500").inc()
    return JSONResponse({"detail": "internal error; see the inference service log"}, status_code=500)


@app.get("/healthz")
async def healthz(request: Request) -> dict:
    """Alive, with the models this worker process serves and the execution providers their sessions really use."""
    models = request.app.state.watcher.current
    return {
        "status": "ok",
        "pid": os.getpid(),  # which worker process answered
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
    """This process's metrics, or with several worker processes (``python -m ecg_inference``) all of theirs."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@app.get("/models")
async def list_models(request: Request) -> list[dict]:
    return request.app.state.watcher.current.describe()


@app.post("/classify", response_model=ClassifyResponse, openapi_extra={"requestBody": classify_openapi_request_body()})
async def classify(request: Request, explain: bool | None = None, model: str | None = None) -> Response:
    """Classify an uploaded file (multipart ``file``, optional ``format`` and ``fs``) or JSON samples.

    ``explain`` (default: setting ECG_EXPLAIN) adds occlusion importances; ``model`` restricts to one model.
    """
    settings = get_settings()
    models = request.app.state.watcher.current  # this request's snapshot, whatever reloads meanwhile
    chosen = chosen_models(models, model)  # 503 without models, 404 for an unknown ?model=
    given = await read_classify_input(request, settings.max_upload_bytes)
    started = time.perf_counter()
    explaining = settings.explain if explain is None else explain
    # Reading and preparing run here, on the event loop, on purpose: they are Python holding the GIL wherever they
    # run, and the process is one core's worth of work (the service scales with processes). On a thread, handing
    # off to it cost 10-20% of throughput at concurrency 32 (docs/inference.md). onnxruntime, which releases the
    # GIL, runs on the batcher's threads meanwhile: each model's call starts as soon as its inputs are ready.
    # A long recording is the exception: prepared on the long-recordings thread (one at a time), it leaves the loop
    # free to answer short requests meanwhile (their onnxruntime calls also go first: see batcher.py).
    record = given.to_record()
    read_ms = (time.perf_counter() - started) * 1000
    batcher: MicroBatcher = request.app.state.batcher
    long_lane = request.app.state.long_lane if record.duration_s > settings.long_recording_s else None
    answer = await classify_submitting(record, chosen, explaining, batcher.submit, read_ms, started, long_lane)
    LATENCY.observe(time.perf_counter() - started)
    REQUESTS.labels("200").inc()
    record_answer(answer)
    # Serialised by pydantic-core directly: the model is already validated, FastAPI need not do it again.
    return Response(answer.model_dump_json(), media_type="application/json")


@app.post("/gate", response_model=GateResult)
async def promotion_gate(request: GateRequest) -> GateResult:
    """Score a registered version and the active one on the same evaluation data (``ecg_inference.gate``); the
    gateway asks before promoting. Runs on a thread: the evaluation takes seconds, other requests go on."""
    from ecg_shared.db import session_scope
    from ecg_shared.registry import RegistryError

    def run() -> GateResult:
        with session_scope() as session:
            return gate_registered(session, request)

    try:
        return await asyncio.to_thread(run)
    except RegistryError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=404)
