"""Reading a ``POST /classify`` body: a multipart upload or JSON samples, with the size limit enforced while the
body streams in (``Content-Length`` is checked first; a chunked body is counted chunk by chunk), so a 200 MB upload
is refused with 413 after at most the limit has been read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Request
from pydantic import ValidationError
from starlette.formparsers import MultiPartException, MultiPartParser

from ecg_inference.classify import ClassificationError, read_upload, record_from_json
from ecg_shared.formats import FORMATS, Record
from ecg_shared.schemas import ClassifyJsonRequest

FORM_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries and the small form fields beside the file


@dataclass
class ClassifyInput:
    """The body as received; :meth:`to_record` (CPU work) runs off the event loop."""

    data: bytes
    filename: str | None = None
    format: str | None = None
    fs: float | None = None
    is_json: bool = False

    def to_record(self) -> Record:
        if not self.is_json:
            return read_upload(self.data, self.filename, self.format, self.fs)
        try:
            request = ClassifyJsonRequest.model_validate_json(self.data)
        except ValidationError as exc:
            raise ClassificationError(422, f"invalid JSON body: {describe_validation_error(exc)}") from None
        return record_from_json(request)


def describe_validation_error(exc: ValidationError, limit: int = 5) -> str:
    """``field.path: message`` for the first few problems, without echoing the (possibly huge) input."""
    parts = []
    for error in exc.errors(include_url=False)[:limit]:
        loc = ".".join(str(p) for p in error["loc"] if not (isinstance(p, str) and "[" in p)) or "body"
        parts.append(f"{loc}: {error['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _too_large(limit: int) -> ClassificationError:
    return ClassificationError(413, f"upload too large: the limit is {limit} bytes (setting ECG_MAX_UPLOAD_BYTES)")


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        yield chunk


async def read_classify_input(request: Request, limit: int) -> ClassifyInput:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body_limit = limit + (FORM_OVERHEAD_BYTES if content_type == "multipart/form-data" else 0)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > body_limit:
        raise _too_large(limit)
    if content_type == "application/json":
        data = b"".join([chunk async for chunk in _limited(request, body_limit)])
        if not data:
            raise ClassificationError(422, "the JSON body is empty")
        return ClassifyInput(data, is_json=True)
    if content_type != "multipart/form-data":
        raise ClassificationError(
            415,
            f"unsupported content type {content_type or 'none'!r}: send multipart/form-data "
            "with a 'file' field, or application/json samples",
        )
    parser = MultiPartParser(request.headers, _limited(request, body_limit), max_files=1, max_fields=10)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ClassificationError(400, f"malformed multipart body: {exc.message}") from None
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ClassificationError(422, "multipart field 'file' (the ECG file) is missing")
        data = await upload.read()
        if len(data) > limit:
            raise _too_large(limit)
        fs = _number(form.get("fs"), "fs")
        fmt = form.get("format") or None
        if fmt is not None and (not isinstance(fmt, str) or fmt not in FORMATS):
            raise ClassificationError(422, f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return ClassifyInput(data, upload.filename, fmt, fs)
    finally:
        await form.close()


def _number(value, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ClassificationError(422, f"{name} must be a number, got {str(value)[:40]!r}") from None
    if not number > 0 or number == float("inf"):
        raise ClassificationError(422, f"{name} must be a positive number, got {value}")
    return number
