"""recordings: stored ECG signals with labels

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("source_uri", sa.Text(), nullable=False),
        sa.Column("source_version", sa.String(200), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("sampling_rate", sa.Float(), nullable=False),
        sa.Column("lead_names", postgresql.ARRAY(sa.String(32)), nullable=False),
        sa.Column("n_samples", sa.Integer(), nullable=False),
        sa.Column("signal", sa.LargeBinary(), nullable=False),
        sa.Column("label", sa.String(100), nullable=True),
        sa.Column("metadata", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("dataset", "source_uri", "source_version", name="uq_recordings_source"),
    )
    op.create_index("ix_recordings_dataset_label", "recordings", ["dataset", "label"])


def downgrade() -> None:
    op.drop_table("recordings")
