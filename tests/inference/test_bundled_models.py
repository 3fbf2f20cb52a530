"""The real bundled models (models/*.onnx, trained by `ecg train`) served and run in process on real recordings.

Skipped until the model files exist. The accuracy floors are sanity checks that serving matches training (same
preprocessing, classes in the same order), far below the model cards' held-out metrics, not a re-evaluation.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from ecg_inference.classify import classify_prepared, prepare_recording
from ecg_inference.drift import record_answer
from ecg_inference.models import ModelInputs, load_bundled
from ecg_shared.formats import Record, read_ecg, zip_wfdb_record
from ecg_shared.settings import REPO_ROOT
from tests.support.ports import free_port
from tests.support.processes import start_process

MODELS_DIR = REPO_ROOT / "models"
NAMES = tuple(name for name in ("rhythm-1lead", "normal-12lead") if (MODELS_DIR / f"{name}.onnx").exists())

pytestmark = pytest.mark.skipif(not NAMES, reason="no bundled model trained yet (models/*.onnx)")


def needs(name: str):
    return pytest.mark.skipif(name not in NAMES, reason=f"bundled model {name} not trained yet (models/{name}.onnx)")


@pytest.fixture(scope="module")
def bundled():
    return load_bundled(MODELS_DIR)


def classify_files(models, paths: list[Path]):
    prepared = [prepare_recording(read_ecg(p), models, explain=False) for p in paths]
    return classify_prepared(prepared, [time.perf_counter()] * len(prepared))


def test_model_cards_and_metadata(bundled):
    for name in NAMES:
        card = json.loads((MODELS_DIR / f"{name}.card.json").read_text())
        assert card, f"{name}.card.json is empty"
        check_card_figures(card, bundled.models[name].metadata)
    if "rhythm-1lead" in NAMES:
        rhythm = bundled.models["rhythm-1lead"]
        assert rhythm.metadata.classes == ["N", "A", "O", "~"] and rhythm.leads == ("I",)  # the AliveCor lead
    if "normal-12lead" in NAMES:
        twelve = bundled.models["normal-12lead"]
        assert set(twelve.metadata.classes) == {"Normal", "Abnormal"} and len(twelve.leads) == 12


def check_card_figures(card: dict, metadata) -> None:
    """Every figure a cardiologist checks: per-class precision, recall and F1 with 95% intervals, the confusion
    matrix, sensitivity at fixed specificity, calibration (reliability bins, ECE and Brier before and after),
    subgroups, the operating point, intended use and limits."""
    evaluation = card["evaluation"]
    figures = evaluation["figures"]
    for cls in metadata.classes:
        for measure in ("precision", "recall", "f1"):
            figure = figures[f"{cls}.{measure}"]
            assert figure["ci"][0] <= figure["value"] <= figure["ci"][1], (cls, measure)
    for name in (
        "auc_abnormal",
        "sensitivity",
        "specificity",
        "sensitivity_at_specificity_0.90",
        "sensitivity_at_specificity_0.95",
    ):
        assert figures[name]["value"] is not None and len(figures[name]["ci"]) == 2, name
    matrix = evaluation["confusion_matrix"]
    assert matrix["classes"] == metadata.classes and sum(map(sum, matrix["matrix"])) == evaluation["n"]
    calibration = evaluation["calibration"]
    assert calibration["method"] == metadata.calibration["method"] == "temperature"
    assert calibration["temperature"] == metadata.calibration["temperature"]
    for block in [calibration["p_abnormal"], *calibration["classes"].values()]:
        assert {"ece_before", "ece_after", "brier_before", "brier_after"} <= set(block)
    bins = calibration["p_abnormal"]["bins"]
    assert len(bins) == 15 and sum(b["count"] for b in bins) > 0
    assert evaluation["subgroups"], "no subgroup figures"
    assert evaluation["operating_point"]["threshold"] == pytest.approx(metadata.threshold)
    assert card["intended_use"] and card["limitations"]
    # The drift reference the /models page compares live traffic with: every validation recording in ten buckets.
    validation = card["metrics"]["validation"]
    assert len(validation["p_abnormal_histogram"]) == 10
    assert sum(validation["p_abnormal_histogram"]) == validation["n"]


def test_each_explanation_shades_the_signal_or_says_truly_why_it_cannot(bundled, data_dir):
    """The metadata's network weight is the card's blend weight. A model whose answer is its features' alone (weight
    0) gets a note instead of importances, and the note is true: every stretch blanked, its answer is the same."""
    header = sorted((data_dir / "ptbxl").glob("*_lr.hea"))[0]
    record = read_ecg(header)
    prepared = prepare_recording(record, bundled, explain=True)
    answer = classify_prepared([prepared], [time.perf_counter()])[0]
    explanations = {e.model: e for e in answer.explanation}
    assert set(explanations) == {m.name for m in answer.models}
    for run in prepared.runs:
        model, explanation = run.model, explanations[run.model.name]
        card = json.loads((MODELS_DIR / f"{model.name}.card.json").read_text())
        assert model.metadata.network_weight == card["fusion"]["network_weight"]
        if model.metadata.signal_blind:
            assert explanation.note and not explanation.segments
            assert explanation.lead_method == "measurements" and set(explanation.leads) == set(run.lead_names)
            blanked = np.repeat(run.windows.mean(axis=1, keepdims=True), run.windows.shape[1], axis=1)
            features = np.repeat(run.features[None, :], len(run.windows), axis=0)
            assert np.array_equal(
                model.predict(ModelInputs(blanked, features)), model.predict(ModelInputs(run.windows, features))
            )
        else:
            assert explanation.note is None and explanation.segments and set(explanation.leads) == set(run.lead_names)


def test_each_measurements_importance_is_the_exact_change_of_the_probability_shown(bundled, data_dir):
    """Every bundled model is fused with measurements and carries their reference (the medians over its training
    split's normal recordings): a measurement's importance is the shown calibrated probability minus the one the
    graph gives with that measurement, alone, at its reference; a lead's (for a model answering from measurements
    alone), with all of that lead's median-beat measurements at theirs."""
    from ecg_shared.calibration import calibrate

    for header in (data_dir / "ptbxl" / "00008_lr.hea", data_dir / "cinc2017" / "A00004.hea"):
        prepared = prepare_recording(read_ecg(header), bundled, explain=True)
        answer = classify_prepared([prepared], [time.perf_counter()])[0]
        explanations = {e.model: e for e in answer.explanation}
        for run in prepared.runs:
            model, explanation = run.model, explanations[run.model.name]
            spec, reference = model.metadata.feature_spec, np.asarray(model.metadata.feature_reference, np.float32)
            assert len(reference) == len(spec.names) and reference[spec.names.index("beats_valid")] == 1.0
            measured = explanation.measurements
            assert sorted(m.name for m in measured) == sorted(spec.names)
            assert [abs(m.importance) for m in measured] == sorted((abs(m.importance) for m in measured), reverse=True)

            target = model.metadata.classes.index(explanation.target_class)

            def shown_with(columns: list[int], run=run, model=model, reference=reference, target=target) -> float:
                """The calibrated probability of the explained class with ``columns`` at their reference."""
                features = run.features.copy()
                features[columns] = reference[columns]
                rows = np.repeat(features[None, :], len(run.windows), axis=0)
                probabilities = model.predict(ModelInputs(run.windows, rows)).mean(axis=0, keepdims=True)
                return float(calibrate(probabilities, model.metadata.calibration)[0][target])

            shown = shown_with([])
            assert shown == pytest.approx(
                next(m for m in answer.models if m.name == model.name).probabilities[explanation.target_class], abs=1e-6
            )
            for m in measured[:5] + measured[-2:]:
                column = spec.names.index(m.name)
                assert m.value == pytest.approx(float(run.features[column]), abs=1e-6)
                assert m.reference == pytest.approx(float(reference[column]), abs=1e-6)
                assert m.importance == pytest.approx(shown - shown_with([column]), abs=1e-5), m.name
            if explanation.lead_method == "measurements":
                for lead, columns in list(spec.lead_columns.items())[:4]:
                    assert explanation.leads[lead] == pytest.approx(shown - shown_with(columns), abs=1e-5), lead


