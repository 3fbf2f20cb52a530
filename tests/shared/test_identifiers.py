"""Patient identifiers in file names: readers find them in the files (in memory only), and names are masked before
they are stored (ecg_shared.formats.identifiers)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from ecg_shared.db.store import StoreItem, stored_metadata, stored_source_uri
from ecg_shared.formats import EcgFormatError, read_ecg
from ecg_shared.formats.identifiers import UNPARSED, identifying, mask_identifiers, patient_identifiers
from ecg_shared.formats.record import Record

# Sample files whose own names carry a patient field of the file (the ISHNE subject ID, a Philips patient ID and
# last name, an EDF+ admission code), and the value in the name.
NAMED_AFTER_THE_PATIENT = {
    "ishne_holter/ECG_P28.01.ecg": "ECG_P28.01",
    "philips_sierra_xml/ecg_900657176_1.xml": "900657176",
    "philips_sierra_xml/3191723_ZZDEMOPTONLY_1-04_orig.xml": "ZZDEMOPTONLY",
    "edf/0000050.ECG.edf": "0000050",
}


def test_masking_replaces_every_identifier_in_any_case_and_keeps_names_apart():
    digest_a, digest_b = "a" * 64, "b" * 64
    ids = frozenset({"Clark", "Clark Kent", "SBJ-123"})
    assert mask_identifiers("x/kent_clark kent_sbj-123.xml", ids, digest_a) == (
        "x/kent_[patient-aaaaaaaa]_[patient-aaaaaaaa].xml"
    )
    assert mask_identifiers("x/one.xml", ids, digest_a) == "x/one.xml"
    assert mask_identifiers("ecg_9001.xml", frozenset({"9001"}), digest_a) != mask_identifiers(
        "ecg_9001.xml", frozenset({"9001"}), digest_b
    )
    assert identifying(["none none", "M", "  ", "0000", "Anonymous", "642341", None]) == {"642341"}


@pytest.mark.parametrize("name", sorted(NAMED_AFTER_THE_PATIENT))
def test_a_file_named_after_its_patient_is_stored_under_a_masked_name(formats_dir, name):
    path = formats_dir / name
    record = read_ecg(path)
    value = NAMED_AFTER_THE_PATIENT[name]
    assert value in record.identifiers
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert value not in record.metadata["source"]
    assert value not in repr(record) and "identifiers" not in record.metadata
    record.metadata["blob"] = name  # as ingestion adds it
    item = StoreItem(record, f"https://host/c/{name}", "etag", digest)
    stored = stored_source_uri(item)
    assert value not in stored and f"[patient-{digest[:8]}]" in stored
    assert value not in str(stored_metadata(item))


def test_every_clinical_sample_yields_its_patient_id(formats_dir):
    expected = {
        "dicom_ecg/anonymous_ecg.dcm": "642341",
        "dicom_ecg/Example.dcm": "SBJ-123",
        "hl7_aecg/Example aECG.xml": "SBJ-123",
        "scp_ecg/Example.scp": "SBJ-123",
        "ge_muse_xml/MUSE_20080710_165457_96000.xml": "159357456",
    }
    for name, patient_id in expected.items():
        assert patient_id in read_ecg(formats_dir / name).identifiers, name


def test_a_file_that_cannot_be_decoded_still_has_its_identifiers_masked(formats_dir):
    with pytest.raises(EcgFormatError, match="annotation file") as failure:
        read_ecg(formats_dir / "ishne_holter/ECG_P28.01.ann")
    assert "ECG_P28.01" in failure.value.identifiers


@pytest.mark.parametrize("fmt", ["muse_xml", "philips_xml", "hl7_aecg", "scp_ecg"])
def test_identifying_fields_that_cannot_be_parsed_mask_the_whole_file_name(fmt):
    """Fail closed: which part of the name came from the patient is unknown, so none of the file name is kept."""
    identifiers = patient_identifiers(fmt, b"\x00\x01 not a parsable file")
    assert identifiers == {UNPARSED}
    masked = mask_identifiers("site/ecg_900657176_1.xml", identifiers, "e" * 64)
    assert masked == "site/[patient-eeeeeeee].xml"
    assert mask_identifiers("ECG_P28.01.ecg", identifiers, "e" * 64) == "[patient-eeeeeeee].ecg"


def test_records_of_other_formats_carry_no_identifiers():
    record = Record(np.zeros((10, 1)), 100, ["II"], {"source": "ecg_123456.csv"})
    assert record.identifiers == frozenset()
    assert stored_source_uri(StoreItem(record, "ecg_123456.csv", "v", "c" * 64)) == "ecg_123456.csv"


def test_a_masked_name_is_stored_once(db_session, formats_dir):
    """Ingestion's exactly-once holds for masked names: the same file under the same name masks the same way, so
    storing it again is a no-op; another file under the same name is another recording."""
    from ecg_shared.db.store import store_recordings

    path = formats_dir / "ishne_holter/ECG_P28.01.ecg"
    record = read_ecg(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    item = StoreItem(record, "https://host/c/ECG_P28.01.ecg", "etag-1", digest)
    (first,) = store_recordings(db_session, "masked-once", [item])
    (again,) = store_recordings(db_session, "masked-once", [item])
    assert first is not None and again is None


def test_an_imported_file_is_its_own_version_and_stored_under_a_masked_name(db_session, formats_dir, tmp_path):
    """`ecg dataset import`: an ISHNE .ecg is one recording by itself (the .ann beside it does not change its
    version), and its patient-named file is stored masked."""
    import shutil

    from ecg_shared.db.models import Recording
    from ecg_shared.db.store import import_directory

    for name in ("ECG_P28.01.ecg", "ECG_P28.01.ann"):
        shutil.copy(formats_dir / "ishne_holter" / name, tmp_path / name)
    stored, _, failures = import_directory(db_session, tmp_path, "import-masked")
    assert stored == 1 and len(failures) == 1  # the .ann is not a recording
    (tmp_path / "ECG_P28.01.ann").write_bytes(b"changed")
    assert import_directory(db_session, tmp_path, "import-masked")[:2] == (0, 1)
    (uri,) = db_session.query(Recording.source_uri).filter(Recording.dataset == "import-masked").one()
    assert "ECG_P28.01" not in uri and "[patient-" in uri
