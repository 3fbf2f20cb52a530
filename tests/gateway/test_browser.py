"""The pages in real headless Chromium (Debian's package, driven by Playwright) against the real processes.

Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ecg_shared.settings import REPO_ROOT
from tests.gateway.conftest import API_KEY

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: run scripts/install-chromium.sh (make install does)")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture()
def page(browser, gateway_url):
    context = browser.new_context(viewport={"width": 1360, "height": 1000}, base_url=gateway_url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _ink_pixels(page) -> int:
    """Dark (trace-coloured) pixels on the ECG canvas: zero when nothing was drawn."""
    return page.evaluate("""() => {
        const c = document.getElementById('ecg-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] < 80 && d[i + 1] < 80 && d[i + 2] < 80) n++;
        return n;
    }""")


def test_upload_real_wellnest_recording_shows_verdict_models_and_12_lead_trace(page, wellnest_sample):
    page.goto("/")
    page.set_input_files("#file-input", str(wellnest_sample))
    verdict = page.locator("#verdict-label")
    page.wait_for_function(
        "() => document.getElementById('verdict').className.includes('verdict-')"
        " && !document.getElementById('verdict').className.includes('verdict-empty')",
        timeout=20_000,
    )
    assert verdict.inner_text().strip().lower() in ("normal", "abnormal", "unreadable")
    assert "probability" in page.locator("#verdict-probability").inner_text()
    assert page.locator(".model-card").count() == 2
    assert {page.locator(".model-card").nth(i).get_attribute("data-model") for i in range(2)} == {
        "rhythm-1lead",
        "normal-12lead",
    }
    assert "bpm" in page.locator("#facts").inner_text()
    assert page.locator("#quality").inner_text().startswith("Signal quality")
    canvas = page.locator("#ecg-canvas")
    assert canvas.get_attribute("data-leads") == "12"
    assert _ink_pixels(page) > 5000
    assert page.locator("#upload-error").is_hidden()
    page.screenshot(path=str(SCREENSHOTS / "upload-wellnest.png"), full_page=True)

    # Zooming redraws the strip wider.
    width = canvas.bounding_box()["width"]
    page.locator("#speed").select_option("50")
    assert canvas.bounding_box()["width"] > 1.5 * width


def test_long_single_lead_strip_scrolls_and_zooms(page, data_dir, tmp_path):
    """A 30 s CinC 2017 recording (WFDB zipped): one lead on a strip wider than the page, widened by the zoom."""
    from ecg_shared.formats import zip_wfdb_record

    archive = tmp_path / "A00001.zip"
    archive.write_bytes(zip_wfdb_record(data_dir / "cinc2017" / "A00001.hea"))
    page.goto("/")
    page.set_input_files("#file-input", str(archive))
    page.locator("#ecg-canvas[data-leads='1']").wait_for(timeout=20_000)
    assert page.locator(".model-card").count() == 1  # the 12-lead model cannot read one lead
    scroller = page.locator("#trace-scroll")
    scroll_width, client_width = scroller.evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert scroll_width > client_width, "30 s at 25 mm/s does not fit: the strip scrolls"
    page.locator("#zoom").fill("10")
    zoomed = page.locator("#ecg-canvas").bounding_box()["width"]
    assert zoomed > 2 * scroll_width
    assert zoomed == pytest.approx((14 + 30 * 25 + 4) * 10, rel=0.01)  # 10 px per mm, label margin + strip
    scroller.evaluate("e => { e.scrollLeft = 2000; }")
    page.locator("#trace-scroll").screenshot(path=str(SCREENSHOTS / "long-strip-zoomed.png"))


def test_broken_file_shows_a_clear_error_next_to_the_upload(page, tmp_path):
    broken = tmp_path / "broken.raw"
    broken.write_bytes(b"\x13\x37 definitely not an ECG " * 40)
    page.goto("/")
    page.set_input_files("#file-input", str(broken))
    error = page.locator("#upload-error")
    error.wait_for(state="visible", timeout=20_000)
    text = error.inner_text()
    assert 'Could not classify "broken.raw"' in text
    assert "Traceback" not in text and "internal error" not in text
    assert page.locator("#results").is_hidden()
    page.screenshot(path=str(SCREENSHOTS / "upload-broken-file.png"), full_page=True)


@pytest.fixture(scope="module")
def cinc_dataset(data_dir, database_url) -> str:
    """60 real CinC 2017 recordings (40 normal, 20 AF) stored as dataset 'cinc-browser'."""
    from ecg_shared.db import session_scope
    from ecg_shared.db.store import StoreItem, content_hash, store_recordings
    from ecg_shared.formats import read_ecg

    folder = data_dir / "cinc2017"
    with open(folder / "REFERENCE.csv") as handle:
        labels = dict(csv.reader(handle))
    chosen = [name for name, label in labels.items() if label == "N"][:40]
    chosen += [name for name, label in labels.items() if label == "A"][:20]
    items = []
    for name in chosen:
        header = folder / f"{name}.hea"
        digest = content_hash((folder / f"{name}.mat").read_bytes())
        items.append(StoreItem(read_ecg(header), str(header), "test", digest, labels[name]))
    with session_scope(database_url) as session:
        store_recordings(session, "cinc-browser", items)
    return "cinc-browser"


def test_start_a_short_training_job_and_watch_it_finish(page, stack, cinc_dataset):
    stack.start("training-worker", timeout=180)
    page.goto("/training")
    page.fill("#api-key", API_KEY)
    page.locator("#api-key").dispatch_event("change")
    form = page.locator("#training-form")
    form.locator("[name=dataset]").fill(cinc_dataset)
    form.locator("[name=name]").fill("browser-test-model")
    form.locator("[name=family]").select_option("cnn")
    form.locator("[name=epochs]").fill("2")
    form.locator("[name=normal_classes]").fill("N")
    form.locator("[name=sampling_rate]").fill("100")
    form.locator("[name=batch_size]").fill("16")
    form.locator("button[type=submit]").click()
    page.locator("#training-detail[data-model='browser-test-model']").wait_for(timeout=15_000)
    assert page.locator("#training-error").is_hidden(), page.locator("#training-error").inner_text()
    status = page.locator("#training-detail[data-model='browser-test-model'] [data-status]")
    page.wait_for_function(
        "() => ['succeeded', 'failed', 'cancelled'].includes(document.querySelector("
        "\"#training-detail[data-model='browser-test-model'] [data-status]\")?.dataset.status)",
        timeout=300_000,
    )
    page.screenshot(path=str(SCREENSHOTS / "training-finished.png"), full_page=True)
    assert status.get_attribute("data-status") == "succeeded", page.locator("#training-detail").inner_text()
    detail = page.locator("#training-detail")
    assert "epoch 2 / 2" in detail.inner_text()
    assert detail.locator("table.confusion").count() == 1

    # The new version is on the models page; promoting it (the key is still in this tab) makes it active.
    page.goto("/models")
    section = page.locator("section[data-model='browser-test-model']")
    section.wait_for(timeout=10_000)
    assert "candidate" in section.inner_text() and "no active version" in section.inner_text()
    section.get_by_role("button", name="Promote").click()
    # The promotion gate's dialog comes first: nothing active to compare with, so it passes.
    page.locator("#gate-promote").wait_for(timeout=30_000)
    assert "no active version to compare with" in page.locator("#gate-verdict").inner_text()
    page.click("#gate-promote")
    page.locator("section[data-model='browser-test-model'] .badge-active").wait_for(timeout=10_000)
    assert "active v1" in page.locator("section[data-model='browser-test-model'] h2").inner_text()
    assert page.locator("#models-error").is_hidden()
    section = page.locator("section[data-model='browser-test-model']")
    section.locator("details").first.locator("summary").click()
    assert section.locator("table.confusion").count() == 1
    card = section.locator("dl.kv").first.inner_text()
    assert "intended use" in card.lower() and "[object" not in card
    page.screenshot(path=str(SCREENSHOTS / "models.png"), full_page=True)


def test_start_an_ingestion_job_and_see_its_progress_and_failures(page, stack, azurite, wellnest_sample):
    """Two blobs in Azurite, one a real Wellnest recording, one broken: one stored, one failure with its reason."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.create_container("browser-ingest")
    container.upload_blob("batch/sample-10s.raw", wellnest_sample.read_bytes())
    container.upload_blob("batch/broken.raw", b"\x00 not an ECG " * 50)
    stack.start("ingestion-worker", timeout=120)

    page.goto("/ingestion")
    page.fill("#api-key", API_KEY)
    page.locator("#api-key").dispatch_event("change")
    form = page.locator("#ingestion-form")
    form.locator("[name=dataset]").fill("browser-ingest")
    form.locator("[name=container]").fill("browser-ingest")
    form.locator("[name=connection_string]").fill(azurite.connection_string)
    form.locator("[name=prefix]").fill("batch/")
    form.locator("button[type=submit]").click()
    detail = page.locator("#ingestion-detail[data-dataset='browser-ingest']")
    detail.wait_for(timeout=15_000)
    assert page.locator("#ingestion-error").is_hidden(), page.locator("#ingestion-error").inner_text()
    assert form.locator("[name=connection_string]").input_value() == ""  # the secret leaves the page once sent
    page.wait_for_function(
        "() => ['succeeded', 'failed'].includes(document.querySelector("
        "\"#ingestion-detail[data-dataset='browser-ingest'] [data-status]\")?.dataset.status)",
        timeout=120_000,
    )
    text = detail.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "ingestion-finished.png"), full_page=True)
    assert "2 of 2 handled: 1 stored, 0 already there, 1 failed" in text, text
    assert "batch/broken.raw" in detail.locator("table").inner_text()
    assert azurite.account_key not in page.content()