@needs("rhythm-1lead")
def test_atrial_fibrillation_is_explained_by_an_irregular_rhythm_or_absent_p_waves(bundled, data_dir):
    """What a cardiologist reads AF by: on CinC recordings labelled A that the rhythm model calls A, the measurement
    that supports P(A) most is one of RR irregularity or of P-wave evidence, on most of them."""
    labels = dict(csv.reader((data_dir / "cinc2017" / "REFERENCE.csv").open()))
    names = [n for n in sorted(labels) if labels[n] == "A"][:20]
    rhythm = {
        "irregular_fraction", "madsd_rel", "rr_cv", "rmssd_rel", "pnn50", "pnn20", "sd1_sd2", "sample_entropy",
        "turning_point_ratio", "rr_min_rel", "rr_max_rel", "p_wave_ratio", "p_wave_consistency",
    }  # fmt: skip
    explained, top = 0, []
    for name in names:
        prepared = prepare_recording(read_ecg(data_dir / "cinc2017" / f"{name}.hea"), bundled, True, "rhythm-1lead")
        answer = classify_prepared([prepared], [time.perf_counter()])[0]
        [explanation] = answer.explanation
        if explanation.target_class != "A":
            continue
        explained += 1
        strongest = max(explanation.measurements, key=lambda m: m.importance)
        assert strongest.importance > 0, (name, strongest)
        top.append(strongest.name)
    assert explained >= 10, f"the model called only {explained} of {len(names)} AF recordings A"
    assert sum(name in rhythm for name in top) >= 0.8 * len(top), top


