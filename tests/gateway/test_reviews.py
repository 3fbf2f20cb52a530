"""Keeping classifications, reviewing them, deleting them, and the promotion gate: the REST API on the real stack
(inference and gateway processes, Postgres, Azurite), with real recordings."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from ecg_shared.formats import zip_wfdb_record
from ecg_shared.reviews import KEPT_METADATA_KEYS
from tests.gateway.conftest import API_KEY

KEY = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def client(gateway_url) -> httpx.Client:
    with httpx.Client(base_url=gateway_url, timeout=60) as http:
        yield http


def _keep(client: httpx.Client, name: str, data: bytes, **params) -> dict:
    response = client.post("/classify", params={"keep": "true", **params}, files={"file": (name, data)}, headers=KEY)
    assert response.status_code == 200, response.text
    return response.json()


def test_keeping_needs_the_key_and_keeps_no_patient_identifiers(client, data_dir, wellnest_sample):
    ptbxl = data_dir / "ptbxl" / "00001_lr.hea"  # its header names age, sex, height and weight
    archive = zip_wfdb_record(ptbxl)
    refused = client.post("/classify", params={"keep": "true"}, files={"file": ("patient-smith.zip", archive)})
    assert refused.status_code == 401 and "X-API-Key" in refused.json()["detail"]
    wrong = client.post(
        "/classify", params={"keep": "true"}, files={"file": ("x.zip", archive)}, headers={"X-API-Key": "nope"}
    )
    assert wrong.status_code == 403

    answer = _keep(client, "patient-smith.zip", archive)
    kept = answer["kept"]
    assert kept["problem"] is None and kept["recording_id"] and kept["classification_id"]
    stored = client.get(f"/api/recordings/{kept['recording_id']}").json()
    assert stored["dataset"] == "reviewed"
    assert stored["source_uri"].startswith("upload:sha256:") and "smith" not in str(stored)
    assert set(stored["metadata"]) <= {*KEPT_METADATA_KEYS, "label"}
    for identifier in ("age", "sex", "weight", "height", "comments", "record_name", "source"):
        assert identifier not in stored["metadata"]
    assert stored["label"] == "Normal"  # the file's own label (PTB-XL's diagnosis) is kept: it is not about who

    reviews = client.get(f"/api/recordings/{kept['recording_id']}/reviews").json()
    classification = reviews["classification"]
    assert classification["id"] == kept["classification_id"]
    assert classification["verdict"] == answer["verdict"]["label"]
    assert {(m["name"], m["version"], m["call"]) for m in classification["models"]} == {
        (m["name"], m["version"], m["call"]) for m in answer["models"]
    }
    assert reviews["reviews"] == [] and reviews["settled_label"] is None

    # The same bytes kept again: one recording, two classifications. Wellnest blobs are kept too.
    again = _keep(client, "another-name.zip", archive)["kept"]
    assert again["recording_id"] == kept["recording_id"] and again["classification_id"] != kept["classification_id"]
    wellnest = _keep(client, "sample-10s.raw", wellnest_sample.read_bytes())["kept"]
    assert client.get(f"/api/recordings/{wellnest['recording_id']}").json()["format"] == "wellnest"

    # JSON samples are kept too (the recording is known by the hash of the body).
    from ecg_shared.formats import read_ecg

    lead_ii = read_ecg(ptbxl).lead("II")
    body = {"samples": [round(float(v), 4) for v in lead_ii], "sampling_rate": 100, "leads": ["II"]}
    as_json = client.post("/classify", params={"keep": "true"}, json=body, headers=KEY)
    assert as_json.status_code == 200, as_json.text
    kept_json = client.get(f"/api/recordings/{as_json.json()['kept']['recording_id']}").json()
    assert kept_json["format"] == "json" and kept_json["lead_names"] == ["II"] and kept_json["n_samples"] == 1000


def test_two_reviewers_disagree_visibly_then_deleting_the_recording_deletes_the_reviews(client, data_dir, database_url):
    from sqlalchemy import func, select

    from ecg_shared.db import Classification, Review, session_scope

    kept = _keep(client, "rec.zip", zip_wfdb_record(data_dir / "ptbxl" / "00002_lr.hea"))
    recording_id, verdict = kept["kept"]["recording_id"], kept["verdict"]["label"]
    reviews_path = f"/api/recordings/{recording_id}/reviews"

    assert client.post(reviews_path, json={"reviewer": "Dr Ada", "label": "normal"}).status_code == 401
    bad = client.post(reviews_path, headers=KEY, json={"reviewer": "Dr Ada", "label": "probably fine"})
    assert bad.status_code == 422 and "label" in bad.text
    nameless = client.post(reviews_path, headers=KEY, json={"reviewer": "   ", "label": "normal"})
    assert nameless.status_code == 422 and "reviewer" in nameless.text
    nul = client.post(reviews_path, headers=KEY, json={"reviewer": "A", "label": "normal", "comment": "a\x00b"})
    assert nul.status_code == 422 and "control characters" in nul.text
    missing = client.post("/api/recordings/999999999/reviews", headers=KEY, json={"reviewer": "A", "label": "normal"})
    assert missing.status_code == 404 and "999999999" in missing.json()["detail"]

    first = client.post(
        reviews_path, headers=KEY, json={"reviewer": "Dr Ada", "label": verdict, "comment": "clear sinus rhythm"}
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["settled_label"] == verdict and body["disagreement"] is False
    (review,) = body["reviews"]
    assert review["reviewer"] == "Dr Ada" and review["comment"] == "clear sinus rhythm"
    assert review["agrees_with_verdict"] is True and review["created_at"]

    other = "unreadable" if verdict != "unreadable" else "normal"
    second = client.post(reviews_path, headers=KEY, json={"reviewer": "Dr Bo", "label": other}).json()
    assert second["disagreement"] is True and second["settled_label"] is None
    assert {(r["reviewer"], r["label"], r["agrees_with_verdict"]) for r in second["reviews"]} == {
        ("Dr Ada", verdict, True),
        ("Dr Bo", other, False),
    }
    disputed = client.get("/api/reviews", params={"disagreements": "true", "limit": 500}).json()
    assert recording_id in {item["recording_id"] for item in disputed["items"]}

    # Dr Ada changes her mind: her review is replaced, not doubled; now they agree.
    third = client.post(reviews_path, headers=KEY, json={"reviewer": "Dr Ada", "label": other}).json()
    assert len(third["reviews"]) == 2 and third["settled_label"] == other and third["disagreement"] is False
    disputed = client.get("/api/reviews", params={"disagreements": "true", "limit": 500}).json()
    assert recording_id not in {item["recording_id"] for item in disputed["items"]}

    assert client.delete(f"/api/recordings/{recording_id}").status_code == 401
    deleted = client.delete(f"/api/recordings/{recording_id}", headers=KEY)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"recordings": 1, "classifications": 1, "reviews": 2}
    assert client.get(reviews_path).status_code == 404
    assert client.get(f"/api/recordings/{recording_id}").status_code == 404
    assert client.delete(f"/api/recordings/{recording_id}", headers=KEY).status_code == 404
    with session_scope(database_url) as session:
        for table in (Review, Classification):
            left = session.scalar(select(func.count()).select_from(table).where(table.recording_id == recording_id))
            assert left == 0


def test_live_agreement_counts_settled_reviews_against_each_models_kept_call(client, data_dir):
    def agreement() -> dict:
        return {(m["name"], m["version"]): m for m in client.get("/api/reviews/agreement").json()["models"]}

    before = agreement()
    kept = _keep(client, "rec.zip", zip_wfdb_record(data_dir / "ptbxl" / "00004_lr.hea"))
    recording_id = kept["kept"]["recording_id"]
    calls = {(m["name"], m["version"]): m["call"] for m in kept["models"]}
    label = calls[next(key for key in calls if key[0] == "normal-12lead")]  # agree with the 12-lead model
    client.post(f"/api/recordings/{recording_id}/reviews", headers=KEY, json={"reviewer": "Dr Cy", "label": label})
    after = agreement()
    assert any(key in before for key in calls), "the models that answered should be the active ones"
    for key, call in calls.items():
        if key not in before:
            continue  # not an active version (any more)
        assert after[key]["reviewed"] == before[key]["reviewed"] + 1
        assert after[key]["agreed"] == before[key]["agreed"] + (call == label)
        assert after[key]["rate"] == pytest.approx(after[key]["agreed"] / after[key]["reviewed"])

    other = "unreadable" if label != "unreadable" else "normal"
    client.post(f"/api/recordings/{recording_id}/reviews", headers=KEY, json={"reviewer": "Dr Di", "label": other})
    disputed = agreement()
    for key in calls:
        if key in before:
            assert disputed[key]["reviewed"] == before[key]["reviewed"]
            assert disputed[key]["disputed"] == before[key]["disputed"] + 1
    client.delete(f"/api/recordings/{recording_id}", headers=KEY)
    assert agreement() == before


def test_a_model_not_judged_is_kept_as_such_and_left_out_of_its_agreement(client, data_dir, tmp_path):
    """A real PTB-XL record with V1 disconnected: the 12-lead model read a lead with no signal, so its kept call
    says it was not judged, and a review neither agrees nor disagrees with it."""
    import wfdb

    from ecg_shared.formats import read_ecg

    record = read_ecg(data_dir / "ptbxl" / "00004_lr.hea")
    signal = record.signal.astype("float64")
    signal[:, record.lead_names.index("V1")] = 0.0
    wfdb.wrsamp(
        "v1-off",
        fs=record.sampling_rate,
        units=["mV"] * record.n_leads,
        sig_name=record.lead_names,
        p_signal=signal,
        fmt=["16"] * record.n_leads,
        write_dir=str(tmp_path),
    )
    before = {(m["name"], m["version"]): m for m in client.get("/api/reviews/agreement").json()["models"]}
    kept = _keep(client, "v1-off.zip", zip_wfdb_record(tmp_path / "v1-off.hea"))
    twelve = next(m for m in kept["models"] if m["name"] == "normal-12lead")
    assert twelve["call"] == "unreadable" and "V1: flat line" in twelve["not_judged"]
    recording_id = kept["kept"]["recording_id"]
    stored = client.get(f"/api/recordings/{recording_id}/reviews").json()["classification"]["models"]
    assert next(m for m in stored if m["name"] == "normal-12lead")["not_judged"] == twelve["not_judged"]
    client.post(f"/api/recordings/{recording_id}/reviews", headers=KEY, json={"reviewer": "Dr Ed", "label": "abnormal"})
    after = {(m["name"], m["version"]): m for m in client.get("/api/reviews/agreement").json()["models"]}
    key = (twelve["name"], twelve["version"])
    if key in before:  # the active version
        assert after[key] == before[key]
    for m in kept["models"]:
        judged = (m["name"], m["version"])
        if m["not_judged"] is None and judged in before:
            assert after[judged]["reviewed"] == before[judged]["reviewed"] + 1
    client.delete(f"/api/recordings/{recording_id}", headers=KEY)


def test_the_api_documents_reviews_deletion_and_the_gate(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert "keep" in {p["name"] for p in paths["/classify"]["post"]["parameters"]}
    assert {"post", "get"} <= set(paths["/api/recordings/{recording_id}/reviews"])
    assert "delete" in paths["/api/recordings/{recording_id}"]
    assert "/api/reviews" in paths and "/api/reviews/agreement" in paths
    assert "/api/models/{name}/versions/{version}/comparison" in paths
    promote = paths["/api/models/{name}/versions/{version}/promote"]["post"]
    assert {"force", "evaluation"} <= {p["name"] for p in promote["parameters"]} and "409" in promote["responses"]


# --- The promotion gate ---------------------------------------------------------------------------------------------


@pytest.fixture()
def restore_active_12lead(database_url, stack):
    """Put normal-12lead's active version back afterwards and wait until inference serves it again, so the tests
    that follow see the stack's usual models."""
    from ecg_shared import registry
    from ecg_shared.db import session_scope

    with session_scope(database_url) as session:
        original = next(v.version for v in registry.active_versions(session) if v.name == "normal-12lead")
    yield original
    with session_scope(database_url) as session:
        registry.promote(session, "normal-12lead", original)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        served = httpx.get(stack.url("inference") + "/healthz", timeout=5).json()["models"]
        if {m["name"]: m["version"] for m in served}.get("normal-12lead") == original:
            return
        time.sleep(0.3)
    raise AssertionError(f"inference did not go back to normal-12lead v{original}")


