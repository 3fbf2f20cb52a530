"""The pages in real headless Chromium (Debian's package, driven by Playwright) against the real processes.

Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import csv
import json
from contextlib import contextmanager
from pathlib import Path

import pytest

from ecg_shared.settings import REPO_ROOT
from tests.gateway.conftest import API_KEY, SECRET_KEY

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
        pytest.skip(f"{CHROMIUM} missing: run scripts/install-test-tools.sh (make install does)")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@contextmanager
def _page_on(browser, base_url: str):
    """A fresh page on ``base_url``; any JavaScript error on it fails the test."""
    context = browser.new_context(viewport={"width": 1360, "height": 1000}, base_url=base_url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture()
def page(browser, gateway_url):
    with _page_on(browser, gateway_url) as page:
        yield page


def _ink_pixels(page) -> int:
    """Dark (trace-coloured) pixels on the ECG canvas: zero when nothing was drawn."""
    return page.evaluate("""() => {
        const c = document.getElementById('ecg-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] < 80 && d[i + 1] < 80 && d[i + 2] < 80) n++;
        return n;
    }""")


def _upload(page, path: Path) -> None:
    """Choose ``path`` on the upload page and wait until the page shows its result or its error."""
    page.set_input_files("#file-input", str(path))
    page.wait_for_function(
        "name => document.getElementById('verdict-file').textContent === `Result for ${name}`"
        " || !document.getElementById('upload-error').hidden",
        arg=path.name,
        timeout=30_000,
    )


def _classified(gateway_url: str, path: Path) -> dict:
    """The gateway's answer for ``path`` as an API client gets it (with the explanation)."""
    import httpx

    with path.open("rb") as handle:
        response = httpx.post(f"{gateway_url}/classify?explain=true", files={"file": (path.name, handle)}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def _highlight_pixels_per_row(page) -> dict[str, int]:
    """Evidence-coloured (orange) pixels in each lead's row of the ECG canvas."""
    return page.evaluate("""() => {
        const c = document.getElementById('ecg-canvas');
        const rows = JSON.parse(c.dataset.rows), scale = c.width / parseFloat(c.style.width);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const counts = {};
        for (const row of rows) {
            let n = 0;
            const y0 = Math.ceil(row.top * scale) + 1, y1 = Math.floor((row.top + row.height) * scale) - 1;
            for (let y = y0; y < y1; y++) for (let x = 0; x < c.width; x++) {
                const i = 4 * (y * c.width + x);
                if (d[i] > 200 && d[i + 1] - d[i + 2] > 40) n++;
            }
            counts[row.name] = n;
        }
        return counts;
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


def test_a_verdict_decided_by_rule_shows_no_probability(page, tmp_path):
    """White noise fails the quality check: the verdict is unreadable by rule, and the page claims no probability."""
    import numpy as np
    import wfdb

    from ecg_shared.formats import zip_wfdb_record

    noise = np.random.default_rng(1).standard_normal((3000, 1))
    wfdb.wrsamp("noise", fs=300, units=["mV"], sig_name=["II"], p_signal=noise, fmt=["16"], write_dir=str(tmp_path))
    archive = tmp_path / "noise.zip"
    archive.write_bytes(zip_wfdb_record(tmp_path / "noise.hea"))
    page.goto("/")
    _upload(page, archive)
    assert page.locator("#verdict-label").inner_text().lower() == "unreadable"
    assert page.locator("#verdict-probability").inner_text() == "decided by rule, not by a model: no probability"
    assert "quality check failed" in page.locator("#verdict-rule").inner_text()


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


def test_a_failed_or_new_upload_clears_the_previous_result(page, wellnest_sample, data_dir, tmp_path):
    """The stale-verdict sequence: after a good recording, garbage, an empty file and a .hea without its signal each
    leave no verdict or trace of the previous recording on screen, and the error names the file."""
    from ecg_shared.formats import zip_wfdb_record

    garbage = tmp_path / "garbage.raw"
    garbage.write_bytes(b"\x13\x37 definitely not an ECG " * 40)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    header_only = tmp_path / "00001_lr.hea"
    header_only.write_bytes((data_dir / "ptbxl" / "00001_lr.hea").read_bytes())
    page.goto("/")
    for bad in (garbage, empty, header_only):
        _upload(page, wellnest_sample)
        assert page.locator("#upload-error").is_hidden()
        assert page.locator("#verdict-file").inner_text() == "Result for sample-10s.raw"
        assert page.locator("#results-file").inner_text() == "Recording: sample-10s.raw"
        assert page.locator("#verdict-label").inner_text().lower() in ("normal", "abnormal", "unreadable")
        assert _ink_pixels(page) > 5000

        _upload(page, bad)
        error = page.locator("#upload-error")
        assert error.is_visible() and f'"{bad.name}"' in error.inner_text()
        assert "Traceback" not in error.inner_text()
        verdict = page.locator("#verdict")
        assert "verdict-empty" in verdict.get_attribute("class")
        assert page.locator("#verdict-label").inner_text() == "No result"
        assert bad.name in verdict.inner_text() and "sample-10s.raw" not in verdict.inner_text()
        assert "probability" not in verdict.inner_text()
        assert page.locator("#results").is_hidden()
        assert page.locator("#ecg-canvas").evaluate("c => c.width") == 0
        assert "sample-10s.raw" not in page.locator("main").inner_text()
        page.screenshot(path=str(SCREENSHOTS / f"stale-verdict-after-{bad.stem}.png"), full_page=True)

    # A new good upload replaces the result, named by its own file.
    archive = tmp_path / "A00001.zip"
    archive.write_bytes(zip_wfdb_record(data_dir / "cinc2017" / "A00001.hea"))
    _upload(page, wellnest_sample)
    _upload(page, archive)
    assert page.locator("#verdict-file").inner_text() == "Result for A00001.zip"
    assert page.locator("#ecg-canvas").get_attribute("data-leads") == "1"
    assert "sample-10s.raw" not in page.locator("main").inner_text()
    quality = page.locator("#quality").inner_text()
    assert "null" not in quality and "undefined" not in quality
    lines = [line for line in quality.splitlines() if line.strip()]
    assert lines[:2] == ["Signal quality", "Signal quality: good — no problems found"]
    assert lines[2].startswith("Noise score"), lines


def test_each_models_evidence_is_drawn_on_the_leads_it_read(page, gateway_url, wellnest_sample):
    """The rhythm model reads lead II: its evidence is shaded on lead II only; the 12-lead model's on its leads;
    segments below the threshold are not drawn; hovering a shaded stretch shows its value."""
    from ecg_shared.vocabulary import EVIDENCE_MIN_IMPORTANCE

    answer = _classified(gateway_url, wellnest_sample)
    explanations = {e["model"]: e for e in answer["explanation"]}
    read = {m["name"]: m["leads"] for m in answer["models"]}
    assert read["rhythm-1lead"] == ["II"] and len(read["normal-12lead"]) == 12
    page.goto("/")
    _upload(page, wellnest_sample)
    canvas = page.locator("#ecg-canvas")
    options = page.locator("#evidence-model option").all_inner_texts()
    assert options[-1] == "none" and len(options) == 3
    for model in ("rhythm-1lead", "normal-12lead"):
        option = next(text for text in options if text.startswith(f"{model}:"))
        page.locator("#evidence-model").select_option(label=option)
        drawn = [s for s in explanations[model]["segments"] if s["importance"] >= EVIDENCE_MIN_IMPORTANCE]
        assert canvas.get_attribute("data-evidence-segments") == str(len(drawn))
        assert canvas.get_attribute("data-evidence-leads").split(",") == read[model]
        shaded = _highlight_pixels_per_row(page)
        assert all(shaded[lead] == 0 for lead in shaded if lead not in read[model]), (model, shaded)
        if drawn:
            assert all(shaded[lead] > 0 for lead in read[model]), (model, shaded)
    assert drawn or any(explanations["rhythm-1lead"]["segments"]), "no evidence at all to test with"
    weak = [s for e in explanations.values() for s in e["segments"] if s["importance"] < EVIDENCE_MIN_IMPORTANCE]
    assert weak, "every segment is above the threshold: the threshold goes untested"

    option = next(text for text in options if text.startswith("rhythm-1lead:"))
    page.locator("#evidence-model").select_option(label=option)
    rhythm = [s for s in explanations["rhythm-1lead"]["segments"] if s["importance"] >= EVIDENCE_MIN_IMPORTANCE]
    assert rhythm, "the rhythm model's explanation has nothing above the threshold on this recording"
    strongest = max(rhythm, key=lambda s: s["importance"])
    row = next(r for r in json.loads(canvas.get_attribute("data-rows")) if r["name"] == "II")
    px_per_mm = float(canvas.get_attribute("data-px-per-mm"))
    x = (14 + (strongest["start_s"] + strongest["end_s"]) / 2 * 25) * px_per_mm
    canvas.hover(position={"x": x, "y": row["top"] + row["height"] / 2})
    tip = page.locator("#evidence-tip")
    tip.wait_for(state="visible", timeout=5_000)
    assert f"Lead II, {strongest['start_s']:g}–{strongest['end_s']:g} s" in tip.inner_text()
    assert f"by {100 * strongest['importance']:.1f} points" in tip.inner_text()
    legend = page.locator("#trace-legend").inner_text()
    assert "shaded on lead II (rhythm-1lead)" in legend
    page.screenshot(path=str(SCREENSHOTS / "evidence-rhythm-lead-ii.png"), full_page=True)
    page.locator("#evidence-model").select_option(label="none")
    assert sum(_highlight_pixels_per_row(page).values()) == 0

    # Clinical names wherever a person reads a class; the codes stay beside them.
    models_text = page.locator("#model-results").inner_text()
    for name in ("normal sinus rhythm (N)", "atrial fibrillation (A)", "other rhythm (O)", "normal ECG (Normal)"):
        assert name in models_text


@pytest.fixture(scope="module")
def bundled_gateway_url(database_url, azurite):
    """inference (serving the bundled models, which are fused with measurements) + gateway: the tiny models of the
    other tests take no measurements."""
    from tests.support.stack import start_stack

    models = REPO_ROOT / "models"
    if not (models / "normal-12lead.onnx").exists() or not (models / "rhythm-1lead.onnx").exists():
        pytest.skip("the bundled models are not trained yet (make models)")
    env = {"ECG_INFERENCE_MODEL_SOURCE": "bundled", "ECG_MODELS_DIR": str(models), "ECG_SECRET_KEY": SECRET_KEY}
    with start_stack(
        ["inference", "gateway"],
        database_url=database_url,
        artifact_connection_string=azurite.connection_string,
        api_key=API_KEY,
        env=env,
    ) as running:
        yield running.url("gateway")


@pytest.fixture()
def bundled_page(browser, bundled_gateway_url):
    with _page_on(browser, bundled_gateway_url) as page:
        yield page


def test_the_measurements_behind_each_models_answer_are_listed_as_the_service_gave_them(
    bundled_page, bundled_gateway_url, wellnest_sample
):
    """A model fused with measurements: the ones that move its probability by a point or more, largest first, each
    with its value here, the normal recordings' median and the points; for the 12-lead model, which answers from
    measurements alone, its leads too. Nothing for "none"."""
    from ecg_shared.vocabulary import EVIDENCE_MIN_IMPORTANCE

    answer = _classified(bundled_gateway_url, wellnest_sample)
    explanations = {e["model"]: e for e in answer["explanation"]}
    bundled_page.goto("/")
    _upload(bundled_page, wellnest_sample)
    options = bundled_page.locator("#evidence-model option").all_inner_texts()
    box = bundled_page.locator("#measurements")
    for model in ("rhythm-1lead", "normal-12lead"):
        bundled_page.locator("#evidence-model").select_option(
            label=next(t for t in options if t.startswith(f"{model}:"))
        )
        explanation = explanations[model]
        strong = [m for m in explanation["measurements"] if abs(m["importance"]) >= EVIDENCE_MIN_IMPORTANCE][:8]
        assert box.is_visible()
        rows = box.locator("tbody tr").all()
        assert len(rows) == len(strong), model
        for row, measurement in zip(rows, strong, strict=True):
            cells = row.locator("td").all_inner_texts()
            assert cells[0] == measurement["description"]
            sign = "+" if measurement["importance"] > 0 else "\u2212"
            assert cells[3] == f"{sign}{100 * abs(measurement['importance']):.1f}", (model, cells)
        text = box.inner_text()
        assert "null" not in text and "undefined" not in text and "NaN" not in text
        if explanation["lead_method"] == "measurements":
            strongest = max(explanation["leads"], key=lambda lead: abs(explanation["leads"][lead]))
            assert "By lead" in text and strongest in text
    assert strong, "the 12-lead model's answer on the Wellnest sample moved by no measurement: nothing tested"
    bundled_page.screenshot(path=str(SCREENSHOTS / "measurements-12lead.png"), full_page=True)
    bundled_page.locator("#evidence-model").select_option(label="none")
    assert not box.is_visible()


def test_a_model_not_judged_shows_why_and_no_probabilities(bundled_page, bundled_gateway_url, formats_dir, tmp_path):
    """A real recording whose chest leads carry no signal (the Contec EDF): the 12-lead model's card says it was
    not judged and why, with no probability bars; the headline and the agreement box count only the judged model."""
    upload = tmp_path / "chest-leads-off.edf"
    upload.write_bytes((formats_dir / "edf" / "0000050.ECG.edf").read_bytes())
    answer = _classified(bundled_gateway_url, upload)
    models = {m["name"]: m for m in answer["models"]}
    assert models["normal-12lead"]["not_judged"] and models["rhythm-1lead"]["not_judged"] is None
    bundled_page.goto("/")
    _upload(bundled_page, upload)
    card = bundled_page.locator(".model-card[data-model='normal-12lead']")
    assert card.locator(".call").inner_text().lower() == "not judged"
    assert card.locator(".says").inner_text() == models["normal-12lead"]["not_judged"]
    assert card.locator(".bars").count() == 0
    assert bundled_page.locator(".model-card[data-model='rhythm-1lead'] .bars").count() == 1
    rhythm_call = models["rhythm-1lead"]["call"]
    assert bundled_page.locator("#agreement h3").inner_text() == f"1 of 2 models judged: {rhythm_call}"
    assert answer["verdict"]["rule"] in bundled_page.locator("#agreement").inner_text()
    assert "only models reading the clean leads (I, II, III, aVR, aVL)" in bundled_page.locator("#quality").inner_text()
    bundled_page.screenshot(path=str(SCREENSHOTS / "model-not-judged.png"), full_page=True)


def test_a_model_reading_a_strip_much_shorter_than_its_window_says_so(
    bundled_page, bundled_gateway_url, wellnest_sample
):
    """The real Wellnest sample (10 s) fills a third of the rhythm model's 30 s window: its card and its line in
    the agreement box say so, as the API does; the 12-lead model (10 s windows) shows no caveat."""
    answer = _classified(bundled_gateway_url, wellnest_sample)
    models = {m["name"]: m for m in answer["models"]}
    caveat = models["rhythm-1lead"]["caveat"]
    assert caveat and caveat.startswith("read 10 s") and models["normal-12lead"]["caveat"] is None
    bundled_page.goto("/")
    _upload(bundled_page, wellnest_sample)
    expected = f"Read with care: {caveat}"
    assert bundled_page.locator(".model-card[data-model='rhythm-1lead'] .caveat").inner_text() == expected
    assert bundled_page.locator("#agreement li[data-model='rhythm-1lead'] .caveat").inner_text() == expected
    assert bundled_page.locator("[data-model='normal-12lead'] .caveat").count() == 0


def _disagreement_candidates(data_dir, tmp_path, wellnest_sample):
    from ecg_shared.formats import zip_wfdb_record

    yield wellnest_sample
    for name in ("00001_lr", "00002_lr", "00003_lr", "00004_lr", "00006_lr", "00007_lr", "00008_lr", "00009_lr"):
        archive = tmp_path / f"{name}.zip"
        archive.write_bytes(zip_wfdb_record(data_dir / "ptbxl" / f"{name}.hea"))
        yield archive


def test_model_disagreement_is_shown_with_each_call_and_the_rule(
    page, gateway_url, data_dir, tmp_path, wellnest_sample
):
    """Real recordings on which the live models disagree and agree: the page says which model says what (call,
    P(abnormal), threshold) and why the overall verdict follows (the verdict's rule as the API gives it)."""
    seen: dict[bool, tuple[Path, dict]] = {}
    for path in _disagreement_candidates(data_dir, tmp_path, wellnest_sample):
        answer = _classified(gateway_url, path)
        seen.setdefault(len({m["call"] for m in answer["models"]}) > 1, (path, answer))
        if len(seen) == 2:
            break
    assert True in seen, "the models agree on every candidate recording: nothing to show a disagreement with"
    page.goto("/")
    for disagree, (path, answer) in sorted(seen.items(), reverse=True):
        _upload(page, path)
        box = page.locator("#agreement")
        assert box.get_attribute("data-disagreement") == str(disagree).lower()
        text = box.inner_text()
        assert text.startswith("The models disagree" if disagree else "The models agree")
        for m in answer["models"]:
            item = box.locator(f"li[data-model='{m['name']}']")
            assert item.locator(".call").inner_text().lower() == m["call"]
            line = item.inner_text()
            assert f"P(abnormal) {100 * m['p_abnormal']:.1f}\u00a0%" in line
            assert f"threshold {100 * m['threshold']:.1f}\u00a0%" in line
        assert answer["verdict"]["rule"] in text and "Overall" in text
        headline = page.locator("#verdict-models").inner_text()
        assert headline.startswith("The models disagree") == disagree
        for m in answer["models"]:
            call = page.locator("#verdict-models .call").nth(answer["models"].index(m)).inner_text()
            assert m["name"] in headline and call.lower() == m["call"]
        assert "[object" not in headline
        if disagree:
            page.screenshot(path=str(SCREENSHOTS / "models-disagree.png"), full_page=True)


def test_recording_repairs_and_a_noise_burst_are_reported(page, gateway_url, wellnest_sample, tmp_path):
    """A real Wellnest blob with one corrupt frame: the answer and the page say it was filled in. The same recording
    with a noise burst added to V6: a remark naming V6 and its seconds."""
    import numpy as np

    from ecg_shared.formats import Record, read_ecg
    from ecg_shared.formats.wellnest import FRAME_BYTES, write_wellnest

    blob = bytearray(wellnest_sample.read_bytes())
    blob[2500 * FRAME_BYTES] = 0x00  # the frame loses its sync byte
    corrupt = tmp_path / "corrupt-frame.raw"
    corrupt.write_bytes(bytes(blob))
    repair = "1 corrupt or missing frame (2 ms) filled in by linear interpolation"
    assert _classified(gateway_url, corrupt)["recording"]["quality"]["repairs"] == [repair]
    page.goto("/")
    _upload(page, corrupt)
    quality = page.locator("#quality").inner_text()
    assert "Repaired while reading the file:" in quality and repair in quality
    assert "Signal quality: usable, with remarks" in quality

    record = read_ecg(wellnest_sample)
    signal = record.signal.copy()
    signal[2000:2500, record.lead_names.index("V6")] += np.random.default_rng(0).normal(0, 0.15, 500)
    burst = tmp_path / "burst-v6.raw"
    burst.write_bytes(write_wellnest(Record(signal, record.sampling_rate, record.lead_names, {})))
    leads = _classified(gateway_url, burst)["recording"]["quality"]["leads"]
    assert "noise burst at 4-5 s" in leads["V6"]
    _upload(page, burst)
    quality = page.locator("#quality").inner_text()
    assert "Lead V6: noise burst at 4-5 s" in quality
    assert "Repaired" not in quality
    page.locator("#quality").screenshot(path=str(SCREENSHOTS / "quality-burst-v6.png"))


def test_a_60_s_strip_opens_readable_with_an_overview_that_jumps_to_the_evidence(page, gateway_url, data_dir, tmp_path):
    from ecg_shared.formats import zip_wfdb_record
    from ecg_shared.vocabulary import EVIDENCE_MIN_IMPORTANCE

    archive = tmp_path / "A00003.zip"  # 60 s, one lead, 300 Hz
    archive.write_bytes(zip_wfdb_record(data_dir / "cinc2017" / "A00003.hea"))
    answer = _classified(gateway_url, archive)
    assert answer["recording"]["duration_s"] == pytest.approx(60)
    page.goto("/")
    _upload(page, archive)
    canvas = page.locator("#ecg-canvas")
    px_per_mm = float(canvas.get_attribute("data-px-per-mm"))
    assert px_per_mm >= 4  # 25 mm/s with the 1 mm grid (drawn from 3 px/mm) and labels of 10 px or more
    assert page.locator("#speed").input_value() == "25"
    scroller = page.locator("#trace-scroll")
    overview = page.locator("#overview")
    assert overview.is_visible()
    shaded = [s for s in answer["explanation"][0]["segments"] if s["importance"] >= EVIDENCE_MIN_IMPORTANCE]
    assert overview.get_attribute("data-evidence-marks") == str(len(shaded))

    def in_view(segment) -> bool:
        left, width = scroller.evaluate("e => [e.scrollLeft, e.clientWidth]")
        start, end = ((14 + t * 25) * px_per_mm for t in (segment["start_s"], segment["end_s"]))
        return left <= start and end <= left + width

    hidden = [s for s in shaded if not in_view(s)]
    assert hidden, "every shaded stretch is in view at the start: the jump goes untested"
    target = max(hidden, key=lambda s: s["importance"])
    box = overview.bounding_box()
    middle = (target["start_s"] + target["end_s"]) / 2
    overview.click(position={"x": middle / 60 * box["width"], "y": box["height"] / 2})
    assert in_view(target), scroller.evaluate("e => e.scrollLeft")
    page.screenshot(path=str(SCREENSHOTS / "long-strip-overview-jump.png"), full_page=True)


def test_api_docs_render_with_no_network(browser, gateway_url):
    """Swagger UI comes from the gateway itself: with every other host unreachable, /docs lists the API."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=gateway_url)
    outside: list[str] = []

    def only_the_gateway(route):
        if route.request.url.startswith(gateway_url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_gateway)
    page = context.new_page()
    page.goto("/docs")
    title = page.locator(".swagger-ui .info .title")
    title.wait_for(timeout=20_000)
    assert "ECG classification gateway" in title.inner_text()
    page.locator(".opblock").first.wait_for(timeout=10_000)
    assert page.locator(".opblock").count() > 10
    assert "/classify" in page.locator(".swagger-ui").inner_text()
    assert outside == []
    page.screenshot(path=str(SCREENSHOTS / "api-docs-offline.png"))
    context.close()


def _fits_the_width(page) -> None:
    width, scroll = page.evaluate("() => [document.documentElement.clientWidth, document.documentElement.scrollWidth]")
    wide = page.evaluate(
        """(width) => [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > width + 1 && !e.closest('.trace-scroll, .table-scroll'))
        .slice(0, 5).map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`)""",
        width,
    )
    assert scroll <= width, f"the page is {scroll} px wide in a {width} px window: {wide}"
    api_link = page.get_by_role("link", name="API").bounding_box()
    assert api_link["x"] >= 0 and api_link["x"] + api_link["width"] <= width


def test_a_420_px_window_keeps_the_page_within_the_width(browser, gateway_url, wellnest_sample):
    context = browser.new_context(viewport={"width": 420, "height": 900}, base_url=gateway_url)
    page = context.new_page()
    page.goto("/")
    _upload(page, wellnest_sample)
    _fits_the_width(page)
    # Every percentage keeps its "%" on its number's line.
    wrapped = page.evaluate("""() => [...document.querySelectorAll('#verdict-probability, .bars .number, .says')]
        .filter((e) => {
            const t = e.firstChild, i = t.data.indexOf('%');
            if (i < 1) return false;
            const r = document.createRange();
            r.setStart(t, i); r.setEnd(t, i + 1); const mark = r.getBoundingClientRect();
            r.setStart(t, i - 2); r.setEnd(t, i - 1); const digit = r.getBoundingClientRect();
            return Math.abs(mark.top - digit.top) > 2;
        }).map((e) => e.textContent)""")
    assert wrapped == []
    page.screenshot(path=str(SCREENSHOTS / "upload-420px.png"), full_page=True)
    page.goto("/models")
    page.locator("section.model-section").first.wait_for(timeout=10_000)
    _fits_the_width(page)
    page.screenshot(path=str(SCREENSHOTS / "models-420px.png"), full_page=True)
    context.close()


def test_the_last_time_label_is_not_clipped(page, wellnest_sample):
    page.goto("/")
    _upload(page, wellnest_sample)
    right, width, last_second = page.evaluate("""() => {
        const c = document.getElementById('ecg-canvas'), scale = c.width / parseFloat(c.style.width);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let right = -1;
        for (let y = Math.floor(c.height - 6 * parseFloat(c.dataset.pxPerMm) * scale); y < c.height; y++)
            for (let x = 0; x < c.width; x++) {
                const i = 4 * (y * c.width + x);
                if (d[i] < 200 && d[i] - d[i + 1] > 50) right = Math.max(right, x);  // the label colour, #7a1c1c
            }
        return [right, c.width, (14 + 10 * 25) * parseFloat(c.dataset.pxPerMm) * scale];
    }""")
    assert right > last_second + 10, "the 10 s label is missing"
    assert right < width - 4, "the last time label runs into the canvas edge"


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
    dialog = page.locator("#promote-dialog")
    assert "no active version" in dialog.inner_text()
    dialog.get_by_role("button", name="Promote v1").click()
    # The promotion gate's dialog comes first: nothing active to compare with, so it passes.
    page.locator("#gate-promote").wait_for(timeout=30_000)
    assert "no active version to compare with" in page.locator("#gate-verdict").inner_text()
    page.click("#gate-promote")
    page.locator("section[data-model='browser-test-model'] .badge-active").wait_for(timeout=10_000)
    assert "active v1" in page.locator("section[data-model='browser-test-model'] h2").inner_text()
    assert page.locator("#models-error").is_hidden()
    section = page.locator("section[data-model='browser-test-model']")
    section.locator("details").first.locator(":scope > summary").click()
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


EVALUATED_METRICS = {
    "primary": {"name": "auc_abnormal", "value": 0.8934},
    "split": "test (held out)",
    "test": {
        "n": 119,
        "accuracy": 0.8319,
        "macro": {"f1": 0.8284, "auc": 0.8935},
        "per_class": {
            "Normal": {"precision": 0.8056, "recall": 0.9062, "f1": 0.8529, "auc": 0.8935, "support": 64},
            "Abnormal": {"precision": 0.8723, "recall": 0.7455, "f1": 0.8039, "auc": 0.8935, "support": 55},
        },
        "confusion_matrix": {"classes": ["Normal", "Abnormal"], "matrix": [[58, 6], [14, 41]]},
        "normal_vs_abnormal": {"n": 119, "auc": 0.8935, "sensitivity": 0.7455, "specificity": 0.9062},
    },
}
EVALUATION_CARD = {
    "summary": "12-lead normal vs abnormal, for the browser test",
    "intended_use": "Decision support in tests: flags recordings for review by a clinician.",
    "limitations": ["Trained on a small part of PTB-XL; unknown on other devices until measured."],
    "data": {"dataset": "ptbxl", "recordings": {"train": 553, "test": 119}, "class_counts": {"test": {"Normal": 64}}},
    "preprocessing": {"leads": ["I", "II"], "sampling_rate": 100.0, "normalisation": "zscore"},
    "evaluation": {
        "per_class": {
            "Normal": {
                "precision": {"value": 0.806, "ci": [0.71, 0.88]},
                "recall": {"value": 0.906, "ci": [0.82, 0.96]},
                "f1": {"value": 0.853, "ci": [0.79, 0.91]},
                "support": 64,
            },
            "Abnormal": {
                "precision": {"value": 0.872, "ci": [0.77, 0.94]},
                "recall": {"value": 0.745, "ci": [0.62, 0.85]},
                "f1": {"value": 0.804, "ci": [0.72, 0.87]},
                "support": 55,
            },
        },
        "confusion_matrix": {"classes": ["Normal", "Abnormal"], "matrix": [[58, 6], [14, 41]]},
        "sensitivity_at_specificity": {"0.90": {"value": 0.745, "ci": [0.62, 0.85]}, "0.95": 0.61},
        "calibration": {
            "method": "temperature",
            "ece_before": 0.081,
            "ece_after": 0.032,
            "brier_before": 0.142,
            "brier_after": 0.128,
            "bins": [
                {"lower": 0.0, "upper": 0.25, "mean_predicted": 0.12, "observed": 0.1, "count": 40},
                {"lower": 0.25, "upper": 0.5, "mean_predicted": 0.37, "observed": 0.41, "count": 22},
                {"lower": 0.5, "upper": 0.75, "mean_predicted": 0.63, "observed": 0.58, "count": 19},
                {"lower": 0.75, "upper": 1.0, "mean_predicted": 0.88, "observed": 0.9, "count": 38},
            ],
        },
        "subgroups": {"female": {"n": 60, "auc": {"value": 0.9, "ci": [0.82, 0.96]}}, "male": {"n": 59, "auc": 0.88}},
    },
}


@pytest.fixture()
def evaluated_version(database_url, stack):
    """A normal-12lead candidate whose model card carries an evaluation; the active version is restored after."""
    from ecg_shared import registry
    from ecg_shared.db import session_scope
    from tests.inference.onnx_models import tiny_model, twelve_lead_metadata

    with session_scope(database_url) as session:
        active = next(v.version for v in registry.active_versions(session) if v.name == "normal-12lead")
        metadata = twelve_lead_metadata()
        candidate = registry.register_version(
            session, metadata, tiny_model(metadata), metrics=EVALUATED_METRICS, model_card=EVALUATION_CARD
        ).version
    yield active, candidate
    with session_scope(database_url) as session:
        registry.promote(session, "normal-12lead", active)


def test_a_model_card_reads_as_a_card_and_promotion_asks_with_a_comparison(page, evaluated_version):
    active, candidate = evaluated_version
    page.goto("/models")
    page.fill("#api-key", API_KEY)
    page.locator("#api-key").dispatch_event("change")
    section = page.locator("section[data-model='normal-12lead']")
    section.wait_for(timeout=10_000)
    details = section.locator(f"details[data-version='{candidate}']")
    details.locator(":scope > summary").click()
    text = details.inner_text()
    assert "{" not in text and "[object" not in text and details.locator("pre").count() == 0
    assert details.locator(".metric-grid").first.inner_text().count("AUC") == 1
    assert "Decision support in tests" in text and "unknown on other devices" in text
    per_class = details.locator("table.per-class-ci").inner_text()
    assert "normal ECG (Normal)" in per_class and "0.806 (95\u00a0% CI 0.710–0.880)" in per_class
    sensitivity = details.locator("table.sensitivity").inner_text()
    assert "90\u00a0%" in sensitivity and "0.745 (95\u00a0% CI 0.620–0.850)" in sensitivity and "0.610" in sensitivity
    assert details.locator("svg.reliability").get_attribute("data-bins") == "4"
    assert details.locator("svg.reliability circle").count() == 4
    assert "0.081 → 0.032" in text and "temperature" in text
    assert "female" in text and "0.900 (95\u00a0% CI 0.820–0.960)" in text
    assert details.locator("table.confusion").count() == 1  # the evaluation's, not again from the metrics
    details.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "model-card-evaluation.png"), full_page=True)

    # Promotion asks first, with the test metrics of both versions side by side; cancelling changes nothing.
    row = section.locator(f"tr[data-version='{candidate}']")
    row.get_by_role("button", name="Promote").click()
    dialog = page.locator("#promote-dialog")
    dialog.wait_for(state="visible")
    comparison = dialog.locator("table.comparison")
    headers = [h.lower() for h in comparison.locator("th").all_inner_texts()]
    assert headers == ["test metric", f"active v{active}", f"candidate v{candidate}"]
    rows = [r.split("\t") for r in comparison.locator("tbody tr").all_inner_texts()]
    # The candidate's figures are this test's; the active version's are whatever earlier tests left active.
    candidate_rows = {r[0]: r[2] for r in rows}
    assert candidate_rows["AUC normal vs abnormal"] == "0.893" and candidate_rows["macro F1"] == "0.828", rows
    dialog.screenshot(path=str(SCREENSHOTS / "promote-dialog.png"))
    dialog.get_by_role("button", name="Cancel").click()
    assert dialog.is_hidden()
    assert row.locator(".badge").inner_text() == "candidate"

    row.get_by_role("button", name="Promote").click()
    dialog.get_by_role("button", name=f"Promote v{candidate}").click()
    # Then the promotion gate's comparison on the same evaluation data (static/promotion.js): with no reviewed
    # recording to compare the two versions on, it refuses and offers to force.
    page.locator("#gate-verdict").wait_for(timeout=30_000)
    assert "The gate refuses" in page.locator("#gate-verdict").inner_text()
    page.click("#gate-force")
    page.locator(f"section[data-model='normal-12lead'] tr[data-version='{candidate}'] .badge-active").wait_for(
        timeout=10_000
    )
    assert f"active v{candidate}" in page.locator("section[data-model='normal-12lead'] h2").inner_text()
    assert page.locator("#models-error").is_hidden()


@pytest.fixture()
def fused_version(database_url, stack):
    """A normal-12lead candidate with the bundled 12-lead model's features, reference and blend (a tiny graph: the
    models page reads the metadata, not the file)."""
    import dataclasses

    import onnx

    from ecg_shared import registry
    from ecg_shared.db import session_scope
    from ecg_shared.model_metadata import ModelMetadata
    from tests.inference.onnx_models import tiny_model, twelve_lead_metadata

    bundled_file = REPO_ROOT / "models" / "normal-12lead.onnx"
    if not bundled_file.exists():
        pytest.skip("the bundled 12-lead model is not trained yet (make model-12lead)")
    bundled = ModelMetadata.from_onnx_props({p.key: p.value for p in onnx.load(str(bundled_file)).metadata_props})
    metadata = dataclasses.replace(
        twelve_lead_metadata(),
        features=bundled.features,
        feature_reference=bundled.feature_reference,
        network_weight=bundled.network_weight,
    )
    with session_scope(database_url) as session:
        version = registry.register_version(session, metadata, tiny_model(twelve_lead_metadata())).version
    return version, bundled


def test_the_models_page_says_what_each_answer_rests_on(page, gateway_url, fused_version):
    """For a model fused with measurements: the blend in words, and every measurement it reads with the median in
    the normal training recordings that the upload page's explanations compare against."""
    import httpx

    version, bundled = fused_version
    spec = bundled.feature_spec
    models = httpx.get(f"{gateway_url}/api/models", timeout=30).json()["models"]
    (view,) = [v for m in models if m["name"] == "normal-12lead" for v in m["versions"] if v["version"] == version]
    inputs = view["inputs"]
    assert inputs["network_weight"] == bundled.network_weight == 0
    assert inputs["answer"].startswith("the measurements alone")
    assert [m["name"] for m in inputs["measurements"]] == spec.names
    assert [m["description"] for m in inputs["measurements"]] == spec.descriptions
    assert [m["reference"] for m in inputs["measurements"]] == bundled.feature_reference

    page.goto("/models")
    section = page.locator("section[data-model='normal-12lead']")
    section.wait_for(timeout=10_000)
    details = section.locator(f"details[data-version='{version}']")
    details.locator(":scope > summary").click()
    assert details.locator(".answer-basis").inner_text() == f"{inputs['answer'][0].upper()}{inputs['answer'][1:]}."
    table = details.locator("details.measurements-read")
    table.locator("summary").click()
    assert table.locator("summary").inner_text().startswith(f"The {len(spec.names)} measurements it reads")
    rows = table.locator("tbody tr")
    assert rows.count() == len(spec.names)
    st = spec.names.index("V5_st_level")
    cells = rows.nth(st).locator("td").all_inner_texts()
    assert cells == [spec.descriptions[st], f"{bundled.feature_reference[st]:.3f}"]
    details.locator(".answer-basis").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "model-measurements-read.png"))
