"""The upload page's report download in real headless Chromium: after a classification the page offers the PDF,
prints the patient fields typed for it, and forgets them (and the offer) when the next upload starts or fails."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.gateway.test_browser import SCREENSHOTS, browser, page  # noqa: F401 (the pages' Chromium fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _wait_for_verdict(page) -> None:  # noqa: F811 (page: the fixture)
    page.wait_for_function(
        "() => document.getElementById('verdict').className.includes('verdict-')"
        " && !document.getElementById('verdict').className.includes('verdict-empty')",
        timeout=20_000,
    )


def test_the_page_offers_the_report_after_a_classification(page, wellnest_sample, tmp_path):  # noqa: F811
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext missing: run scripts/install-test-tools.sh (make install does)")
    page.goto("/")
    card = page.locator("#report-card")
    assert card.is_hidden(), "no report is offered before a classification"
    page.set_input_files("#file-input", str(wellnest_sample))
    _wait_for_verdict(page)
    card.wait_for(state="visible")
    assert "sample-10s.raw" in card.inner_text()
    page.fill("[name=patient_name]", "Ada Quillfeather-Example")
    page.fill("[name=patient_id]", "MRN-7730-5521")
    page.screenshot(path=str(SCREENSHOTS / "upload-report-offer.png"), full_page=True)
    with page.expect_download(timeout=30_000) as info:
        page.click("#report-download")
    download = info.value
    assert re.fullmatch(r"ecg-report-\d{8}-\d{6}\.pdf", download.suggested_filename)
    pdf = tmp_path / download.suggested_filename
    download.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF-")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "Patient: Ada Quillfeather-Example" in text and "ID: MRN-7730-5521" in text
    assert page.locator("#report-error").is_hidden()
    page.locator("#report-status").filter(has_text="saved as").wait_for()

    # A failed upload withdraws the offer and the patient fields with it.
    broken = tmp_path / "broken.raw"
    broken.write_bytes(b"not an ECG at all" * 10)
    page.set_input_files("#file-input", str(broken))
    page.locator("#upload-error").wait_for(state="visible")
    assert card.is_hidden()
    # The next good upload offers a report again, with empty patient fields.
    page.set_input_files("#file-input", str(wellnest_sample))
    card.wait_for(state="visible")
    assert page.input_value("[name=patient_name]") == "" and page.input_value("[name=patient_id]") == ""
