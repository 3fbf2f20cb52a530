"""ingestion_jobs.heartbeat_at and worker_hostname: a running ingestion job shows it has a live worker

Revision ID: 0005_reliability
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_reliability"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ingestion_jobs", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("ingestion_jobs", sa.Column("worker_hostname", sa.String(255), nullable=True))


def downgrade() -> None:
    op.drop_column("ingestion_jobs", "worker_hostname")
    op.drop_column("ingestion_jobs", "heartbeat_at")
