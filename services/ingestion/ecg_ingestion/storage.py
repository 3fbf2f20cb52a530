"""Azure Blob Storage access for ingestion: clients from a job's source, blob identities, and clear errors.

A blob's identity is its URL without any query string (a SAS token lives in the query), its version the etag.
Every storage failure that ends a job becomes a :class:`StorageAccessError` whose message names the problem and
never the credential.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit
from urllib.request import getproxies, proxy_bypass

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import ExponentialRetry

from ecg_shared.jobs.ingestion import StorageCredential, strip_query

if TYPE_CHECKING:
    from ecg_ingestion.reader import BlobReader

# The SDK's exponential retry, with a shorter first wait than its default (15 s): about 1 + 3 + 9 + 27 s before a
# request gives up, so a storage outage of up to a minute only slows a job down.
RETRY = {"initial_backoff": 1, "increment_base": 3, "retry_total": 4}
AUTH_ERROR_CODES = (
    "AuthenticationFailed",
    "AuthorizationFailure",
    "AuthorizationPermissionMismatch",
    "AuthorizationResourceTypeMismatch",
    "AuthorizationSourceIPMismatch",
    "InvalidAuthenticationInfo",
)


class StorageAccessError(RuntimeError):
    """The source cannot be used: access denied, container missing (ends the job), storage unreachable or failing
    (``transient``: ends the attempt; the job goes on after a pause)."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class BlobSource:
    account_url: str  # no query string
    container: str
    credential: StorageCredential

    def blob_url(self, name: str) -> str:
        """The blob's identity: its URL without any SAS token."""
        return f"{self.account_url}/{self.container}/{quote(name, safe='/~')}"

    def blob_name(self, reference: str) -> str:
        """A manifest's blob reference (a name, or a URL into this container, with or without SAS) as a blob name."""
        reference = reference.strip()
        if not reference.lower().startswith(("http://", "https://")):
            return reference.lstrip("/")
        url = strip_query(reference)
        container_url = f"{self.account_url}/{self.container}/"
        if not url.startswith(container_url):
            raise ValueError(f"blob URL {url} is outside the job's container {self.account_url}/{self.container}")
        return unquote(url[len(container_url) :])

    def _client_kwargs(self) -> dict:
        return {"retry_policy": ExponentialRetry(**RETRY), "logging_enable": False}

    def proxy(self) -> str | None:
        """The proxy the environment sets for the account (``HTTP(S)_PROXY``, ``NO_PROXY``), looked up once per job."""
        return environment_proxies(self.account_url).get(urlsplit(self.account_url).scheme)

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[BlobReader]:
        """The job's reader of the container (listing, downloads; ``ecg_ingestion.reader``), closed on exit."""
        from ecg_ingestion.reader import open_reader

        async with open_reader(f"{self.account_url}/{self.container}", self._read_sas(), RETRY, self.proxy()) as reader:
            yield reader

    def _read_sas(self) -> Callable[[], str]:
        """The SAS query string the reader signs requests with: the job's token, the connection string's own, or
        one derived from the connection string's account key."""
        if self.credential.connection_string is None:
            token = self._sas()
            return lambda: token
        from azure.storage.blob import BlobServiceClient

        from ecg_ingestion.reader import DerivedSas

        service = BlobServiceClient.from_connection_string(self.credential.connection_string.get_secret_value())
        key = getattr(service.credential, "account_key", None)
        if key:
            return DerivedSas(service.credential.account_name, self.container, key)
        token = urlsplit(service.url).query
        if not token:
            raise StorageAccessError("credentials missing: the connection string has no AccountKey or SAS")
        return lambda: token

    def sync_container(self):
        """A synchronous ``ContainerClient`` (uploads, the benchmark's baseline)."""
        from azure.storage.blob import BlobServiceClient

        if self.credential.connection_string is not None:
            service = BlobServiceClient.from_connection_string(
                self.credential.connection_string.get_secret_value(), **self._client_kwargs()
            )
        else:
            service = BlobServiceClient(self.account_url, credential=self._sas(), **self._client_kwargs())
        return service.get_container_client(self.container)

    def _sas(self) -> str:
        if self.credential.sas_token is None:
            raise StorageAccessError("credentials missing: give a SAS token or a connection string")
        return self.credential.sas_token.get_secret_value()


def environment_proxies(account_url: str) -> dict[str, str]:
    """The proxy the environment sets for ``account_url``'s scheme (``{"https": url}``); empty if none or if
    ``NO_PROXY`` exempts its host."""
    parts = urlsplit(account_url)
    proxy = getproxies().get(parts.scheme)
    if not proxy or not parts.hostname or proxy_bypass(parts.hostname):
        return {}
    return {parts.scheme: proxy}


def access_error(exc: Exception, source: BlobSource, what: str) -> StorageAccessError | None:
    """The job-ending error ``exc`` stands for while doing ``what``, or None if it concerns one blob only."""
    code = getattr(exc, "error_code", None) or ""
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ClientAuthenticationError) or code in AUTH_ERROR_CODES or status in (401, 403):
        if source.credential.connection_string is not None:
            reason = "the connection string's account name or key is wrong"
        else:
            reason = "the SAS token is invalid or expired, or lacks the read and list permissions"
        return StorageAccessError(f"access denied while {what}: {reason} ({code or status})")
    if isinstance(exc, ResourceNotFoundError) and code == "ContainerNotFound":
        return StorageAccessError(f"container {source.container!r} not found at {source.account_url}")
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return StorageAccessError(
            f"storage unreachable at {source.account_url} while {what} (after retries): {type(exc).__name__}",
            transient=True,
        )
    if isinstance(exc, HttpResponseError) and (status or 0) >= 500:
        return StorageAccessError(f"storage error while {what}: HTTP {status} {code}".rstrip(), transient=True)
    return None


def blob_error(exc: Exception, action: str = "download") -> str:
    """A one-line reason for a storage failure while doing ``action`` that concerns one blob."""
    code = getattr(exc, "error_code", None)
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ResourceNotFoundError):
        return "blob not found"
    if status == 412 or code == "ConditionNotMet":
        return "blob changed while the job ran (etag differs): run the job again"
    if isinstance(exc, HttpResponseError):
        return f"{action} failed: HTTP {status} {code or ''}".rstrip()
    return f"{action} failed: {type(exc).__name__}"
