"""The gateway's client for the inference service: bounded timeouts, failures turned into clear 503s."""

from __future__ import annotations

import httpx
from fastapi import HTTPException, status

from ecg_gateway.metrics import DOWNSTREAM_FAILURES
from ecg_shared.logs import REQUEST_ID_HEADER, current_request_id
from ecg_shared.settings import get_settings


class InferenceClient:
    def __init__(self, base_url: str | None = None, transport: httpx.AsyncBaseTransport | None = None) -> None:
        settings = get_settings()
        self.base_url = (base_url or settings.inference_url).rstrip("/")
        timeout = httpx.Timeout(settings.inference_timeout_s, connect=settings.inference_connect_timeout_s)
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)

    async def close(self) -> None:
        await self._client.aclose()

    async def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        """Send one request (with this request's ``X-Request-ID``); a service that is down, slow or broken gives an
        HTTPException 503 naming it."""
        kwargs["headers"] = {**kwargs.get("headers", {}), REQUEST_ID_HEADER: current_request_id()}
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            DOWNSTREAM_FAILURES.labels("inference", "timeout").inc()
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "the inference service did not answer in time; try again shortly"
            ) from None
        except httpx.TransportError:
            DOWNSTREAM_FAILURES.labels("inference", "unreachable").inc()
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "the inference service is unavailable (cannot connect); try again shortly",
            ) from None
        if response.status_code >= 500:
            DOWNSTREAM_FAILURES.labels("inference", f"http_{response.status_code}").inc()
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"the inference service failed ({_detail(response)}); try again shortly",
            )
        return response

    async def readiness_problem(self) -> str | None:
        """None when the service is ready (reachable, with at least one model loaded), else what is wrong."""
        try:
            response = await self._client.get("/readyz", timeout=2.0)
        except httpx.HTTPError:
            return "inference service unreachable"
        if response.status_code == 200:
            return None
        try:
            problems = response.json().get("problems") or []
        except (ValueError, AttributeError):
            problems = []
        return "inference service not ready: " + ("; ".join(map(str, problems)) or f"HTTP {response.status_code}")


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return str(detail) if detail else f"HTTP {response.status_code}"
