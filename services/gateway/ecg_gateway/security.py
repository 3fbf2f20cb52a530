"""API key checks: state-changing endpoints need ``X-API-Key`` equal to ECG_API_KEY.

Without a configured key those endpoints are refused (503, "not configured") rather than left open. Classify is
open unless ECG_CLASSIFY_REQUIRES_KEY is true. The key is compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Security, status
from fastapi.security import APIKeyHeader

from ecg_shared.settings import get_settings

API_KEY_HEADER = "X-API-Key"
_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="The gateway's API key (ECG_API_KEY); needed to change state."
)


def check_api_key(given: str | None) -> None:
    configured = get_settings().api_key
    if configured is None or not configured.get_secret_value():
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "this endpoint is disabled: the gateway has no API key configured (set ECG_API_KEY)",
        )
    if not given:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"missing API key: send it in the {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )
    if not secrets.compare_digest(given.encode(), configured.get_secret_value().encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"wrong API key in the {API_KEY_HEADER} header")


# The dependencies are coroutines: FastAPI runs a plain function dependency on its thread pool, two hand-offs per
# dependency per request, which cost the gateway more CPU than these checks themselves.
async def require_api_key(given: str | None = Security(_api_key_header)) -> None:
    """Dependency for endpoints that change state (jobs, promotion)."""
    check_api_key(given)


async def classify_access(given: str | None = Security(_api_key_header)) -> None:
    """Dependency for classify: open, or keyed when ECG_CLASSIFY_REQUIRES_KEY is true."""
    if get_settings().classify_requires_key:
        check_api_key(given)


async def given_api_key(given: str | None = Security(_api_key_header)) -> str | None:
    """The key sent, unchecked: for endpoints where only some uses need it (``/classify?keep=true``)."""
    return given
