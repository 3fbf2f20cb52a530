"""The gateway's client for the inference service: bounded timeouts, failures turned into clear 503s.

On aiohttp, whose C HTTP parser and lean request path cost about 0.2 ms of CPU per forwarded 80 KB upload where
httpx took 1.2-1.4 ms (measured on this machine against one uvicorn answer): the gateway and inference share the
CPUs, so what the gateway spends on forwarding, inference loses.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from fastapi import HTTPException, status

from ecg_gateway.metrics import DOWNSTREAM_FAILURES
from ecg_shared.logs import REQUEST_ID_HEADER, current_request_id
from ecg_shared.settings import get_settings


@dataclass
class InferenceResponse:
    """The inference service's answer, read whole (its answers are small JSON documents)."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The parsed body; ValueError when it is not JSON."""
        return jsonlib.loads(self.content)


class InferenceClient:
    def __init__(self, base_url: str | None = None) -> None:
        settings = get_settings()
        self.base_url = (base_url or settings.inference_url).rstrip("/")
        self._connect_timeout_s = settings.inference_connect_timeout_s
        self._timeout_s = settings.inference_timeout_s
        self._session: aiohttp.ClientSession | None = None

    def _timeout(self, read_s: float) -> aiohttp.ClientTimeout:
        # connect: getting a pooled connection or opening one; sock_read: the longest wait for the answer's bytes.
        return aiohttp.ClientTimeout(
            total=None, connect=self._connect_timeout_s, sock_connect=self._connect_timeout_s, sock_read=read_s
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # created on the running loop, at the first request
            self._session = aiohttp.ClientSession(
                self.base_url,
                timeout=self._timeout(self._timeout_s),
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                auto_decompress=False,  # answers pass through as they came
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        json: Any = None,
        data: aiohttp.FormData | None = None,
        headers: Mapping[str, str] | None = None,
        params: Any = None,
        timeout_s: float | None = None,
    ) -> InferenceResponse:
        """Send one request (with this request's ``X-Request-ID``); a service that is down, slow or broken gives an
        HTTPException 503 naming it."""
        headers = {**(headers or {}), REQUEST_ID_HEADER: current_request_id()}
        if json is not None:
            content = jsonlib.dumps(json).encode()
            headers.setdefault("content-type", "application/json")
        timeout = self._timeout(timeout_s) if timeout_s is not None else None
        try:
            async with self.session.request(
                method,
                path,
                data=content if data is None else data,
                headers=headers,
                params=params,
                **({"timeout": timeout} if timeout is not None else {}),
            ) as answer:
                response = InferenceResponse(answer.status, answer.headers, await answer.read())
        except TimeoutError:
            DOWNSTREAM_FAILURES.labels("inference", "timeout").inc()
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "the inference service did not answer in time; try again shortly"
            ) from None
        except aiohttp.ClientError:
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
            async with self.session.get("/readyz", timeout=self._timeout(2.0)) as answer:
                response = InferenceResponse(answer.status, answer.headers, await answer.read())
        except (aiohttp.ClientError, TimeoutError):
            return "inference service unreachable"
        if response.status_code == 200:
            return None
        try:
            problems = response.json().get("problems") or []
        except (ValueError, AttributeError):
            problems = []
        return "inference service not ready: " + ("; ".join(map(str, problems)) or f"HTTP {response.status_code}")


def _detail(response: InferenceResponse) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else f"HTTP {response.status_code}"
