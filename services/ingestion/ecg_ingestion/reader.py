"""The ingestion job's reads from Blob Storage: listing a container and downloading blobs, as plain HTTP requests.

Why not the Azure SDK for these two: its async client spends about 1.3 ms of CPU per download in Python (a blob
client object per blob, a dozen pipeline policies, a response model with every property) and about 0.9 ms per blob
deserializing a listing, more than the rest of the job together. These are two GETs of the Blob service's REST API
(`List Blobs`, `Get Blob` with ``If-Match``) on one aiohttp session: about 0.2 ms per download and 0.01 ms per listed
blob (``bench/ingestion.py`` measures the job). The SDK does everything else (uploads, SAS generation, the sync
client).

Errors are raised as the SDK's exception types, carrying ``status_code`` and ``error_code`` as the SDK sets them, so
:func:`ecg_ingestion.storage.access_error` and :func:`~ecg_ingestion.storage.blob_error` read them as before.
Transient failures (connection errors, timeouts, 408, 429, 5xx) are retried on the SDK's schedule (``RETRY``).

The credential is a SAS query string appended to each URL: the job's SAS token, or one this process derives from a
connection string's account key (read and list on the container, an hour ahead, renewed while the job runs). It is
never logged, and no error message carries a URL.
"""

from __future__ import annotations

import asyncio
import random
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote, urlencode

import aiohttp
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from yarl import URL

from ecg_ingestion.plan import BlobInfo

API_VERSION = "2025-01-05"  # x-ms-version of every request (a version both Azure and Azurite serve)
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
LIST_PAGE = 5000  # blobs per List Blobs page (the service's maximum)
TIMEOUT = aiohttp.ClientTimeout(sock_connect=20, sock_read=60)  # the SDK's connection and read timeouts
DERIVED_SAS_LIFETIME = timedelta(hours=1)


def retry_waits(initial_backoff: float, increment_base: float, retry_total: int) -> list[float]:
    """Seconds to wait before each retry, as the SDK's ``ExponentialRetry`` with these options (and its ±3 s jitter)."""
    waits = [initial_backoff + (0 if n == 0 else increment_base**n) for n in range(retry_total)]
    return [random.uniform(max(0.0, w - 3), w + 3) for w in waits]


class BlobReader:
    """Lists and downloads the blobs of one container (``container_url``, no query) over ``session``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        container_url: str,
        sas: Callable[[], str],
        retry: dict,
        proxy: str | None = None,
    ) -> None:
        self.session, self.container_url, self._sas, self.retry, self.proxy = session, container_url, sas, retry, proxy

    async def list(self, prefix: str = "") -> dict[str, BlobInfo]:
        """Every blob whose name starts with ``prefix``, by name."""
        found: dict[str, BlobInfo] = {}
        marker = ""
        while True:
            query = {"restype": "container", "comp": "list", "maxresults": LIST_PAGE}
            if prefix:
                query["prefix"] = prefix
            if marker:
                query["marker"] = marker
            page = ET.fromstring(await self._get(f"{self.container_url}?{urlencode(query)}", {}))
            for blob in page.iter("Blob"):
                name_element = blob.find("Name")
                name = name_element.text or ""
                if name_element.get("Encoded") == "true":
                    name = unquote(name)
                size = blob.findtext("Properties/Content-Length")
                found[name] = BlobInfo(name, blob.findtext("Properties/Etag") or "", int(size) if size else None)
            marker = page.findtext("NextMarker") or ""
            if not marker:
                return found

    async def download(self, url: str, etag: str | None = None) -> bytes:
        """The blob at ``url`` (no query), as long as it still has ``etag`` when one is given."""
        return await self._get(f"{url}?", {"If-Match": etag} if etag else {})

    async def _get(self, url: str, headers: dict[str, str]) -> bytes:
        """GET ``url`` (which ends in ``?`` or a query) with the SAS, retried while the failure is transient."""
        headers = {"x-ms-version": API_VERSION, **headers}
        waits = retry_waits(**self.retry)
        for attempt in range(len(waits) + 1):
            last = attempt == len(waits)
            try:
                signed = URL(url + ("" if url.endswith("?") else "&") + self._sas(), encoded=True)
                async with self.session.get(signed, headers=headers, proxy=self.proxy, timeout=TIMEOUT) as response:
                    if response.status < 300:
                        return await response.read()
                    await response.read()
                    if last or response.status not in RETRY_STATUSES:
                        raise http_error(response.status, response.headers.get("x-ms-error-code"))
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
                if last:
                    raise _unreachable(exc) from None
            await asyncio.sleep(waits[attempt])
        raise AssertionError("unreachable")


def http_error(status: int, code: str | None) -> HttpResponseError:
    """The SDK's exception for an error answer, as its storage client raises it."""
    if status in (401, 403):
        kind = ClientAuthenticationError
    elif status == 404:
        kind = ResourceNotFoundError
    elif status == 412:
        kind = ResourceModifiedError
    else:
        kind = HttpResponseError
    error = kind(message=f"HTTP {status} {code or ''}".rstrip())
    error.status_code, error.error_code = status, code
    return error


def _unreachable(exc: Exception) -> Exception:
    """A connection that failed before an answer (``ServiceRequestError``) or during one (``ServiceResponseError``),
    without the underlying message (it may name the URL)."""
    connecting = isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError, TimeoutError))
    kind = ServiceRequestError if connecting else ServiceResponseError
    return kind(message=type(exc).__name__)


class DerivedSas:
    """A container SAS (read, list) derived from an account key, renewed when less than half its lifetime is left."""

    def __init__(self, account_name: str, container: str, account_key: str) -> None:
        self.account_name, self.container, self._key = account_name, container, account_key
        self._token, self._renew_at = "", 0.0

    def __call__(self) -> str:
        if time.monotonic() >= self._renew_at:
            from azure.storage.blob import ContainerSasPermissions, generate_container_sas

            now = datetime.now(UTC)
            self._token = generate_container_sas(
                self.account_name,
                self.container,
                account_key=self._key,
                start=now - timedelta(minutes=15),  # clock skew
                expiry=now + DERIVED_SAS_LIFETIME,
                permission=ContainerSasPermissions(read=True, list=True),
            )
            self._renew_at = time.monotonic() + DERIVED_SAS_LIFETIME.total_seconds() / 2
        return self._token


@asynccontextmanager
async def open_reader(
    container_url: str, sas: Callable[[], str], retry: dict, proxy: str | None = None
) -> AsyncIterator[BlobReader]:
    """A :class:`BlobReader` on a session of its own, closed on exit."""
    connector = aiohttp.TCPConnector(limit=100)  # the SDK's aiohttp default
    async with aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False) as session:
        yield BlobReader(session, container_url, sas, retry, proxy)
