"""A fresh Postgres database per test run, migrated to head, dropped afterwards."""

from __future__ import annotations

import os
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def admin_url() -> str:
    base = os.environ.get("ECG_TEST_DATABASE_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    return base


def create_test_database() -> str:
    from ecg_shared.db.migrate import upgrade

    name = f"ecg_test_{uuid.uuid4().hex[:10]}"
    url = make_url(admin_url()).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    return url


def drop_test_database(url: str) -> None:
    from ecg_shared.db.session import _engine_for

    _engine_for.cache_clear()
    name = make_url(url).database
    engine = create_engine(admin_url(), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()
