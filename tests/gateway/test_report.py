"""``POST /classify/report`` against the real stack: the PDF is rendered to an image (poppler's pdftoppm) and measured.

True scale: the calibration pulse (1 mV at 10 mm/mV, 200 ms at 25 mm/s) must be 10 mm high and 5 mm wide on the
page, within half a millimetre at the rendered resolution. One page, landscape A4 (or Letter, ECG_REPORT_PAPER); the
text (pdftotext) holds the verdict, each model's call and the heart rate, and no identifier of the input unless the
request gave one. The PDFs and their 300 dpi images are kept in test-artifacts/reports/.
"""

from __future__ import annotations

import html as html_module
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest

from ecg_shared.formats import Record, read_ecg, zip_wfdb_record
from ecg_shared.formats.record import STANDARD_12_LEADS
from ecg_shared.schemas import ClassifyResponse
from ecg_shared.settings import REPO_ROOT, get_settings
from tests.gateway.conftest import API_KEY

REPORTS = REPO_ROOT / "test-artifacts" / "reports"  # the PDFs and their images, to look at
DPI = 300
PX_PER_MM = DPI / 25.4
TOLERANCE_MM = 0.5
LANDSCAPE_SIZES_PT = {"A4": (841.89, 595.28), "Letter": (792.0, 612.0)}
CALL_WORDS = {"normal": "NORMAL", "abnormal": "ABNORMAL", "unreadable": "UNREADABLE"}


@pytest.fixture(scope="module")
def poppler() -> None:
    missing = [tool for tool in ("pdftoppm", "pdfinfo", "pdftotext") if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"poppler-utils missing ({', '.join(missing)}): run scripts/install-test-tools.sh (make install does)"
        )


@pytest.fixture(scope="module")
def client(gateway_url) -> httpx.Client:
    with httpx.Client(base_url=gateway_url, timeout=60, headers={"X-API-Key": API_KEY}) as http:
        yield http


@pytest.fixture(scope="module")
def cinc_zip(data_dir) -> bytes:
    header = data_dir / "cinc2017" / "A00001.hea"
    if not header.is_file():
        pytest.skip(f"CinC 2017 record missing: {header}")
    return zip_wfdb_record(header)


def _report(client: httpx.Client, name: str, data: bytes, **fields: str) -> tuple[Path, dict]:
    """The report's PDF (saved) and the classification of the same file by POST /classify."""
    response = client.post("/classify/report", files={"file": (name, data)}, data=fields)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"].startswith('attachment; filename="ecg-report-')
    assert name.split(".")[0] not in response.headers["content-disposition"]
    assert response.content.startswith(b"%PDF-")
    REPORTS.mkdir(parents=True, exist_ok=True)
    path = REPORTS / f"{name.split('.')[0]}{'-patient' if fields else ''}.pdf"
    path.write_bytes(response.content)
    classified = client.post("/classify", files={"file": (name, data)})
    assert classified.status_code == 200, classified.text
    return path, classified.json()


def _page_size_pt(pdf: Path) -> tuple[int, tuple[float, float]]:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    width, height = map(float, re.search(r"^Page size:\s+([\d.]+) x ([\d.]+) pts", info, re.M).groups())
    return pages, (width, height)


def _text(pdf: Path) -> str:
    raw = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return re.sub(r"[ \t]+", " ", raw)


def _words_on_the_grid(pdf: Path, paper: str = "a4") -> list[str]:
    """The words printed over the grid (pdftotext's word boxes): only the lead labels belong there."""
    from ecg_gateway.report import page_for

    page = page_for(paper)
    pt = 72 / 25.4
    grid_top, grid_bottom = (page.height - page.grid[1] - page.grid[3]) * pt, (page.height - page.grid[1]) * pt
    html = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    words = re.findall(r'<word xMin="[\d.]+" yMin="([\d.]+)" xMax="[\d.]+" yMax="([\d.]+)">([^<]*)</word>', html)
    assert words, "pdftotext found no words"
    return [text for y_min, y_max, text in words if float(y_max) > grid_top + 0.5 and float(y_min) < grid_bottom]