@needs("rhythm-1lead")
def test_rhythm_model_on_cinc_records(bundled, data_dir):
    labels = dict(csv.reader((data_dir / "cinc2017" / "REFERENCE.csv").open()))
    names = [n for n in sorted(labels) if labels[n] != "~"][:80]
    answers = classify_files(bundled, [data_dir / "cinc2017" / f"{n}.hea" for n in names])
    agree = sum((a.models[0].call == "normal") == (labels[n] == "N") for n, a in zip(names, answers, strict=True))
    assert agree / len(names) >= 0.7, f"normal vs abnormal agreement {agree}/{len(names)}"


@needs("normal-12lead")
def test_twelve_lead_model_on_ptbxl_records(bundled, data_dir):
    headers = sorted((data_dir / "ptbxl").glob("*_lr.hea"))[:60]
    answers = classify_files(bundled, headers)
    agree = 0
    for header, answer in zip(headers, answers, strict=True):
        label = read_ecg(header).label
        twelve = next(m for m in answer.models if m.name == "normal-12lead")
        agree += (twelve.call == "normal") == (label == "Normal")
    assert agree / len(headers) >= 0.65, f"normal vs abnormal agreement {agree}/{len(headers)}"


@needs("normal-12lead")
def test_a_model_reading_a_lead_with_no_signal_is_not_judged(bundled, data_dir, formats_dir):
    """No model was trained on a lead with no signal, so its answer on one is not used: a real recording with its
    chest leads off (the Contec EDF), and a real PTB-XL record with V1 disconnected."""
    disconnected = read_ecg(data_dir / "ptbxl" / "00001_lr.hea")
    signal = disconnected.signal.copy()
    signal[:, disconnected.lead_names.index("V1")] = 0.0
    disconnected = Record(signal, disconnected.sampling_rate, disconnected.lead_names, {})
    records = {"edf": read_ecg(formats_dir / "edf" / "0000050.ECG.edf"), "ptbxl, V1 off": disconnected}
    for kind, record in records.items():
        prepared = prepare_recording(record, bundled, explain=True)
        (answer,) = classify_prepared([prepared], [time.perf_counter()])
        models = {m.name: m for m in answer.models}
        twelve = models["normal-12lead"]
        assert twelve.call == "unreadable" and twelve.not_judged, kind
        assert "V1" in twelve.not_judged and "flat line" in twelve.not_judged, kind
        assert f"normal-12lead not judged: {twelve.not_judged}" in answer.verdict.rule, kind
        assert all(e.model != "normal-12lead" for e in answer.explanation or []), kind
        if "rhythm-1lead" in models:  # lead II reads: the rhythm model alone decides
            rhythm = models["rhythm-1lead"]
            assert rhythm.not_judged is None and answer.verdict.anchor == "rhythm-1lead", kind
            assert answer.verdict.p_abnormal == pytest.approx(rhythm.p_abnormal), kind
        else:
            assert answer.verdict.label == "unreadable", kind
        assert answer.recording.quality.usable == (kind == "ptbxl, V1 off"), kind  # one lead of twelve off: usable
        before = _drift_counts(twelve.name)
        record_answer(answer)
        after = _drift_counts(twelve.name)
        assert after == (before[0], before[1] + 1), "counted as not judged, outside the p_abnormal histogram"


