"""The review round trip in real headless Chromium against the real stack: upload and keep, two reviewers (who first
disagree), a training job that includes the reviewed recordings, live agreement and the promotion gate on /models.

The training job is started on the /training page and run by ``run_training_job`` in this process (what the
Celery task wraps), so the test needs no training worker (when an earlier test started one, it may run it instead).
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from ecg_shared.formats import zip_wfdb_record
from tests.gateway.conftest import API_KEY
from tests.gateway.test_browser import SCREENSHOTS, browser, page  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
BASE_SIZE = 24


@pytest.fixture(scope="module")
def base_dataset(data_dir, database_url) -> str:
    """24 real PTB-XL records, labelled with the reviewers' words (normal, abnormal) so no mapping is needed."""
    from ecg_shared.db import session_scope
    from ecg_shared.db.store import StoreItem, content_hash, store_recordings
    from ecg_shared.formats import read_ecg

    name = f"review-base-{uuid.uuid4().hex[:6]}"
    items = []
    for header in sorted((data_dir / "ptbxl").glob("*.hea"))[:BASE_SIZE]:
        record = read_ecg(header)
        digest = content_hash(header.read_bytes() + header.with_suffix(".dat").read_bytes())
        items.append(StoreItem(record, header.with_suffix("").as_uri(), digest, digest, label=record.label.lower()))
    with session_scope(database_url) as session:
        store_recordings(session, name, items)
    return name


def _upload(tab, path) -> int:
    tab.set_input_files("#file-input", str(path))
    tab.locator("#review-kept").wait_for(timeout=30_000)
    text = tab.locator("#review-kept").inner_text()
    return int(text.split("#")[1].split(" ")[0])


def _review(tab, reviewer: str, label: str, comment: str = "") -> None:
    tab.fill("#reviewer", reviewer)
    tab.check(f"input[name=review-label][value={label}]")
    tab.fill("#review-comment", comment)
    tab.click("#save-review")
    tab.locator(f"#review-list li[data-reviewer='{reviewer}']", has_text=label.capitalize()).wait_for(timeout=10_000)