def _column_text(pdf: Path, from_mm: float, to_mm: float, paper: str = "a4") -> str:
    """The words of the header column that starts ``from_mm`` to ``to_mm`` right of the grid's left edge, in
    reading order, joined by spaces (pdftotext's word boxes: its own reading order mixes columns sharing a line)."""
    from ecg_gateway.report import page_for

    page = page_for(paper)
    pt = 72 / 25.4
    lo, hi = (page.grid[0] + from_mm) * pt - 1, (page.grid[0] + to_mm) * pt
    grid_top = (page.height - page.grid[1] - page.grid[3]) * pt
    html = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    words = [
        (round(float(y)), float(x), text)
        for x, y, text in re.findall(r'<word xMin="([\d.]+)" yMin="([\d.]+)" [^>]*>([^<]*)</word>', html)
        if lo <= float(x) < hi and float(y) < grid_top
    ]
    return html_module.unescape(" ".join(text for _, _, text in sorted(words)))


def _render(pdf: Path) -> np.ndarray:
    """The page as an RGB array at DPI."""
    from PIL import Image

    stem = pdf.with_suffix("")
    subprocess.run(["pdftoppm", "-r", str(DPI), "-png", "-singlefile", str(pdf), str(stem)], check=True)
    with Image.open(stem.with_suffix(".png")) as image:
        return np.asarray(image.convert("RGB"))


def _groups(indices: np.ndarray) -> list[np.ndarray]:
    """Runs of consecutive indices."""
    return [run for run in np.split(indices, np.flatnonzero(np.diff(indices) > 1) + 1) if run.size]


def calibration_pulses(page: np.ndarray) -> list[tuple[float, float]]:
    """(height mm, width mm) of each calibration pulse on the page, measured between the strokes' centre lines.

    The pulses are the dark (ink, not grid) connected shapes 8-12 mm tall and 6-12 mm wide: the traces are far
    wider, the text far smaller. Height: from the baseline stubs to the top stroke; width: between the two vertical
    strokes.
    """
    from scipy import ndimage

    ink = page.max(axis=2) < 110  # black; the grid's reds and pinks have a bright red channel
    labels, _ = ndimage.label(ink, structure=np.ones((3, 3)))
    pulses = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        height_mm = (box[0].stop - box[0].start) / PX_PER_MM
        width_mm = (box[1].stop - box[1].start) / PX_PER_MM
        if not (8 <= height_mm <= 12 and 6 <= width_mm <= 12):
            continue
        shape = labels[box] == index
        columns = shape.sum(axis=0)
        strokes = _groups(np.flatnonzero(columns > 0.6 * shape.shape[0]))
        rows = shape.sum(axis=1)
        horizontal = _groups(np.flatnonzero(rows > 1.5 * PX_PER_MM))
        assert len(strokes) == 2 and len(horizontal) == 2, f"not a pulse's shape at {box}"
        rise, fall = (np.average(run, weights=columns[run]) for run in strokes)
        top, base = (np.average(run, weights=rows[run]) for run in horizontal)
        pulses.append(((base - top) / PX_PER_MM, (fall - rise) / PX_PER_MM))
    return pulses


def _assert_one_landscape_page(pdf: Path) -> None:
    pages, (width, height) = _page_size_pt(pdf)
    assert pages == 1
    assert any(abs(width - w) < 1 and abs(height - h) < 1 for w, h in LANDSCAPE_SIZES_PT.values()), (width, height)


def _assert_true_scale(pdf: Path, rows: int) -> None:
    pulses = calibration_pulses(_render(pdf))
    assert len(pulses) == rows, pulses
    for height_mm, width_mm in pulses:
        assert abs(height_mm - 10.0) <= TOLERANCE_MM, f"1 mV is {height_mm:.2f} mm on the page, not 10 mm"
        assert abs(width_mm - 5.0) <= TOLERANCE_MM, f"200 ms is {width_mm:.2f} mm on the page, not 5 mm"


