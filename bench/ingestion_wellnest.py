"""Ingestion of Wellnest blobs (issue 17): one request per recording, the client's CPU per recording against the
one-at-a-time baseline and against 2 ms. The real Wellnest recording uploaded N times under distinct names; the
measures and contestants are :mod:`bench.ingestion`'s."""

from __future__ import annotations

from typing import Any

from bench import ingestion


def run(n: int = 2000) -> dict[str, Any]:
    return ingestion.run(n, source="wellnest")