def test_upload_keep_review_train_and_measure(page, gateway_url, wellnest_sample, data_dir, base_dataset, tmp_path):  # noqa: F811
    from ecg_training.runner import run_training_job

    page.goto("/")
    assert page.locator("#keep-for-review").is_checked()  # kept by default...
    page.set_input_files("#file-input", str(wellnest_sample))
    page.locator("#review-note").wait_for(timeout=30_000)  # ...once the page has the key
    assert "type the API key" in page.locator("#review-note").inner_text()
    page.fill("#api-key", API_KEY)
    page.locator("#api-key").dispatch_event("change")

    wellnest_id = _upload(page, wellnest_sample)
    assert "no file name or patient details" in page.locator("#review-kept").inner_text()
    assert "Not reviewed yet" in page.locator("#review-summary").inner_text()
    _review(page, "Dr Ada", "abnormal", "ST changes in V2-V4")
    assert "“ST changes in V2-V4”" in page.locator("#review-list").inner_text()
    _review(page, "Dr Bo", "normal")
    summary = page.locator("#review-summary")
    assert summary.get_attribute("data-disagreement") == "true"
    assert "Reviewers disagree: Dr Ada says abnormal, Dr Bo says normal" in summary.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "review-disagreement.png"), full_page=True)
    _review(page, "Dr Bo", "abnormal", "on second look, agreed")
    assert summary.get_attribute("data-disagreement") == "false"
    assert "Reviewed as abnormal by 2 reviewers" in summary.inner_text()
    assert page.locator("#review-list li").count() == 2

    # A second recording: the panel now belongs to it alone.
    archive = tmp_path / "record.zip"
    archive.write_bytes(zip_wfdb_record(data_dir / "ptbxl" / "00003_lr.hea"))
    ptbxl_id = _upload(page, archive)
    assert ptbxl_id != wellnest_id and page.locator("#review-list li").count() == 0
    _review(page, "Dr Ada", "normal")

    api = httpx.Client(base_url=gateway_url, timeout=30)
    assert api.get(f"/api/recordings/{wellnest_id}/reviews").json()["settled_label"] == "abnormal"

    # Train on the base dataset together with the reviewed recordings, from the training page.
    page.goto("/training")
    form = page.locator("#training-form")
    form.locator("input[name=dataset]").fill(base_dataset)
    form.locator("input[name=extra_datasets]").fill("reviewed")
    form.locator("select[name=family]").select_option("cnn")
    form.locator("input[name=epochs]").fill("1")
    form.locator("input[name=normal_classes]").fill("normal")
    form.locator("button[type=submit]").click()
    mine = page.locator(f"#training-detail[data-model='{base_dataset}-cnn']")  # not an earlier test's job
    mine.wait_for(timeout=10_000)
    job_id = int(mine.get_attribute("data-job"))
    assert f"{base_dataset} + reviewed" in page.locator("#training-detail").inner_text()
    # Run here; where the stack's own training worker (started by an earlier test) took the job first, it is
    # "skipped" here and the worker's run is awaited instead.
    outcome = run_training_job(job_id)
    assert outcome in ("succeeded", "skipped"), api.get(f"/api/training-jobs/{job_id}").json()["error"]
    wait_ms = 300_000 if outcome == "skipped" else 15_000
    page.locator("#training-detail [data-status=succeeded]").wait_for(timeout=wait_ms)
    job = api.get(f"/api/training-jobs/{job_id}").json()
    card = next(
        v["model_card"]
        for v in api.get(f"/api/models/{job['model_name']}").json()["versions"]
        if v["version"] == job["model_version"]
    )
    sources = card["data"]["sources"]
    assert sources[base_dataset] == {"recordings": BASE_SIZE, "review_labels": 0}
    assert sources["reviewed"]["review_labels"] == sources["reviewed"]["recordings"] >= 2  # ours among them
    assert card["data"]["extra_datasets"] == ["reviewed"]

    # Live agreement on /models, as the API computes it; our two recordings count for the 12-lead model.
    expected = {m["name"]: m for m in api.get("/api/reviews/agreement").json()["models"]}
    assert expected["normal-12lead"]["reviewed"] >= 2
    page.goto("/models")
    for name, figures in expected.items():
        row = page.locator(f"#live-agreement tr[data-model='{name}']")
        row.wait_for(timeout=10_000)
        assert f"{figures['agreed']} of {figures['reviewed']}" in row.inner_text()
        if figures["rate"] is not None:
            assert f"{100 * figures['rate']:.1f}\u00a0%" in row.locator(".agreement-rate").inner_text()

    # The gate before a promotion: a new 12-lead candidate against the active one on the reviewed recordings.
    from ecg_shared import registry
    from ecg_shared.db import session_scope
    from tests.inference.onnx_models import tiny_model, twelve_lead_metadata

    with session_scope() as session:
        metadata = twelve_lead_metadata()
        candidate = registry.register_version(session, metadata, tiny_model(metadata, seed=11)).version
    compared = api.get(f"/api/models/normal-12lead/versions/{candidate}/comparison", timeout=120)
    assert compared.status_code == 200, compared.text
    page.reload()
    section = page.locator("section.model-section[data-model='normal-12lead']")
    section.locator(f"tr[data-version='{candidate}'] button").click()
    # First the confirmation with both versions' test metrics, then the gate's comparison on the reviewed recordings.
    page.locator("#promote-dialog").get_by_role("button", name=f"Promote v{candidate}").click()
    page.locator("#gate-table").wait_for(timeout=60_000)
    dialog = page.locator("#gate-dialog")
    assert "the clinician-reviewed recordings" in dialog.inner_text()
    gate = compared.json()
    assert gate["n"] >= 2 and f"{gate['n']} recordings both versions can read" in dialog.inner_text()
    assert page.locator("#gate-table tbody tr").count() == 2
    assert f"v{candidate}" in page.locator("#gate-table tbody tr").first.inner_text()
    expected_button = "#gate-promote" if gate["passed"] else "#gate-force"
    assert page.locator(expected_button).is_visible()
    page.screenshot(path=str(SCREENSHOTS / "promotion-gate.png"), full_page=True)
    page.click("#gate-cancel")
    stages = {v["version"]: v["stage"] for v in api.get("/api/models/normal-12lead").json()["versions"]}
    assert stages[candidate] == "candidate"