def _assert_classification_printed(text: str, answer: dict) -> None:
    assert CALL_WORDS[answer["verdict"]["label"]] in text
    assert f"probability {100 * answer['verdict']['probability']:.1f} %" in text
    assert answer["models"], "the stack has active models"
    for number, model in enumerate(answer["models"]):
        if number >= 2 and f"{model['name']} v{model['version']} (" not in text:
            # more active models than the header holds (tests that ran before registered them): it says so
            assert "more in the API answer" in " ".join(text.split()), text
            break
        assert f"{model['name']} v{model['version']} (" in text
        line = text[text.index(f"{model['name']} v{model['version']} (") :]
        assert re.match(rf"[^\n]*\): {model['call']}[ ;]", line)
    assert f"Vent. rate {answer['recording']['heart_rate_bpm']:.0f} bpm" in text
    assert "25 mm/s" in text and "10 mm/mV" in text
    assert re.search(r"Analysed \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text)


def test_wellnest_report_is_a_true_scale_12_lead_page(client, wellnest_sample, poppler):
    pdf, answer = _report(client, "sample-10s.raw", wellnest_sample.read_bytes())
    _assert_one_landscape_page(pdf)
    _assert_true_scale(pdf, rows=4)  # three rows of the 3 x 4 layout and the rhythm strip
    text = _text(pdf)
    _assert_classification_printed(text, answer)
    for lead in ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"):
        assert re.search(rf"(^|\s){lead}(\s|$)", text), f"lead label {lead} missing"
    assert "rhythm strip lead II" in text
    # Lead II of the real recording: regular, about 75 bpm; intervals from the delineator in normal ranges.
    qrs = int(re.search(r"QRS duration (\d+) ms", text).group(1))
    pr = int(re.search(r"PR interval (\d+) ms", text).group(1))
    qt, qtc = map(int, re.search(r"QT interval (\d+) ms QTc (\d+) ms \(Bazett\)", text).groups())
    assert 60 <= qrs <= 120 and 120 <= pr <= 220 and 320 <= qt <= 460 and qt < qtc < 480
    assert "Patient: not given" in text and "ID: not given" in text
    assert "sample-10s" not in text
    assert set(_words_on_the_grid(pdf)) <= set(STANDARD_12_LEADS), "text printed over the trace"


@pytest.fixture()
def letter_paper(monkeypatch):
    monkeypatch.setenv("ECG_REPORT_PAPER", "letter")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_letter_paper_is_true_scale_too(client, wellnest_sample, letter_paper, poppler):
    """ECG_REPORT_PAPER=letter, drawn here (the stack's gateway prints A4) from the stack's real classification."""
    from ecg_gateway.report import render_report

    classified = client.post("/classify", files={"file": ("sample-10s.raw", wellnest_sample.read_bytes())})
    assert classified.status_code == 200, classified.text
    answer = ClassifyResponse.model_validate(classified.json())
    REPORTS.mkdir(parents=True, exist_ok=True)
    pdf = REPORTS / "sample-10s-letter.pdf"
    pdf.write_bytes(render_report(read_ecg(wellnest_sample), answer, datetime.now(UTC)))
    pages, (width, height) = _page_size_pt(pdf)
    assert pages == 1 and (width, height) == pytest.approx(LANDSCAPE_SIZES_PT["Letter"], abs=1)
    _assert_true_scale(pdf, rows=4)
    _assert_classification_printed(_text(pdf), classified.json())


def test_cinc_single_lead_report_uses_strip_rows(client, cinc_zip, poppler):
    pdf, answer = _report(client, "A00001.zip", cinc_zip)
    _assert_one_landscape_page(pdf)
    _assert_true_scale(pdf, rows=3)  # 30 s in 10 s rows
    text = _text(pdf)
    _assert_classification_printed(text, answer)
    assert "strip layout" in text and "0-30.0 s in 10 s rows" in text
    assert "10-20 s" in text and "20-30 s" in text
    # Nothing of the record's identity: its name, its header's date and time.
    for field in ("A00001", "1/05/2000", "05:05:15"):
        assert field not in text, f"{field!r} from the input is on the page"
    assert "Patient: not given" in text


def test_header_fields_of_a_ptbxl_record_stay_off_the_page(client, data_dir, poppler):
    header = data_dir / "ptbxl" / "00001_lr.hea"
    if not header.is_file():
        pytest.skip(f"PTB-XL record missing: {header}")
    pdf, _ = _report(client, "00001_lr.zip", zip_wfdb_record(header))
    text = _text(pdf)
    assert "12-lead ECG" in text
    for field in ("00001", "Age", "Female", "09/11/1984", "09:17:34"):
        assert field not in text, f"{field!r} from the input's header is on the page"


def test_patient_fields_are_printed_and_go_nowhere_else(client, stack, wellnest_sample, poppler):
    name, patient_id = "Ada Quillfeather-Example", "MRN-7730-5521"
    pdf, _ = _report(client, "sample-10s.raw", wellnest_sample.read_bytes(), patient_name=name, patient_id=patient_id)
    text = _text(pdf)
    assert f"Patient: {name}" in text and f"ID: {patient_id}" in text
    for service in ("gateway", "inference"):
        log = stack[service].log()
        assert name not in log and patient_id not in log, f"a patient field reached the {service} log"


@pytest.mark.parametrize(
    ("files", "fields", "status", "words"),
    [
        (None, {"format": "csv"}, 422, "multipart field 'file'"),
        ({"file": ("empty.raw", b"")}, {}, 422, "empty"),
        ({"file": ("noise.bin", b"not an ECG at all" * 10)}, {}, 422, ""),
        ({"file": ("x.csv", b"1,2\n3,4\n")}, {"fs": "fast"}, 422, "fs"),
        ({"file": ("x.raw", b"0" * 64)}, {"patient_name": "A" * 101}, 422, "patient_name is longer than 100"),
        ({"file": ("x.raw", b"0" * 64)}, {"patient_id": "ID\x00"}, 422, "patient_id contains control characters"),
    ],
)
def test_bad_report_requests_get_a_4xx_naming_the_problem(client, files, fields, status, words):
    response = client.post("/classify/report", files=files or {"other": ("a.txt", b"x")}, data=fields)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail and words in detail
    assert "A" * 101 not in detail and "ID\x00" not in detail  # a patient field's value is never echoed


def test_an_upload_over_the_limit_is_refused_with_413(client):
    too_large = b"\0" * (3 * 1024 * 1024)  # the stack's ECG_MAX_UPLOAD_BYTES is 2 MiB
    response = client.post("/classify/report", files={"file": ("big.raw", too_large)})
    assert response.status_code == 413
    assert "ECG_MAX_UPLOAD_BYTES" in response.json()["detail"]


def test_json_samples_are_refused_with_415(client):
    response = client.post("/classify/report", json={"samples": [0.0, 1.0], "sampling_rate": 300, "leads": ["II"]})
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["detail"]


def test_report_route_is_documented(client):
    operation = client.get("/openapi.json").json()["paths"]["/classify/report"]["post"]
    assert "application/pdf" in operation["responses"]["200"]["content"]
    assert {"400", "413", "415", "422", "503"} <= set(operation["responses"])
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"file", "format", "fs", "patient_name", "patient_id"} <= set(form)


