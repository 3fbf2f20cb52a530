"""Reading a classify body without trusting its size: the limit is checked before and while the body streams in.

Accepted as the inference service accepts them: multipart/form-data with a ``file`` field (plus optional ``format``
and ``fs`` fields), or application/json samples. The body is kept as received, to be forwarded unchanged. The
multipart form is parsed only where the gateway itself needs the file (a trace, a kept recording, the report);
otherwise the inference service, which parses it anyway, checks it and names what is wrong (400, 413, 422), and its
answer passes through.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import HTTPException, Request, status
from starlette.datastructures import UploadFile

from ecg_shared.settings import get_settings

# Room for the multipart framing (boundaries, part headers, small form fields) on top of the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


@dataclass
class ClassifyBody:
    body: bytes  # the whole request body, forwarded unchanged
    content_type: str  # as received (with the multipart boundary)
    filename: str | None = None  # parsed multipart only: the uploaded file
    data: bytes | None = None
    fields: dict[str, str] = field(default_factory=dict)  # multipart only: the other form fields (format, fs)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        f"upload too large: the limit is {limit} bytes ({limit / 1048576:.1f} MiB, setting ECG_MAX_UPLOAD_BYTES)",
    )


async def read_body_limited(request: Request, body_limit: int, file_limit: int) -> bytes:
    """The request body, refused with 413 by Content-Length up front, or as soon as the stream passes the limit."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "invalid Content-Length header")
        if int(declared) > body_limit:
            raise _too_large(file_limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > body_limit:
            raise _too_large(file_limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_classify_body(request: Request, parse: bool = True) -> ClassifyBody:
    """The body within the limits (413), of an accepted content type (415); with ``parse`` (or a multipart body
    longer than the file limit, whose file may be over it), a multipart body's form too (400 malformed, 422 without
    a non-empty ``file``, 413 for the file)."""
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";")[0].strip().lower()
    limit = get_settings().max_upload_bytes
    if kind == "application/json":
        body = await read_body_limited(request, limit, limit)
        if not body:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the JSON body is empty")
        return ClassifyBody(body, content_type)
    if kind != "multipart/form-data":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"unsupported content type {kind or 'none'!r}: send multipart/form-data with a 'file' "
            "field, or application/json samples",
        )
    body = await read_body_limited(request, limit + MULTIPART_OVERHEAD_BYTES, limit)
    if not parse and len(body) <= limit:  # a file within such a body is within the limit too
        return ClassifyBody(body, content_type)
    request._body = body  # Starlette's form parser then reads this instead of the consumed stream
    try:
        form = await request.form(max_files=1, max_fields=10)
    except Exception as exc:  # malformed framing, too many parts
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"malformed multipart body: {exc}") from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "multipart field 'file' (the ECG file) is missing")
    data = await upload.read()
    if len(data) > limit:
        raise _too_large(limit)
    if not data:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the uploaded file is empty")
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    return ClassifyBody(body, content_type, upload.filename or "upload", data, fields)
