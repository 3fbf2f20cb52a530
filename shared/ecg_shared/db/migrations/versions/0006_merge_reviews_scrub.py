"""merge the reviews tables and the scrubbing of stored SAS queries into one head

Revision ID: 0006
Revises: 0005_reviews, 0005_scrub
Create Date: 2026-12-01
"""

revision = "0006"
down_revision = ("0005_reviews", "0005_scrub")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
