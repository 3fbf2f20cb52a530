"""Engines and sessions, one engine per database URL and process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

_engines: list[Engine] = []


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    _engines.append(engine)
    return engine


def forget_inherited_connections() -> None:
    """In a forked child: drop the pooled connections of the parent without closing them (they stay the parent's)."""
    for engine in _engines:
        engine.dispose(close=False)


def get_engine(url: str | None = None) -> Engine:
    from ecg_shared.settings import get_settings

    return _engine_for(url or get_settings().database_url)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = sessionmaker(get_engine(url), expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
