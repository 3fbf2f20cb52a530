"""A database session per request (committed on success), for the synchronous route functions."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy.orm import Session

from ecg_shared.db import session_scope


def db_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session
