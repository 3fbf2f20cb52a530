"""``POST /classify/report``: classify an uploaded file and answer with the printable one-page PDF report.

The file goes to the inference service as ``POST /classify`` does; the gateway reads it too (concurrently) for the
signal to draw, and renders the page (``ecg_gateway.report``). The optional ``patient_name`` and ``patient_id`` form
fields are printed on the page and go nowhere else: not to the inference service, not to a log, not to a store.
"""

from __future__ import annotations

import asyncio
import io
import unicodedata
from datetime import UTC, datetime

import aiohttp
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from ecg_gateway.report import MAX_PATIENT_FIELD, Patient, render_report
from ecg_gateway.security import classify_access
from ecg_gateway.uploads import ClassifyBody, read_classify_body
from ecg_shared.formats import EcgFormatError, Record, read_ecg
from ecg_shared.schemas import ClassifyResponse, classify_openapi_request_body

router = APIRouter(tags=["classify"])
PATIENT_FIELDS = {"patient_name": "name", "patient_id": "id"}


def _request_body_schema() -> dict:
    """The classify upload's multipart form, plus the patient fields; no JSON variant (the page needs a file)."""
    body = classify_openapi_request_body()
    form = body["content"]["multipart/form-data"]
    form["schema"]["properties"].update(
        {
            "patient_name": {
                "type": "string",
                "maxLength": MAX_PATIENT_FIELD,
                "description": "printed on the report only; never stored, logged or forwarded",
            },
            "patient_id": {
                "type": "string",
                "maxLength": MAX_PATIENT_FIELD,
                "description": "printed on the report only; never stored, logged or forwarded",
            },
        }
    )
    return {"required": True, "content": {"multipart/form-data": form}}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"example": {"detail": "why, in words"}}}}


def patient_from_fields(fields: dict[str, str]) -> Patient:
    """The patient identifiers of the form, or 422 naming the field (never echoing its value)."""
    values = {}
    for field, attribute in PATIENT_FIELDS.items():
        value = fields.get(field, "").strip()
        if len(value) > MAX_PATIENT_FIELD:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"{field} is longer than {MAX_PATIENT_FIELD} characters"
            )
        if any(unicodedata.category(char).startswith("C") for char in value):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{field} contains control characters")
        values[attribute] = value or None
    return Patient(**values)


def _form(upload: ClassifyBody, hints: dict[str, str]) -> aiohttp.FormData:
    """The multipart form sent to the inference service: the file and the reading hints, not the patient fields."""
    form = aiohttp.FormData()
    form.add_field("file", upload.data, filename=upload.filename, content_type="application/octet-stream")
    for key, value in hints.items():
        form.add_field(key, value)
    return form


def _read_record(upload: ClassifyBody) -> Record | str:
    """The uploaded recording, or the reader's message when the gateway cannot read it."""
    kwargs: dict = {}
    if upload.fields.get("fs"):
        try:
            kwargs["fs"] = float(upload.fields["fs"])
        except ValueError:
            return f"fs must be a number, got {upload.fields['fs']!r}"
    named = io.BytesIO(upload.data or b"")
    named.name = upload.filename  # read_ecg detects by content and name
    try:
        return read_ecg(named, format=upload.fields.get("format") or None, **kwargs)
    except EcgFormatError as exc:
        return str(exc)


@router.post(
    "/classify/report",
    dependencies=[Depends(classify_access)],
    openapi_extra={"requestBody": _request_body_schema()},
    response_class=Response,
    responses={
        200: {
            "description": "the one-page PDF report (landscape A4, or Letter with ECG_REPORT_PAPER=letter)",
            "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
        },
        400: _error("malformed multipart body"),
        401: _error("ECG_CLASSIFY_REQUIRES_KEY is set and X-API-Key is missing"),
        403: _error("wrong X-API-Key"),
        404: _error("?model= names no active model"),
        413: _error("upload over ECG_MAX_UPLOAD_BYTES"),
        415: _error("not multipart/form-data (JSON samples are not accepted here)"),
        422: _error("no file, an empty or unreadable file, a bad format/fs hint, a patient field too long"),
        503: _error("the inference service is down, slow or failing"),
    },
    summary="Classify an ECG file and download the printable PDF report",
)
async def classify_report(
    request: Request,
    model: str | None = Query(None, description="only this model (as for POST /classify)"),
) -> Response:
    """Multipart ``file`` with optional ``format`` and ``fs`` (as for ``POST /classify``) and optional
    ``patient_name`` / ``patient_id``, printed only when given. The answer is ``application/pdf``: one landscape
    page (A4; Letter with ECG_REPORT_PAPER=letter) at 25 mm/s and 10 mm/mV on a 1 mm / 5 mm grid, with the
    calibration pulse; the 12 leads in the 3 x 4 layout plus a 10 s lead II rhythm strip (other recordings: 10 s
    strips); the verdict and each model's call; heart rate, PR, QRS, QT and QTc (Bazett); quality remarks, model
    versions, the date and time of the analysis. The inference service's own 4xx answers pass through as JSON."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "the report needs an uploaded file: send multipart/form-data with a 'file' field "
            "(JSON samples are accepted by POST /classify only)",
        )
    upload = await read_classify_body(request)
    patient = patient_from_fields(upload.fields)
    hints = {key: upload.fields[key] for key in ("format", "fs") if upload.fields.get(key)}
    forwarded = request.app.state.inference.request(
        "POST",
        "/classify",
        data=_form(upload, hints),  # the patient fields stay here
        params={"explain": "true", **({"model": model} if model else {})},  # the measurements behind each call
    )
    response, record = await asyncio.gather(forwarded, run_in_threadpool(_read_record, upload))
    analysed_at = datetime.now(UTC)
    if not response.is_success:
        try:
            payload = response.json()
        except ValueError:
            payload = {"detail": f"the inference service answered HTTP {response.status_code} without JSON"}
        return JSONResponse(payload, status_code=response.status_code)
    if isinstance(record, str):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"the gateway cannot read the file: {record}")
    try:
        answer = ClassifyResponse.model_validate_json(response.content)
    except ValidationError:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the inference service's answer does not match the API contract"
        ) from None
    pdf = await run_in_threadpool(render_report, record, answer, analysed_at, patient)
    filename = f"ecg-report-{analysed_at:%Y%m%d-%H%M%S}.pdf"  # not the upload's name, which may identify someone
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
