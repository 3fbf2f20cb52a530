"""``POST /classify``: forwarded unchanged to the inference service; the page's trace is added on request."""

from __future__ import annotations

import asyncio
import io
import logging
import math

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from ecg_gateway.errors import COMMON_ERRORS, KEYED_ERRORS, error_responses
from ecg_gateway.plotting import plot_trace
from ecg_gateway.security import check_api_key, classify_access, given_api_key
from ecg_gateway.uploads import ClassifyBody, read_classify_body
from ecg_shared.db import session_scope
from ecg_shared.formats import EcgFormatError, Record, read_ecg
from ecg_shared.reviews import keep_classification
from ecg_shared.schemas import ClassifyJsonRequest, ClassifyResponse, classify_openapi_request_body

log = logging.getLogger(__name__)
router = APIRouter(tags=["classify"])


def _read_record(upload: ClassifyBody, hints: dict[str, str]) -> Record | None:
    """The uploaded recording as the gateway reads it (from a parsed body), or None when it cannot (inference then
    says why)."""
    if upload.data is None:
        return _json_record(upload.body)
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
        return read_ecg(named, format=hints.get("format") or None, **kwargs)
    except EcgFormatError:
        return None


def _json_record(body: bytes) -> Record | None:
    try:
        request = ClassifyJsonRequest.model_validate_json(body)
        samples = np.asarray(request.samples, dtype=np.float32)
        samples = samples[:, None] if samples.ndim == 1 else samples
        return Record(samples, request.sampling_rate, list(request.leads), {"format": "json"})
    except (ValueError, EcgFormatError):
        return None


def _trace_for(upload: ClassifyBody, hints: dict[str, str]) -> dict | None:
    """The recording as the page draws it, or None when the gateway cannot read or draw it. The inference service
    validates the same upload meanwhile and says why it refuses one; a trace is only added to an answer it accepted.
    """
    record = _read_record(upload, hints)
    if record is None or upload.data is None:
        return None
    try:
        return plot_trace(record)
    except Exception:  # a recording the readers take but the display filter cannot (fs=1, fs=2**31): no trace
        log.warning("no display trace for this %s upload", record.format, exc_info=True)  # not its name (a patient's?)
        return None


def _keep(upload: ClassifyBody, answer: dict) -> dict:
    """Store the recording (de-identified) and the answer for review; what the answer's ``kept`` says."""
    record = _read_record(upload, upload.fields)
    if record is None:
        return {"recording_id": None, "classification_id": None, "problem": "the gateway could not read the file"}
    content = upload.data if upload.data is not None else upload.body
    with session_scope() as session:
        recording_id, classification_id = keep_classification(session, record, content, answer)
    return {"recording_id": recording_id, "classification_id": classification_id, "problem": None}


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
    keep: bool = Query(
        False,
        description="Keep the recording (de-identified, in dataset 'reviewed') and this answer for clinicians to "
        "review; needs the X-API-Key header. The answer then carries `kept`: its recording and classification ids",
    ),
    api_key: str | None = Depends(given_api_key),
) -> Response:
    """Same contract as the inference service's ``POST /classify`` (a multipart ``file`` with optional ``format``
    and ``fs`` fields, or JSON samples; query ``explain``, ``model``): its answer and status are passed through.

    Uploads over ECG_MAX_UPLOAD_BYTES are refused with 413 before being read whole. With ``trace=true`` the answer
    gains ``trace``: ``{sampling_rate, duration_s, units, lead_names, leads: {name: [mV...]}}``. With ``keep=true``
    (API key) a successful answer is kept with its recording for review and gains ``kept``: ``{recording_id,
    classification_id, problem}`` (``problem`` says why nothing was kept, e.g. a file only inference could read).
    The recording is kept without the file's name or any header field about the person (see docs/gateway.md).
    """
    if keep:
        check_api_key(api_key)
    upload = await read_classify_body(request, parse=trace or keep)
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("trace", "keep")]
    forwarded = request.app.state.inference.request(
        "POST",
        "/classify",
        content=upload.body,
        headers={"content-type": upload.content_type},
        params=params,
    )
    if not trace and not keep:
        response = await forwarded
        if response.headers.get("content-type", "").startswith("application/json"):
            # Passed through as the bytes it came: parsing and re-serialising the answer would only cost CPU.
            return Response(response.content, status_code=response.status_code, media_type="application/json")
        drawn = None
    elif trace:
        response, drawn = await asyncio.gather(forwarded, run_in_threadpool(_trace_for, upload, upload.fields))
    else:
        response, drawn = await forwarded, None
    try:
        payload = response.json()
    except ValueError:
        payload = {"detail": f"the inference service answered HTTP {response.status_code} without JSON"}
    if response.is_success and drawn is not None and isinstance(payload, dict):
        payload["trace"] = drawn
    if keep and response.is_success and isinstance(payload, dict):
        payload["kept"] = await run_in_threadpool(_keep, upload, payload)
    return JSONResponse(payload, status_code=response.status_code)
