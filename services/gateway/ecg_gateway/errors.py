"""How the gateway answers what goes wrong: always ``{"detail": ...}`` (:class:`ErrorAnswer`), a 4xx for bad input
(never a 500), no submitted value echoed (it may be a secret), and a client that went away counted as such.

- A request that does not match the schema: 422 with the list of problems, each without its input.
- A NUL character in the path or query string: 400 (Postgres cannot store or compare one).
- A value the database refuses (a NUL inside a JSON string, a number beyond its column): 422.
- The database down: 503. A client that disconnected before its body arrived: logged at INFO, answered (to nobody)
  and counted as 499, nginx's "client closed request".
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, OperationalError
from starlette.requests import ClientDisconnect

from ecg_shared.schemas import ErrorAnswer, validation_problems

log = logging.getLogger("ecg_gateway")

CLIENT_CLOSED_REQUEST = 499
INT64_MAX = 2**63 - 1  # BIGINT columns: ids, offsets
INT32_MAX = 2**31 - 1  # INTEGER columns: model version numbers

_DESCRIPTIONS = {
    400: "Malformed request (a NUL character in the path or query string, a broken multipart body)",
    401: "The X-API-Key header is missing",
    403: "The X-API-Key header is wrong",
    404: "Not found",
    409: "The job is not in a state that allows this",
    413: "The upload is larger than ECG_MAX_UPLOAD_BYTES",
    415: "Unsupported content type",
    422: "The request does not match the schema (detail: the list of problems), or its content cannot be used "
    "(detail: why)",
    503: "A service this one needs is unavailable (database, job queue, inference service), or the endpoint is not "
    "configured (no ECG_API_KEY)",
}
# Every route can meet these: bad path or query characters, a schema mismatch, the database down.
COMMON_ERRORS = (400, 422, 503)
KEYED_ERRORS = (401, 403)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these status codes, each with the :class:`ErrorAnswer` shape."""
    return {code: {"model": ErrorAnswer, "description": _DESCRIPTIONS[code]} for code in codes}


def _has_nul(scope) -> bool:
    return "\x00" in scope["path"] or "\x00" in unquote(scope.get("query_string", b"").decode("latin-1"))


class RefuseNulBytes:
    """ASGI middleware: a path or query string holding a NUL character (``%00``) is answered 400 before routing."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and _has_nul(scope):
            answer = JSONResponse({"detail": "the path or query string holds a NUL character (%00)"}, status_code=400)
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_problems(exc.errors())}, status_code=422)

    @app.exception_handler(ClientDisconnect)
    async def client_disconnected(request: Request, exc: ClientDisconnect) -> Response:
        log.info("client disconnected before its request was read: %s %s", request.method, request.url.path)
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(OperationalError)
    async def database_unavailable(request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable on %s %s: %s", request.method, request.url.path, exc.orig)
        return JSONResponse({"detail": "the database is unavailable; try again shortly"}, status_code=503)

    @app.exception_handler(DataError)
    async def value_refused_by_the_database(request: Request, exc: DataError) -> JSONResponse:
        log.warning("database refused a value on %s %s: %s", request.method, request.url.path, type(exc.orig).__name__)
        return JSONResponse(
            {
                "detail": "the request holds a value the database cannot store: a NUL character (\\u0000) in a "
                "text, or a number beyond its range"
            },
            status_code=422,
        )

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error in the gateway; it has been logged"}, status_code=500)
