"""merge the three 0005 branches into one head: reviews, the scrubbing of stored SAS queries, job heartbeats

Revision ID: 0006
Revises: 0005_reviews, 0005_scrub, 0005_reliability
Create Date: 2026-12-01
"""

revision = "0006"
down_revision = ("0005_reviews", "0005_scrub", "0005_reliability")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