def test_layouts_say_what_they_leave_out(wellnest_sample, data_dir):
    from ecg_gateway.report import layout_rows

    record = read_ecg(wellnest_sample)
    rows, shown = layout_rows(record)
    assert [[lead for lead, *_ in row.segments] for row in rows] == [
        ["I", "aVR", "V1", "V4"],
        ["II", "aVL", "V2", "V5"],
        ["III", "aVF", "V3", "V6"],
        ["II"],
    ]
    assert [start for _, start, *_ in rows[0].segments] == [0.0, 2.5, 5.0, 7.5] and "recorded" not in shown
    eight = [0, 1, 6, 7, 8, 9, 10, 11]
    rows, shown = layout_rows(Record(record.signal[:, eight], 500, [record.lead_names[i] for i in eight]))
    assert len(rows) == 6 and shown.endswith("not shown: V5, V6")
    long_strip = read_ecg(data_dir / "cinc2017" / "A00008.hea")  # 60 s, one lead
    rows, shown = layout_rows(long_strip)
    assert [row.segments[0][1] for row in rows] == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0] and "recorded" not in shown
    rows, shown = layout_rows(Record(np.tile(long_strip.signal, (2, 1)), long_strip.sampling_rate, ["ECG"]))
    assert len(rows) == 6 and "0-60.0 s in 10 s rows (of 120.0 s recorded)" in shown


