"""The artifact store: model files in a blob container (Azurite locally, Azure Storage in production).

URIs look like ``azure://<container>/<blob name>``; ``file://`` URIs (the bundled models in ``models/``) are read too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlparse

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient


class ArtifactNotFound(LookupError):
    pass


class ArtifactStore:
    def __init__(self, connection_string: str | None = None, container: str | None = None) -> None:
        from ecg_shared.settings import get_settings

        settings = get_settings()
        self._connection_string = connection_string or settings.artifact_connection_string.get_secret_value()
        self.container = container or settings.artifact_container
        self._service: BlobServiceClient | None = None

    @property
    def service(self) -> BlobServiceClient:
        if self._service is None:
            self._service = BlobServiceClient.from_connection_string(self._connection_string)
        return self._service

    def put(self, blob_name: str, data: bytes) -> str:
        uri = f"azure://{self.container}/{blob_name}"
        self.restore(uri, data)
        return uri

    def restore(self, uri: str, data: bytes) -> None:
        """Write ``data`` at ``uri`` (an ``azure://`` one), creating its container if it is gone."""
        parsed = urlparse(uri)
        if parsed.scheme != "azure":
            raise ValueError(f"cannot write artifact URI {uri!r}: only azure:// URIs are stored")
        container = self.service.get_container_client(parsed.netloc)
        try:
            container.create_container()
        except ResourceExistsError:
            pass
        container.upload_blob(parsed.path.lstrip("/"), data, overwrite=True)

    def get(self, uri: str) -> bytes:
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            path = Path(parsed.path)
            if not path.is_file():
                raise ArtifactNotFound(uri)
            return path.read_bytes()
        if parsed.scheme != "azure":
            raise ValueError(f"unsupported artifact URI {uri!r}")
        try:
            return self.service.get_blob_client(parsed.netloc, parsed.path.lstrip("/")).download_blob().readall()
        except ResourceNotFoundError:
            raise ArtifactNotFound(uri) from None

    def delete(self, uri: str) -> None:
        """Remove an ``azure://`` blob; one that is already gone is fine."""
        parsed = urlparse(uri)
        if parsed.scheme != "azure":
            raise ValueError(f"only azure:// artifacts can be deleted, not {uri!r}")
        try:
            self.service.get_blob_client(parsed.netloc, parsed.path.lstrip("/")).delete_blob()
        except ResourceNotFoundError:
            pass


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
