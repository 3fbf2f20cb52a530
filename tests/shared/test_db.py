"""Recordings in the real Postgres: migrations, storing, idempotence, signal round trip."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, inspect, select, text

from ecg_shared.db import Recording, get_engine, session_scope
from ecg_shared.db.store import StoreItem, content_hash, import_directory, store_recordings
from ecg_shared.formats import read_ecg


def test_migrations_create_the_tables(database_url):
    tables = set(inspect(get_engine(database_url)).get_table_names())
    assert {"recordings", "model_versions", "alembic_version"} <= tables


def test_store_is_idempotent_and_round_trips_the_signal(database_url, data_dir):
    paths = sorted((data_dir / "cinc2017").glob("*.hea"))[:5]
    items = []
    for path in paths:
        record = read_ecg(path)
        digest = content_hash(path.with_suffix(".mat").read_bytes())
        items.append(StoreItem(record, f"test://{path.stem}", digest, digest))
    with session_scope(database_url) as session:
        first = store_recordings(session, "db-test", items)
    with session_scope(database_url) as session:
        second = store_recordings(session, "db-test", items + items[:2])
    assert all(i is not None for i in first)
    assert second == [None] * 7
    with session_scope(database_url) as session:
        count = session.scalar(select(func.count()).select_from(Recording).where(Recording.dataset == "db-test"))
        row = session.scalar(select(Recording).where(Recording.id == first[0]))
        restored = row.to_record()
    assert count == 5
    np.testing.assert_array_equal(restored.signal, items[0].record.signal)
    assert restored.sampling_rate == 300 and restored.lead_names == ["ECG"]
    assert restored.label == items[0].record.label
    assert restored.metadata["record_name"] == paths[0].stem


def test_stored_signals_are_compressed_with_lz4(database_url, data_dir):
    """Migration 0007: Postgres compresses new signals with lz4 (a fifth of pglz's CPU per stored recording)."""
    path = sorted((data_dir / "cinc2017").glob("*.hea"))[0]
    digest = content_hash(path.with_suffix(".mat").read_bytes())
    item = StoreItem(read_ecg(path), f"test://{path.stem}", digest, digest)
    with session_scope(database_url) as session:
        [rid] = store_recordings(session, "lz4-test", [item])
    query = text("SELECT pg_column_compression(signal) FROM recordings WHERE id = :id")
    with session_scope(database_url) as session:
        method = session.scalar(query, {"id": rid})
    assert method == "lz4"


def _stored(database_url, dataset: str, records: list) -> list[Recording]:
    items = [StoreItem(r, f"test://{dataset}/{i}", f"v{i}", f"{dataset}-{i}") for i, r in enumerate(records)]
    with session_scope(database_url) as session:
        ids = store_recordings(session, dataset, items)
        rows = session.scalars(select(Recording).where(Recording.id.in_(ids)).order_by(Recording.id)).all()
        session.expunge_all()
    return rows


def test_signals_read_from_whole_counts_are_stored_as_int16_and_read_back_to_the_bit(database_url, data_dir):
    """WFDB records and Wellnest blobs are stored as their ADC counts: half the bytes, the same float32 samples."""
    records = [
        read_ecg(data_dir / "wellnest" / "sample-10s.raw"),
        read_ecg(sorted((data_dir / "ptbxl").glob("*_lr.hea"))[0]),
        read_ecg(sorted((data_dir / "cinc2017").glob("*.hea"))[0]),
    ]
    rows = _stored(database_url, "int16-test", records)
    for record, row in zip(records, rows, strict=True):
        assert (row.signal_encoding, len(row.signal)) == ("int16", 2 * record.signal.size), record.format
        assert row.signal_counts_per_mv == list(record.counts_per_mv)
        assert row.to_record().signal.tobytes() == record.signal.tobytes()
    assert rows[0].signal_counts_per_mv == [1241.0] * 3 + [2482.0] * 3 + [1241.0] * 6  # aVR, aVL, aVF: half counts


def test_signals_that_are_not_whole_counts_stay_float32(database_url, data_dir):
    """No gain, a wrong gain, counts beyond int16, a missing sample: each is stored as float32, exactly as given."""
    from ecg_shared.formats.record import Record

    cinc = read_ecg(sorted((data_dir / "cinc2017").glob("*.hea"))[0])
    clinical = read_ecg(data_dir / "formats" / "dicom_ecg" / "Example.dcm")
    wrong_gain = Record(cinc.signal, cinc.sampling_rate, cinc.lead_names, counts_per_mv=(999.0,))
    too_large = Record(cinc.signal * 1000, cinc.sampling_rate, cinc.lead_names, counts_per_mv=cinc.counts_per_mv)
    gap = cinc.signal.copy()
    gap[10] = np.nan
    missing = Record(gap, cinc.sampling_rate, cinc.lead_names, counts_per_mv=cinc.counts_per_mv)
    records = [clinical, wrong_gain, too_large, missing]
    rows = _stored(database_url, "float32-test", records)
    for record, row in zip(records, rows, strict=True):
        assert (row.signal_encoding, row.signal_counts_per_mv) == ("float32", None)
        assert row.to_record().signal.tobytes() == record.signal.tobytes()


def test_the_database_refuses_int16_signals_without_their_gains(database_url):
    from sqlalchemy.exc import IntegrityError

    insert = text(
        "INSERT INTO recordings (dataset, source_uri, source_version, content_sha256, format, sampling_rate, "
        "lead_names, n_samples, signal, signal_encoding) VALUES ('ck-test', 'x', 'v', 'h', 'wfdb', 300, "
        "ARRAY['ECG'], 1, '\\x0100', 'int16')"
    )
    with pytest.raises(IntegrityError, match="ck_recordings_signal_encoding"), session_scope(database_url) as session:
        session.execute(insert)


def test_migration_0008_keeps_rows_stored_before_it_readable(data_dir):
    """A recording stored as float32 before 0008 reads back unchanged after it."""
    import uuid

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from ecg_shared.db.migrate import upgrade
    from tests.support.database import admin_url, drop_test_database

    record = read_ecg(sorted((data_dir / "cinc2017").glob("*.hea"))[0])
    url = make_url(admin_url()).set(database=f"ecg_test_{uuid.uuid4().hex[:10]}").render_as_string(False)
    try:
        upgrade(url, "0007_signal_lz4")
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO recordings (dataset, source_uri, source_version, content_sha256, format, "
                    "sampling_rate, lead_names, n_samples, signal) VALUES ('old', 'x', 'v', 'h', 'wfdb', 300, "
                    "ARRAY['ECG'], :n, :signal)"
                ),
                {"n": record.n_samples, "signal": record.signal.astype("<f4").tobytes()},
            )
        engine.dispose()
        upgrade(url)
        with session_scope(url) as session:
            row = session.scalars(select(Recording)).one()
            assert row.signal_encoding == "float32"
            assert row.to_record().signal.tobytes() == record.signal.tobytes()
    finally:
        drop_test_database(url)