def _register_constant(database_url: str, p_abnormal_high: bool) -> int:
    """A normal-12lead candidate that answers the same whatever the recording: abnormal or normal."""
    from ecg_shared import registry
    from ecg_shared.db import session_scope
    from tests.inference.onnx_models import tiny_model, twelve_lead_metadata

    metadata = twelve_lead_metadata()
    onnx = tiny_model(metadata, scale=0.0, bias=[-3.0, 3.0] if p_abnormal_high else [3.0, -3.0])
    with session_scope(database_url) as session:
        return registry.register_version(session, metadata, onnx, model_card={"data": {"label_mapping": {}}}).version


def test_the_gate_refuses_a_worse_candidate_without_force_and_promotes_it_with_force(
    client, data_dir, database_url, restore_active_12lead
):
    from ecg_shared.db import session_scope
    from ecg_shared.db.store import StoreItem, content_hash, store_recordings
    from ecg_shared.formats import read_ecg

    dataset = f"gate-eval-{uuid.uuid4().hex[:6]}"
    headers = [h for h in sorted((data_dir / "ptbxl").glob("*.hea")) if read_ecg(h).label == "Abnormal"][:6]
    with session_scope(database_url) as session:
        items = []
        for header in headers:
            digest = content_hash(header.read_bytes() + header.with_suffix(".dat").read_bytes())
            items.append(StoreItem(read_ecg(header), header.with_suffix("").as_uri(), digest, digest))
        store_recordings(session, dataset, items)
    says_abnormal = _register_constant(database_url, p_abnormal_high=True)
    says_normal = _register_constant(database_url, p_abnormal_high=False)
    base = "/api/models/normal-12lead/versions"

    forced = client.post(f"{base}/{says_abnormal}/promote", params={"force": "true"}, headers=KEY)
    assert forced.status_code == 200, forced.text
    assert forced.json()["forced"] is True and forced.json()["gate"] is None and forced.json()["stage"] == "active"

    comparison = client.get(f"{base}/{says_normal}/comparison", params={"evaluation": dataset})
    assert comparison.status_code == 200, comparison.text
    gate = comparison.json()
    assert gate["passed"] is False and gate["n"] == len(headers) and gate["labels"] == {"normal": 0, "abnormal": 6}
    assert gate["metric"] == "agreement"  # one kind of label only: no AUC
    assert gate["candidate"]["agreement"] == 0.0 and gate["active"]["agreement"] == 1.0
    assert gate["candidate"]["version"] == says_normal and gate["active"]["version"] == says_abnormal

    refused = client.post(f"{base}/{says_normal}/promote", params={"evaluation": dataset}, headers=KEY)
    assert refused.status_code == 409, refused.text
    assert "agreement 0.000 < active" in refused.json()["detail"] and "force=true" in refused.json()["detail"]
    stages = {v["version"]: v["stage"] for v in client.get("/api/models/normal-12lead").json()["versions"]}
    assert stages[says_abnormal] == "active" and stages[says_normal] == "candidate"

    # Nothing to compare on (a dataset that does not exist) is not a pass either.
    unknown = client.post(f"{base}/{says_normal}/promote", params={"evaluation": "no-such-dataset"}, headers=KEY)
    assert unknown.status_code == 409 and "nothing to compare on" in unknown.json()["detail"]

    # An equal score passes the gate; the answer carries the comparison.
    equal = _register_constant(database_url, p_abnormal_high=True)
    passed = client.post(f"{base}/{equal}/promote", params={"evaluation": dataset}, headers=KEY)
    assert passed.status_code == 200, passed.text
    assert passed.json()["gate"]["passed"] is True and passed.json()["forced"] is False

    overridden = client.post(
        f"{base}/{says_normal}/promote", params={"evaluation": dataset, "force": "true"}, headers=KEY
    )
    assert overridden.status_code == 200 and overridden.json()["stage"] == "active"
    assert client.get(f"{base}/999/comparison").status_code == 404
    # NUL in a path or query is refused before routing (ecg_gateway.errors.RefuseNulBytes)
    assert client.get(f"{base}/{says_normal}/comparison", params={"evaluation": "a\x00b"}).status_code == 400
    assert client.post("/api/models/a%00b/versions/1/promote", headers=KEY).status_code == 400
