"""scrub what rows must not hold: SAS query strings in stored blob references, foreign training-job links

- ``ingestion_jobs.spec`` rows and ``ingestion_failures.blob``: a blob URL loses its query string (where a SAS
  token lives); manifest rows carrying one are refused from now on (``ManifestRow``).
- ``model_versions`` seeded from the bundled models (``model_card.bundled_file``): ``training_job_id`` named a job
  of the database they were trained in, so it pointed at an unrelated job here; it is cleared (the ONNX metadata
  still records the original, as ``ecg models seed`` keeps it in the card's ``origin_training_job_id``).

Revision ID: 0005_scrub
Revises: 0004
Create Date: 2026-12-01
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0005_scrub"
down_revision = "0004"
branch_labels = None
depends_on = None

# A blob URL's query string: from "?" to the end (a fragment after it goes too).
URL_QUERY = r"^(https?://[^?#]*)[?#].*$"


def _without_query(reference: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    if not reference.lower().startswith(("http://", "https://")):
        return reference
    parts = urlsplit(reference)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def upgrade() -> None:
    connection = op.get_bind()
    connection.execute(
        sa.text(
            "UPDATE ingestion_failures SET blob = regexp_replace(blob, :pattern, :kept, 'i') WHERE blob ~* :pattern"
        ),
        {"pattern": URL_QUERY, "kept": "\\1"},
    )
    jobs = connection.execute(
        sa.text("SELECT id, spec FROM ingestion_jobs WHERE jsonb_typeof(spec -> 'rows') = 'array'")
    ).all()
    for job_id, spec in jobs:
        rows = spec["rows"]
        scrubbed = [{**row, "blob": _without_query(row["blob"])} for row in rows]
        if scrubbed != rows:
            connection.execute(
                sa.text("UPDATE ingestion_jobs SET spec = CAST(:spec AS jsonb) WHERE id = :id"),
                {"spec": json.dumps({**spec, "rows": scrubbed}), "id": job_id},
            )
    op.execute(
        "UPDATE model_versions SET training_job_id = NULL "
        "WHERE model_card ->> 'bundled_file' IS NOT NULL AND training_job_id IS NOT NULL"
    )


def downgrade() -> None:
    pass  # what was scrubbed is gone on purpose
