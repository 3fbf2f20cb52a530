"""``/healthz`` (the process answers), ``/readyz`` (Postgres and Redis reachable, the inference service ready: at
least one model loaded), ``/metrics``."""

from __future__ import annotations

import asyncio

import redis
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from ecg_gateway.metrics import metrics_response
from ecg_shared.db import get_engine
from ecg_shared.settings import get_settings

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The gateway process is alive")
def healthz() -> dict:
    return {"status": "ok"}


def _postgres_ok() -> str | None:
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        return f"Postgres unreachable: {type(exc).__name__}"
    return None


def _redis_ok() -> str | None:
    try:
        client = redis.Redis.from_url(get_settings().redis_url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:
        return f"Redis unreachable: {type(exc).__name__}"
    return None


@router.get(
    "/readyz",
    summary="Ready: Postgres and Redis reachable, the inference service ready (a model loaded); 503 names what is not",
    responses={503: {"description": "Not ready: `checks` names each dependency that is not `ok`, and why"}},
)
async def readyz(request: Request) -> JSONResponse:
    inference = request.app.state.inference  # before any check starts, so none is left unawaited if it is missing
    postgres, redis_problem, inference_problem = await asyncio.gather(
        run_in_threadpool(_postgres_ok), run_in_threadpool(_redis_ok), inference.readiness_problem()
    )
    checks = {"postgres": postgres or "ok", "redis": redis_problem or "ok", "inference": inference_problem or "ok"}
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
def metrics():
    return metrics_response()
