"""The upload page with clinical exports, in real headless Chromium against the real processes: a Philips UTF-16 XML
and a GE MUSE XML get a verdict and their 12-lead trace; a truncated HL7 aECG gets an error that names the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gateway.test_browser import SCREENSHOTS, _ink_pixels, browser, page  # noqa: F401 - fixtures used below

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.mark.parametrize(
    "name", ["philips_sierra_xml/3191723_ZZDEMOPTONLY_1-04_orig.xml", "ge_muse_xml/MUSE_20080710_165457_96000.xml"]
)
def test_a_clinical_xml_export_gets_a_verdict_and_its_12_lead_trace(page, formats_dir, tmp_path, name):  # noqa: F811
    upload = tmp_path / "export.xml"
    upload.write_bytes((formats_dir / name).read_bytes())
    page.goto("/")
    options = page.eval_on_selector_all("#format-hint option", "options => options.map(o => o.textContent)")
    assert {"muse_xml", "philips_xml", "hl7_aecg", "dicom_ecg", "scp_ecg", "edf", "ishne"} <= set(options)
    page.set_input_files("#file-input", str(upload))
    page.locator("#ecg-canvas[data-leads='12']").wait_for(timeout=30_000)
    assert page.locator("#verdict-label").inner_text().strip().lower() in ("normal", "abnormal", "unreadable")
    # both stack models read a 12-lead file (and any other a test left active on the shared stack)
    assert page.locator(".model-card").count() >= 2
    assert page.locator(".model-card", has_text="normal-12lead").count() == 1
    assert "bpm" in page.locator("#facts").inner_text()
    assert _ink_pixels(page) > 5000
    assert page.locator("#upload-error").is_hidden()
    page.screenshot(path=str(SCREENSHOTS / f"upload-{Path(name).parent.name}.png"), full_page=True)


def test_a_truncated_xml_export_gets_an_error_naming_the_problem(page, formats_dir, tmp_path):  # noqa: F811
    truncated = tmp_path / "truncated.xml"
    truncated.write_bytes((formats_dir / "hl7_aecg" / "Example aECG.xml").read_bytes()[:200_000])
    page.goto("/")
    page.set_input_files("#file-input", str(truncated))
    error = page.locator("#upload-error")
    error.wait_for(state="visible", timeout=20_000)
    text = error.inner_text()
    assert 'Could not classify "truncated.xml"' in text and "malformed or truncated" in text
    assert "Traceback" not in text and "internal error" not in text


def test_a_healforce_handheld_export_gets_a_verdict_and_its_three_limb_leads(page, formats_dir, tmp_path):  # noqa: F811
    """The Prince 180D's non-standard SCP file: three limb leads drawn, the rhythm model's answer on lead I, no
    12-lead model (it needs twelve)."""
    upload = tmp_path / "62.SCP"
    upload.write_bytes((formats_dir / "scp_ecg" / "62.SCP").read_bytes())
    page.goto("/")
    page.set_input_files("#file-input", str(upload))
    page.locator("#ecg-canvas[data-leads='3']").wait_for(timeout=30_000)
    assert page.locator("#upload-error").is_hidden()
    assert page.locator(".model-card", has_text="rhythm-1lead").count() == 1
    assert page.locator(".model-card", has_text="normal-12lead").count() == 0
    facts = page.locator("#facts").inner_text()
    assert "30.0 s" in facts and "150 Hz" in facts and "scp_ecg" in facts and "60 bpm" in facts
    assert _ink_pixels(page) > 3000
    page.screenshot(path=str(SCREENSHOTS / "upload-healforce-scp.png"), full_page=True)
