"""recordings.signal may hold int16 ADC counts with each lead's gain: half the bytes of float32, to the bit

A signal read from whole counts (WFDB, a Wellnest blob) is stored as those counts (``signal_encoding = 'int16'``,
``signal_counts_per_mv`` one gain per lead), which gives back the same float32 millivolts exactly; every other
signal stays float32 millivolts. Rows stored before are float32 and read as before.

Revision ID: 0008_signal_counts
Revises: 0007_signal_lz4
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0008_signal_counts"
down_revision = "0007_signal_lz4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("recordings", sa.Column("signal_encoding", sa.String(16), nullable=False, server_default="float32"))
    op.add_column("recordings", sa.Column("signal_counts_per_mv", ARRAY(sa.Float), nullable=True))
    op.create_check_constraint(
        "ck_recordings_signal_encoding",
        "recordings",
        "signal_encoding = 'float32' OR (signal_encoding = 'int16' AND signal_counts_per_mv IS NOT NULL)",
    )


def downgrade() -> None:
    # Without these columns int16 counts would read as float32 millivolts: refuse while any row holds them.
    op.execute(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM recordings WHERE signal_encoding <> 'float32') THEN
                RAISE EXCEPTION 'recordings hold int16 signals; re-import them before downgrading below 0008';
            END IF;
        END $$;
        """
    )
    op.drop_constraint("ck_recordings_signal_encoding", "recordings")
    op.drop_column("recordings", "signal_counts_per_mv")
    op.drop_column("recordings", "signal_encoding")
