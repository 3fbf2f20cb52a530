"""Database layer: SQLAlchemy 2.x models, sessions and Alembic migrations (``ecg db upgrade``)."""

from ecg_shared.db.models import Base, Classification, ModelVersion, Recording, Review
from ecg_shared.db.session import get_engine, session_scope

__all__ = ["Base", "Classification", "ModelVersion", "Recording", "Review", "get_engine", "session_scope"]
