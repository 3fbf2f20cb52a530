"""classifications and reviews: kept classification answers and the clinicians' reviews of them

Revision ID: 0005_reviews
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005_reviews"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "classifications",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("recording_id", sa.BigInteger(), sa.ForeignKey("recordings.id", ondelete="CASCADE"), nullable=False),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("models", postgresql.JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_classifications_recording_id", "classifications", ["recording_id"])
    op.create_table(
        "reviews",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("recording_id", sa.BigInteger(), sa.ForeignKey("recordings.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "classification_id",
            sa.BigInteger(),
            sa.ForeignKey("classifications.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("reviewer", sa.String(100), nullable=False),
        sa.Column("label", sa.String(20), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("recording_id", "reviewer", name="uq_reviews_recording_reviewer"),
        sa.CheckConstraint("label IN ('normal', 'abnormal', 'unreadable')", name="ck_reviews_label"),
    )
    op.create_index("ix_reviews_recording_id", "reviews", ["recording_id"])


def downgrade() -> None:
    op.drop_index("ix_reviews_recording_id", table_name="reviews")
    op.drop_table("reviews")
    op.drop_index("ix_classifications_recording_id", table_name="classifications")
    op.drop_table("classifications")