@needs("normal-12lead")
@needs("rhythm-1lead")
def test_a_recording_much_shorter_than_a_models_window_is_answered_with_a_caveat(bundled, data_dir):
    """A 10 s 12-lead recording fills a third of the rhythm model's 30 s window: its answer says so; the 12-lead
    model (10 s windows) and the rhythm model on a 30 s CinC recording have no caveat."""
    (twelve_lead, cinc) = classify_files(
        bundled, [data_dir / "ptbxl" / "00001_lr.hea", data_dir / "cinc2017" / "A00001.hea"]
    )
    models = {m.name: m for m in twelve_lead.models}
    assert models["normal-12lead"].caveat is None
    caveat = models["rhythm-1lead"].caveat
    assert caveat.startswith("read 10 s, 33% of its 30 s window (the rest zero-padded)"), caveat
    assert cinc.recording.duration_s == 30 and cinc.models[0].caveat is None
    short = read_ecg(data_dir / "cinc2017" / "A00001.hea")
    strip = Record(short.signal[: round(14.9 * short.sampling_rate)], short.sampling_rate, short.lead_names, {})
    (answer,) = classify_prepared([prepare_recording(strip, bundled, explain=False)], [time.perf_counter()])
    assert answer.models[0].caveat.startswith("read 14.9 s, 49% of its 30 s window")  # not rounded up to half
    longer = Record(short.signal[: 15 * round(short.sampling_rate)], short.sampling_rate, short.lead_names, {})
    (answer,) = classify_prepared([prepare_recording(longer, bundled, explain=False)], [time.perf_counter()])
    assert answer.models[0].caveat is None  # half the window or more


def _drift_counts(model: str) -> tuple[float, float]:
    """(answers in the p_abnormal histogram, calls counted as not judged) of ``model`` so far."""
    from prometheus_client import REGISTRY

    labels = {"model": model, "version": "bundled"}
    histogram = REGISTRY.get_sample_value("ecg_inference_p_abnormal_count", labels) or 0.0
    return histogram, REGISTRY.get_sample_value("ecg_inference_calls_total", labels | {"call": "not_judged"}) or 0.0


