"""``POST /classify``: forwarded unchanged to the inference service; the page's trace is added on request."""

from __future__ import annotations

import asyncio
import io
import logging
import math

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from ecg_gateway.errors import COMMON_ERRORS, KEYED_ERRORS, error_responses
from ecg_gateway.plotting import plot_trace
from ecg_gateway.security import classify_access
from ecg_gateway.uploads import ClassifyBody, read_classify_body
from ecg_shared.formats import EcgFormatError, read_ecg
from ecg_shared.schemas import ClassifyResponse, classify_openapi_request_body

log = logging.getLogger(__name__)
router = APIRouter(tags=["classify"])


def _trace_for(upload: ClassifyBody, hints: dict[str, str]) -> dict | None:
    """The recording as the page draws it, or None when the gateway cannot read or draw it. The inference service
    validates the same upload meanwhile and says why it refuses one; a trace is only added to an answer it accepted.
    """
    if upload.data is None:
        return None
    kwargs: dict = {}
    if hints.get("fs"):
        try:
            kwargs["fs"] = float(hints["fs"])
        except ValueError:
            return None
        if not math.isfinite(kwargs["fs"]) or kwargs["fs"] <= 0:
            return None
    try:
        named = io.BytesIO(upload.data)
        named.name = upload.filename  # read_ecg detects by content and name
        record = read_ecg(named, format=hints.get("format") or None, **kwargs)
        return plot_trace(record)
    except EcgFormatError:
        return None
    except Exception:  # a recording the readers take but the display filter cannot (fs=1, fs=2**31): no trace
        log.warning("no display trace for %r", upload.filename, exc_info=True)
        return None


@router.post(
    "/classify",
    dependencies=[Depends(classify_access)],
    openapi_extra={"requestBody": classify_openapi_request_body()},
    responses={
        200: {"model": ClassifyResponse},
        **error_responses(*COMMON_ERRORS, *KEYED_ERRORS, 404, 413, 415),
    },
    summary="Classify an ECG file (forwarded to the inference service)",
)
async def classify(
    request: Request,
    trace: bool = Query(False, description="Add the recording's display trace (filtered, decimated) for plotting"),
) -> Response:
    """Same contract as the inference service's ``POST /classify`` (a multipart ``file`` with optional ``format``
    and ``fs`` fields, or JSON samples; query ``explain``, ``model``): its answer and status are passed through.

    Uploads over ECG_MAX_UPLOAD_BYTES are refused with 413 before being read whole. With ``trace=true`` the answer
    gains ``trace``: ``{sampling_rate, duration_s, units, lead_names, leads: {name: [mV...]}}``.
    """
    upload = await read_classify_body(request)
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "trace"]
    forwarded = request.app.state.inference.request(
        "POST",
        "/classify",
        content=upload.body,
        headers={"content-type": upload.content_type},
        params=params,
    )
    if not trace:
        response = await forwarded
        if response.headers.get("content-type", "").startswith("application/json"):
            # Passed through as the bytes it came: parsing and re-serialising the answer would only cost CPU.
            return Response(response.content, status_code=response.status_code, media_type="application/json")
        drawn = None
    else:
        hints = upload.fields
        response, drawn = await asyncio.gather(forwarded, run_in_threadpool(_trace_for, upload, hints))
    try:
        payload = response.json()
    except ValueError:
        payload = {"detail": f"the inference service answered HTTP {response.status_code} without JSON"}
    if response.is_success and drawn is not None and isinstance(payload, dict):
        payload["trace"] = drawn
    return JSONResponse(payload, status_code=response.status_code)
