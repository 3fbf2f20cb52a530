"""Prometheus metrics of the gateway: request counts and latency per route, and downstream failures."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response

REQUESTS = Counter("ecg_gateway_requests_total", "HTTP requests answered by the gateway", ["method", "route", "status"])
LATENCY = Histogram(
    "ecg_gateway_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
DOWNSTREAM_FAILURES = Counter(
    "ecg_gateway_downstream_failures_total",
    "Calls to another service that failed",
    ["service", "reason"],
)


def _route_template(request: Request) -> str:
    """The matched route's path template (``/api/recordings/{recording_id}``), so labels stay few."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class MetricsMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next):
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = _route_template(request)
            if route != "/metrics":
                LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
                REQUESTS.labels(request.method, route, str(status)).inc()


def metrics_response() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
