"""Prometheus metrics of the gateway: request counts and latency per route, and downstream failures."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
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


def _route_template(scope) -> str:
    """The matched route's path template (``/api/recordings/{recording_id}``), so labels stay few."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class MetricsMiddleware:
    """ASGI middleware counting and timing each HTTP request by route and status. Plain ASGI rather than Starlette's
    BaseHTTPMiddleware, whose task group and memory streams per request cost the gateway more CPU than the rest of
    a forwarded request's own work."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            route = _route_template(scope)
            if route != "/metrics":
                LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)
                REQUESTS.labels(scope["method"], route, str(status)).inc()


def metrics_response() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
