"""`ecg classify`: in process on the bundled models folder, JSON lines, CSV report, errors per file."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ecg_shared.formats import read_ecg
from tests.inference.onnx_models import write_models_dir
from tests.inference.test_service import assert_same_probabilities, in_process_answer

ECG = str(Path(sys.executable).parent / "ecg")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return write_models_dir(tmp_path_factory.mktemp("bundled"), seed=5)


def run_classify(models_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"ECG_MODELS_DIR": str(models_dir), "PATH": "/usr/bin:/bin"}
    return subprocess.run([ECG, "classify", *args], capture_output=True, text=True, env=env, timeout=300)


def test_json_lines_for_every_kind_of_file(models_dir, data_dir, wellnest_sample):
    cinc = data_dir / "cinc2017" / "A00001.hea"
    ptbxl = data_dir / "ptbxl" / "00001_lr.hea"
    files = [cinc, cinc.with_suffix(".mat"), wellnest_sample, ptbxl]  # the .mat beside its .hea is the same record
    result = run_classify(models_dir, *map(str, files), "--json", "--explain")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(cinc), str(wellnest_sample), str(ptbxl)]
    bundled = {p.stem: p.read_bytes() for p in models_dir.glob("*.onnx")}
    for line in lines:
        assert {"recording", "models", "verdict", "explanation", "timings"} <= set(line)
        expected = in_process_answer(read_ecg(line["file"]), bundled)
        assert_same_probabilities(line, expected)
        assert line["verdict"]["label"] == expected.verdict.label
    assert [m["name"] for m in lines[0]["models"]] == ["rhythm-1lead"]
    assert [e["model"] for e in lines[0]["explanation"]] == ["rhythm-1lead"]
    assert len(lines[1]["models"]) == 2


def test_csv_report_and_failures(models_dir, data_dir, tmp_path):
    good = [data_dir / "cinc2017" / name for name in ("A00002.hea", "A00004.hea")]
    broken = tmp_path / "broken.csv"
    broken.write_text("II\n1\n")
    report = tmp_path / "report.csv"
    result = run_classify(models_dir, *map(str, good), str(broken), "--csv", str(report))
    assert result.returncode == 1 and "1 of 3 files could not be classified" in result.stderr
    rows = list(csv.DictReader(report.open()))
    assert [r["file"] for r in rows] == [*map(str, good), str(broken)]
    for row in rows[:2]:
        assert row["verdict"] in ("normal", "abnormal", "unreadable") and row["error"] == ""
        assert row["format"] == "wfdb" and row["sampling_rate"] == "300.0" and "rhythm-1lead=" in row["models"]
    assert rows[2]["verdict"] == "" and "sampling rate" in rows[2]["error"]
    assert "error:" in result.stdout.splitlines()[2]


def test_model_option(models_dir, data_dir):
    cinc = str(data_dir / "cinc2017" / "A00001.hea")
    result = run_classify(models_dir, cinc, "--model", "normal-12lead", "--json")
    assert result.returncode == 1
    assert "no model applies" in json.loads(result.stdout)["error"]
    answer = json.loads(run_classify(models_dir, cinc, "--model", "rhythm-1lead", "--json").stdout)
    assert [m["name"] for m in answer["models"]] == ["rhythm-1lead"] and answer["explanation"] is None
    result = run_classify(models_dir, cinc, "--model", "missing-model")
    assert result.returncode == 2 and "no bundled model missing-model" in result.stderr


def test_no_bundled_models(tmp_path, data_dir):
    result = run_classify(tmp_path, str(data_dir / "cinc2017" / "A00001.hea"))
    assert result.returncode == 2 and "no bundled models" in result.stderr


def test_a_verdict_decided_by_rule_and_a_model_not_judged_are_printed_as_such(models_dir, formats_dir, tmp_path):
    """The Contec EDF (chest leads off) and white noise (fails the quality check): the text lines and the CSV say
    'not judged' and 'by rule' rather than print a probability nobody computed."""
    import numpy as np
    import wfdb

    noise = np.random.default_rng(1).standard_normal((3000, 1))
    wfdb.wrsamp("noise", fs=300, units=["mV"], sig_name=["II"], p_signal=noise, fmt=["16"], write_dir=str(tmp_path))
    files = [str(formats_dir / "edf" / "0000050.ECG.edf"), str(tmp_path / "noise.hea")]
    report = tmp_path / "report.csv"
    result = run_classify(models_dir, *files, "--csv", str(report))
    assert result.returncode == 0, result.stderr
    chest_off, noisy = result.stdout.splitlines()
    assert "normal-12lead not judged" in chest_off
    assert noisy.startswith(f"{files[1]}: unreadable (by rule); "), noisy
    rows = list(csv.DictReader(report.open()))
    assert "normal-12lead=not judged" in rows[0]["models"]
    assert rows[1]["verdict"] == "unreadable" and rows[1]["probability"] == ""


def test_a_model_reading_a_strip_much_shorter_than_its_window_is_flagged(wellnest_sample, tmp_path):
    """The bundled models on the real Wellnest sample (10 s): the rhythm model read a third of its 30 s window, and
    the text line and the CSV say so (the JSON carries the full caveat, models[].caveat)."""
    from ecg_shared.settings import REPO_ROOT

    bundled = REPO_ROOT / "models"
    if not (bundled / "rhythm-1lead.onnx").exists():
        pytest.skip("bundled rhythm model not trained yet (models/rhythm-1lead.onnx)")
    report = tmp_path / "report.csv"
    text = run_classify(bundled, str(wellnest_sample), "--csv", str(report))
    assert text.returncode == 0, text.stderr
    assert "rhythm-1lead " in text.stdout and "(shorter than its window)" in text.stdout
    assert "normal-12lead " in text.stdout and text.stdout.count("(shorter than its window)") == 1
    (row,) = csv.DictReader(report.open())
    assert "p_abnormal" in row["models"] and row["models"].count(", shorter than its window)") == 1
    (line,) = [json.loads(x) for x in run_classify(bundled, str(wellnest_sample), "--json").stdout.splitlines()]
    caveats = {m["name"]: m["caveat"] for m in line["models"]}
    assert caveats["normal-12lead"] is None and caveats["rhythm-1lead"].startswith("read 10 s, 33% of its 30 s")