def test_the_report_says_which_measurements_moved_each_bundled_model_and_never_prints_over_the_trace(
    wellnest_sample, poppler
):
    """The bundled models (fused with measurements), in process on the real Wellnest recording: the page names, for
    each model, the measurements that moved its probability most, with their values, normal medians and points; the
    header stays above the grid, also when there is far more to say than fits (then it says where the rest is)."""
    import time

    from ecg_gateway.report import REPORT_MEASUREMENTS, render_report
    from ecg_inference.classify import classify_prepared, prepare_recording
    from ecg_inference.models import load_bundled
    from ecg_shared.vocabulary import EVIDENCE_MIN_IMPORTANCE

    record = read_ecg(wellnest_sample)
    models = load_bundled(REPO_ROOT / "models")
    answer = classify_prepared([prepare_recording(record, models, explain=True)], [time.perf_counter()])[0]
    REPORTS.mkdir(parents=True, exist_ok=True)
    pdf = REPORTS / "sample-10s-bundled.pdf"
    pdf.write_bytes(render_report(record, answer, datetime.now(UTC)))
    _render(pdf)  # the image, to look at
    text = _column_text(pdf, 72.0, 182.0)  # the middle column of the header: the verdict, the models and why
    assert "Why: each model's strongest measurements" in text
    for explanation in answer.explanation:
        strong = [m for m in explanation.measurements if abs(m.importance) >= EVIDENCE_MIN_IMPORTANCE]
        assert strong, f"{explanation.model}: nothing moved it on this recording: nothing to test"
        printed = [m.description for m in strong[:REPORT_MEASUREMENTS]]
        assert all(words in text for words in printed), (printed, text)
        first = strong[0]
        assert f"{first.value:.2g}" in text or f"{first.value:.3g}" in text, (first, text)
    assert "more in the API answer" not in text
    assert set(_words_on_the_grid(pdf)) <= set(STANDARD_12_LEADS), "text printed over the trace"

    crowded = answer.model_copy(
        update={
            "models": answer.models * 4,
            "recording": answer.recording.model_copy(
                update={
                    "quality": answer.recording.quality.model_copy(
                        update={"reasons": [f"remark {i}: " + "a long remark " * 6 for i in range(9)]}
                    )
                }
            ),
        }
    )
    pdf = REPORTS / "sample-10s-crowded.pdf"
    pdf.write_bytes(render_report(record, crowded, datetime.now(UTC)))
    assert set(_words_on_the_grid(pdf)) <= set(STANDARD_12_LEADS), "text printed over the trace"
    assert "more in the API answer (POST /classify)" in " ".join(_text(pdf).split())


def test_a_model_not_judged_is_printed_as_such(formats_dir, poppler):
    """The Contec EDF, chest leads off, with the bundled models: the 12-lead model's line says it was not judged
    (no probability printed for it), and the quality headline names the leads the judged models read."""
    import time

    from ecg_gateway.report import render_report
    from ecg_inference.classify import classify_prepared, prepare_recording
    from ecg_inference.models import load_bundled

    record = read_ecg(formats_dir / "edf" / "0000050.ECG.edf")
    models = load_bundled(REPO_ROOT / "models")
    answer = classify_prepared([prepare_recording(record, models, explain=True)], [time.perf_counter()])[0]
    REPORTS.mkdir(parents=True, exist_ok=True)
    pdf = REPORTS / "chest-leads-off.pdf"
    pdf.write_bytes(render_report(record, answer, datetime.now(UTC)))
    models_column, notes_column = _column_text(pdf, 72.0, 182.0), _column_text(pdf, 186.0, 400.0)
    assert "normal-12lead (12 leads): not judged - it reads leads that are not readable" in models_column
    assert "P(abnormal)" not in models_column.split("rhythm-1lead")[0]
    assert "only models reading I, II, III, aVR, aVL judged" in notes_column
    assert "Lead V1: flat line" in notes_column

    by_rule = answer.model_copy(
        update={"verdict": answer.verdict.model_copy(update={"label": "unreadable", "probability": None})}
    )
    pdf.write_bytes(render_report(record, by_rule, datetime.now(UTC)))
    assert "by rule, no probability" in _column_text(pdf, 72.0, 182.0)


def test_a_model_reading_a_strip_much_shorter_than_its_window_is_printed_as_such(wellnest_sample, poppler):
    """The bundled models on the real Wellnest sample (10 s): the rhythm model's line says it read less than its
    window (models[].caveat); the 12-lead model's does not."""
    import time

    from ecg_gateway.report import render_report
    from ecg_inference.classify import classify_prepared, prepare_recording
    from ecg_inference.models import load_bundled

    record = read_ecg(wellnest_sample)
    answer = classify_prepared(
        [prepare_recording(record, load_bundled(REPO_ROOT / "models"), False)], [time.perf_counter()]
    )[0]
    assert [m.caveat is not None for m in answer.models] == [m.name == "rhythm-1lead" for m in answer.models]
    REPORTS.mkdir(parents=True, exist_ok=True)
    pdf = REPORTS / "short-strip-caveat.pdf"
    pdf.write_bytes(render_report(record, answer, datetime.now(UTC)))
    models_column = " ".join(_column_text(pdf, 72.0, 182.0).split())
    rhythm = models_column[models_column.index("rhythm-1lead") :]
    assert "shorter than its window, read with care" in rhythm
    assert "read with care" not in models_column[models_column.index("normal-12lead") :].split("rhythm-1lead")[0]
