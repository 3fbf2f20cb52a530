"""Reading an upload without trusting its size: the limit is checked before and while the body streams in."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request, status
from starlette.datastructures import UploadFile

from ecg_shared.settings import get_settings

# Room for the multipart framing (boundaries, part headers, small form fields) on top of the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


@dataclass
class Upload:
    body: bytes               # the whole request body, to forward unchanged
    content_type: str         # with its multipart boundary
    filename: str
    data: bytes               # the uploaded file's content
    fields: dict[str, str]    # the other form fields (format, fs, ...)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                         f"upload too large: the limit is {limit} bytes ({limit / 1048576:.1f} MiB)")


async def read_body_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing with 413 by Content-Length up front, or as soon as the stream passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "invalid Content-Length header")
        if int(declared) > limit:
            raise _too_large(limit - MULTIPART_OVERHEAD_BYTES)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit - MULTIPART_OVERHEAD_BYTES)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_ecg_upload(request: Request) -> Upload:
    """Check type and size, then parse the multipart body; the file is the form's one file field."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            "send the ECG file as multipart/form-data (a form with a 'file' field)")
    max_file = get_settings().max_upload_bytes
    body = await read_body_limited(request, max_file + MULTIPART_OVERHEAD_BYTES)
    request._body = body  # Starlette's form parser reads a cached body instead of the (consumed) stream
    try:
        form = await request.form()
    except Exception as exc:  # malformed multipart framing
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"malformed multipart form: {exc}") from None
    files = [value for value in form.values() if isinstance(value, UploadFile)]
    if len(files) != 1:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f"the form must hold exactly one file (field 'file'); it holds {len(files)}")
    data = await files[0].read()
    if len(data) > max_file:
        raise _too_large(max_file)
    if not data:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"the uploaded file {files[0].filename!r} is empty")
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    return Upload(body, content_type, files[0].filename or "upload", data, fields)
