"""Apply migrations programmatically (``ecg db upgrade``; the compose ``migrate`` service runs the same)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")


def alembic_config(url: str | None = None) -> Config:
    config = Config(str(ALEMBIC_INI))
    if url:
        config.attributes["url"] = url
    return config


def ensure_database(url: str) -> None:
    """Create the database named in ``url`` if the server lacks it (needs rights on the ``postgres`` database)."""
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    finally:
        admin.dispose()


def upgrade(url: str | None = None, revision: str = "head") -> None:
    from ecg_shared.settings import get_settings

    url = url or get_settings().database_url
    ensure_database(url)
    command.upgrade(alembic_config(url), revision)