def test_service_on_bundled_models(bundled, data_dir, wellnest_sample):
    port = free_port()
    service = start_process(
        "inference-bundled-real",
        ["python", "-m", "ecg_inference", "--port", str(port)],
        env={"ECG_INFERENCE_MODEL_SOURCE": "bundled", "ECG_MODELS_DIR": str(MODELS_DIR)},
        port=port,
    )
    try:
        with httpx.Client(base_url=service.url, timeout=60) as client:
            health = client.get("/healthz").json()
            assert set(health["providers"]) == set(NAMES)
            uploads = {
                "wellnest": ("sample-10s.raw", wellnest_sample.read_bytes(), read_ecg(wellnest_sample)),
                "cinc": (
                    "A00001.zip",
                    zip_wfdb_record(data_dir / "cinc2017" / "A00001.hea"),
                    read_ecg(data_dir / "cinc2017" / "A00001.hea"),
                ),
                "ptbxl": (
                    "00001_lr.zip",
                    zip_wfdb_record(data_dir / "ptbxl" / "00001_lr.hea"),
                    read_ecg(data_dir / "ptbxl" / "00001_lr.hea"),
                ),
            }
            if "rhythm-1lead" not in NAMES:  # a single-lead recording has no model yet
                del uploads["cinc"]
            for kind, (name, data, record) in uploads.items():
                response = client.post("/classify", files={"file": (name, data)})
                assert response.status_code == 200, (kind, response.text)
                answer = response.json()
                expected = classify_prepared([prepare_recording(record, bundled, explain=True)], [time.perf_counter()])[
                    0
                ]
                assert answer["verdict"]["label"] == expected.verdict.label
                for got, want in zip(answer["models"], expected.models, strict=True):
                    assert got["probabilities"] == pytest.approx(want.probabilities, abs=1e-5)
                    graph = exported_graph_probabilities(bundled.models[got["name"]], record)
                    assert list(got["probabilities"].values()) == pytest.approx(graph, abs=1e-5)
                assert answer["explanation"] and all(e["segments"] or e["note"] for e in answer["explanation"])
            wellnest = client.post("/classify", files={"file": uploads["wellnest"][:2]}).json()
            assert {m["name"] for m in wellnest["models"]} == set(NAMES)
    finally:
        service.stop()


def exported_graph_probabilities(model, record) -> list[float]:
    """What the registered file says by itself: onnxruntime on the ONNX file's inputs (the preprocessing and the
    beat features its metadata names), the window mean, then its stored calibration."""
    import onnxruntime as ort

    from ecg_shared.beats import recording_features
    from ecg_shared.calibration import calibrate
    from ecg_shared.preprocessing import clean, window_batch

    meta = model.metadata
    session = ort.InferenceSession((MODELS_DIR / f"{meta.name}.onnx").read_bytes(), providers=["CPUExecutionProvider"])
    cleaned = clean(record, meta.preprocessing)
    windows = window_batch(cleaned, meta.preprocessing)
    feeds = {"ecg": windows}
    if meta.features is not None:
        vector = recording_features(
            cleaned, meta.preprocessing.sampling_rate, list(meta.preprocessing.leads), meta.feature_spec
        )
        feeds["features"] = np.repeat(vector[None], len(windows), axis=0)
    raw = session.run(["probabilities"], feeds)[0]
    return calibrate(raw.mean(axis=0, keepdims=True), meta.calibration)[0].tolist()


def test_cli_on_bundled_models(bundled, data_dir, tmp_path):
    report = tmp_path / "report.csv"
    files = [str(data_dir / "cinc2017" / "A00001.hea")] if "rhythm-1lead" in NAMES else []
    files += [str(data_dir / "ptbxl" / "00001_lr.hea"), str(data_dir / "ptbxl" / "00002_lr.hea")]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ecg"), "classify", *files, "--json", "--csv", str(report)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == files
    assert len(list(csv.DictReader(report.open()))) == len(files)
    # the calibrated probabilities ecg classify prints are the exported graph's (and so the service's, above)
    for line, path in zip(lines, files, strict=True):
        record = read_ecg(Path(path))
        for model in line["models"]:
            graph = exported_graph_probabilities(bundled.models[model["name"]], record)
            assert list(model["probabilities"].values()) == pytest.approx(graph, abs=1e-5)
