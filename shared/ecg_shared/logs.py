"""Logging of the services: one format carrying the request id, and the Azure SDK's per-request lines kept out.

Every HTTP request gets an id: the client's ``X-Request-ID`` when it sends a sane one (up to 128 letters, digits and
``._-``), else a fresh one. :class:`RequestIdMiddleware` (the gateway and the inference service) keeps it for the
request's log lines and sends it back in the answer's ``X-Request-ID`` header; the gateway passes it on to the
inference service, so both services' lines about one request carry the same id.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "X-Request-ID"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
# The Azure SDK logs every request's and answer's headers at INFO from this logger.
AZURE_HTTP_LOGGER = "azure.core.pipeline.policies.http_logging_policy"

_request_id: ContextVar[str] = ContextVar("request_id", default="-")
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def current_request_id() -> str:
    """The id of the request being served in this context, or ``-`` outside one."""
    return _request_id.get()


class RequestIdFilter(logging.Filter):
    """Give every record a ``request_id`` attribute (``-`` outside a request), for :data:`LOG_FORMAT`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


def quiet_azure_http_logs() -> None:
    """The Azure SDK's request and response header dumps only at WARNING and above."""
    logging.getLogger(AZURE_HTTP_LOGGER).setLevel(logging.WARNING)


def configure_service_logging(level: str | int) -> None:
    """Root logging for an HTTP service: :data:`LOG_FORMAT` with the request id, uvicorn's access lines included,
    and the Azure SDK's HTTP logging quieted."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
    formatter = logging.Formatter(LOG_FORMAT)
    for logger in (logging.getLogger(), logging.getLogger("uvicorn.access")):
        for handler in logger.handlers:
            if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
                handler.addFilter(RequestIdFilter())
            if logger.name == "uvicorn.access":
                handler.setFormatter(formatter)
    quiet_azure_http_logs()


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's request id if it sent a sane one, else a new one."""
    for name, value in headers:
        if name.lower() == REQUEST_ID_HEADER.lower().encode():
            given = value.decode("latin-1")
            if _SANE_ID.fullmatch(given):
                return given
            break
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """ASGI middleware: the request's id for its log lines (a context variable) and in the answer's header."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope.get("headers", []))
        token = _request_id.set(request_id)

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)
