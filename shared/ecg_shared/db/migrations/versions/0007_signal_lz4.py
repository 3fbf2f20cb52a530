"""recordings.signal compressed with lz4 instead of pglz: a fifth of the server's CPU per stored recording

Postgres compresses a large bytea value when it is stored (TOAST). With the default, pglz, that cost about 0.7 ms of
the server's CPU per CinC recording (a 39 kB float32 signal) and was most of the database's part of an ingestion;
lz4 costs about 0.15 ms, for about a quarter more disk (measured on 500 CinC signals: 11.2 MB pglz, 14.0 MB lz4,
21.0 MB uncompressed). Rows stored before keep pglz and read as before; new rows are lz4. A server built without lz4
(Postgres 14 and later have it in the official images) keeps pglz, with a notice.

Revision ID: 0007_signal_lz4
Revises: 0006
Create Date: 2026-12-01
"""

from alembic import op

revision = "0007_signal_lz4"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        DO $$
        BEGIN
            EXECUTE 'ALTER TABLE recordings ALTER COLUMN signal SET COMPRESSION lz4';
        EXCEPTION WHEN feature_not_supported THEN
            RAISE NOTICE 'recordings.signal keeps pglz: this server was built without lz4';
        END $$;
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE recordings ALTER COLUMN signal SET COMPRESSION default")