def test_import_directory_labels_and_reimport(database_url, data_dir, tmp_path):
    folder = tmp_path / "ptb"
    folder.mkdir()
    for path in sorted((data_dir / "ptbxl").glob("0000*_lr.*"))[:10]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.hea").write_text("broken 1 100 1000\nbroken.dat 16 1000/mV 16 0 0 0 0 I\n")
    with session_scope(database_url) as session:
        stored, skipped, failures = import_directory(session, folder, "ptb-import")
    assert (stored, skipped) == (5, 0)
    assert len(failures) == 1 and "broken" in failures[0][0]
    with session_scope(database_url) as session:
        again = import_directory(session, folder, "ptb-import")
        labels = set(session.scalars(select(Recording.label).where(Recording.dataset == "ptb-import")))
    assert again[:2] == (0, 5)
    assert labels <= {"Normal", "Abnormal"} and labels


def test_migration_0005_scrubs_stored_sas_queries_and_foreign_training_job_links():
    """A database written before 0005: a job whose rows kept SAS URLs, a failure naming one, a seeded version linked
    to the training job of the database the bundled model came from. After the upgrade none of that remains."""
    import json
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from ecg_shared.db.migrate import upgrade
    from tests.support.database import admin_url, drop_test_database

    url = make_url(admin_url()).set(database=f"ecg_test_{uuid.uuid4().hex[:10]}").render_as_string(False)
    sas = "sv=2025-01-05&sp=rl&sig=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D"
    try:
        upgrade(url, "0004")
        engine = create_engine(url)
        with engine.begin() as connection:
            spec = {
                "rows": [{"blob": f"https://a.blob.core.windows.net/c/x.hea?{sas}", "label": "N"}, {"blob": "y.hea"}]
            }
            job_id = connection.execute(
                text(
                    "INSERT INTO ingestion_jobs (dataset, account_url, container, auth, spec) "
                    "VALUES ('d', 'https://a.blob.core.windows.net', 'c', 'sas_token', CAST(:spec AS jsonb)) "
                    "RETURNING id"
                ),
                {"spec": json.dumps(spec)},
            ).scalar_one()
            connection.execute(
                text("INSERT INTO ingestion_failures (job_id, blob, reason) VALUES (:job, :blob, 'outside')"),
                {"job": job_id, "blob": f"https://a.blob.core.windows.net/other/x.hea?{sas}"},
            )
            for name, card in (("seeded", {"bundled_file": "seeded.onnx"}), ("trained", {})):
                connection.execute(
                    text(
                        "INSERT INTO model_versions (name, version, family, model_card, artifact_uri, artifact_sha256, "
                        "training_job_id) VALUES (:name, 1, 'cnn', CAST(:card AS jsonb), 'azure://m/x', 'ab', 7)"
                    ),
                    {"name": name, "card": json.dumps(card)},
                )
        upgrade(url)
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT spec FROM ingestion_jobs")).scalar_one()
            failure = connection.execute(text("SELECT blob FROM ingestion_failures")).scalar_one()
            links = dict(connection.execute(text("SELECT name, training_job_id FROM model_versions")).all())
        engine.dispose()
        assert stored["rows"] == [{"blob": "https://a.blob.core.windows.net/c/x.hea", "label": "N"}, {"blob": "y.hea"}]
        assert failure == "https://a.blob.core.windows.net/other/x.hea"
        assert links == {"seeded": None, "trained": 7}
    finally:
        drop_test_database(url)
