"""API schemas (pydantic) shared by the gateway and the services that answer it."""

from __future__ import annotations
