"""ingestion_jobs and ingestion_failures: Azure Blob Storage ingestion jobs and their progress

Revision ID: 0003_ingestion
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003_ingestion"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingestion_jobs",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("account_url", sa.Text(), nullable=False),
        sa.Column("container", sa.String(63), nullable=False),
        sa.Column("auth", sa.String(20), nullable=False),
        sa.Column("credential_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("spec", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="queued"),
        sa.Column("listed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("downloaded", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("stored", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("skipped", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')", name="ck_ingestion_jobs_status"),
        sa.CheckConstraint("auth IN ('sas_token', 'connection_string')", name="ck_ingestion_jobs_auth"),
    )
    op.create_table(
        "ingestion_failures",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("job_id", sa.BigInteger(), sa.ForeignKey("ingestion_jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("blob", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_ingestion_failures_job_id", "ingestion_failures", ["job_id"])


def downgrade() -> None:
    op.drop_table("ingestion_failures")
    op.drop_table("ingestion_jobs")
