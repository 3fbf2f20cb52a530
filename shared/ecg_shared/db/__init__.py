"""Database layer: SQLAlchemy 2.x models, sessions and Alembic migrations (``ecg db upgrade``)."""

from ecg_shared.db.models import Base, ModelVersion, Recording
from ecg_shared.db.session import get_engine, session_scope

__all__ = ["Base", "ModelVersion", "Recording", "get_engine", "session_scope"]
