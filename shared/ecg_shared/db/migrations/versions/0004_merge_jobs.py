"""merge the ingestion-jobs and training-jobs branches into one head

Revision ID: 0004
Revises: 0003_ingestion, 0003_training
Create Date: 2026-11-26
"""

revision = "0004"
down_revision = ("0003_ingestion", "0003_training")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
