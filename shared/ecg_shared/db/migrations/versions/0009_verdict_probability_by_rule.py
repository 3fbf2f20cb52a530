"""classifications.probability may be null: a verdict a rule decided (the quality check failed, or no model could
be judged) has no probability, where it used to be stored as 1.0

Rows stored before keep their 1.0; the rule stored beside them says which they are.

Revision ID: 0009_verdict_probability_by_rule
Revises: 0008_signal_counts
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_verdict_probability_by_rule"
down_revision = "0008_signal_counts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("classifications", "probability", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE classifications SET probability = 1.0 WHERE probability IS NULL")
    op.alter_column("classifications", "probability", existing_type=sa.Float(), nullable=False)
