"""The command-line entry points on the clinical sample files (ECG_DATA_DIR/formats): `ecg inspect`, `ecg classify`
and `ecg dataset import`, each as a real subprocess, detecting every format by content; long Holter recordings
classified over windows with the heart rate and quality of the whole recording."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from ecg_shared.formats import read_ecg
from tests.inference.onnx_models import rhythm_metadata, twelve_lead_metadata, write_models_dir
from tests.inference.test_service import assert_same_probabilities, in_process_answer

ECG = str(Path(sys.executable).parent / "ecg")
# One file of each format, and the format read_ecg names it.
ONE_OF_EACH = {
    "ge_muse_xml/example1.xml": "muse_xml",
    "philips_sierra_xml/3191723_ZZDEMOPTONLY_1-04_orig.xml": "philips_xml",
    "hl7_aecg/Example aECG.xml": "hl7_aecg",
    "dicom_ecg/anonymous_ecg.dcm": "dicom_ecg",
    "scp_ecg/Example.scp": "scp_ecg",
    "edf/0000050.ECG.edf": "edf",
    "ishne_holter/ECG_P28.01.ecg": "ishne",
}
WINDOW_S = {m.name: m.preprocessing.window_s for m in (rhythm_metadata(), twelve_lead_metadata())}
NOT_READABLE = {"ishne_holter/ECG_P28.01.ann"}  # an annotation file, not a recording


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return write_models_dir(tmp_path_factory.mktemp("bundled"), seed=7)


def run_ecg(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([ECG, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("name", ["ge_muse_xml/example1.xml", "philips_sierra_xml/129DYPRG.XML"])
def test_ecg_inspect_reads_clinical_xml_by_content(formats_dir, tmp_path, name):
    disguised = tmp_path / "recording.bin"  # no extension to go by
    disguised.symlink_to(formats_dir / name)
    result = run_ecg("inspect", str(disguised), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    local = read_ecg(formats_dir / name)
    assert info["format"] == local.format
    assert info["leads"][:6] == ["I", "II", "III", "aVR", "aVL", "aVF"]
    assert (info["sampling_rate"], info["n_samples"]) == (local.sampling_rate, local.n_samples)
    assert 30 < info["heart_rate_bpm"] < 150 and info["heart_rate_lead"] == "II"
    assert info["metadata"]["units"] == "mV"


def test_ecg_inspect_names_the_problem_in_broken_xml(formats_dir, tmp_path):
    truncated = tmp_path / "truncated.xml"
    truncated.write_bytes((formats_dir / "hl7_aecg" / "Example aECG.xml").read_bytes()[:100_000])
    result = run_ecg("inspect", str(truncated))
    assert result.returncode == 2
    assert "HL7 aECG: the XML is malformed or truncated" in result.stderr and "Traceback" not in result.stderr


def test_ecg_classify_answers_for_every_format(formats_dir, models_dir):
    files = [str(formats_dir / name) for name in ONE_OF_EACH]
    env = {"ECG_MODELS_DIR": str(models_dir), "PATH": "/usr/bin:/bin"}
    env.update({key: os.environ[key] for key in ("PYTHONPATH",) if key in os.environ})  # the code under test
    result = run_ecg("classify", *files, "--json", env=env)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == files
    bundled = {p.stem: p.read_bytes() for p in models_dir.glob("*.onnx")}
    for line, fmt in zip(lines, ONE_OF_EACH.values(), strict=True):
        assert line["recording"]["format"] == fmt
        assert line["verdict"]["label"] in ("normal", "abnormal", "unreadable")
        assert_same_probabilities(line, in_process_answer(read_ecg(line["file"]), bundled))


def test_long_holter_recordings_are_classified_over_windows_with_whole_recording_rate_and_quality(
    formats_dir, models_dir
):
    """The 95.6 s ISHNE and 47.3 s EDF Holter files: every model sees windows covering the whole recording, and heart
    rate and quality describe all of it, not a first strip."""
    bundled = {p.stem: p.read_bytes() for p in models_dir.glob("*.onnx")}
    for name in ("ishne_holter/ECG_P28.01.ecg", "edf/0000050.ECG.edf"):
        record = read_ecg(formats_dir / name)
        answer = in_process_answer(record, bundled, explain=False)
        assert answer.recording.duration_s == pytest.approx(record.duration_s, abs=1e-3)
        assert answer.recording.n_samples == record.n_samples
        assert answer.models
        for result in answer.models:
            window_s = WINDOW_S[result.name]
            assert result.windows == math.ceil(record.duration_s / window_s) > 1, (name, result.name, result.windows)
        from ecg_shared.heart import heart_rate

        whole = heart_rate(record)
        assert answer.recording.heart_rate_bpm == pytest.approx(whole.bpm, abs=0.1)
        assert whole.rpeaks.max() > record.n_samples - 3 * record.sampling_rate  # beats found to the very end


def test_ecg_dataset_import_takes_a_folder_of_mixed_clinical_files(formats_dir, database_url, tmp_path):
    folder = tmp_path / "clinic"
    folder.mkdir()
    for index, path in enumerate(sorted(p for p in formats_dir.rglob("*") if p.is_file() and p.suffix != ".md")):
        (folder / f"{index:02d}-{path.parent.name}{path.suffix}").symlink_to(path)
    result = run_ecg("dataset", "import", str(folder), "--dataset", "clinic", env={**os.environ})
    assert result.returncode == 0, result.stderr
    readable = sum(1 for p in formats_dir.rglob("*") if p.is_file() and p.suffix != ".md") - len(NOT_READABLE)
    assert f"clinic: stored {readable}, already present 0, failed {len(NOT_READABLE)}" in result.stdout
    assert "annotation file" in result.stderr and "SCP-ECG" not in result.stderr

    from ecg_shared.db import Recording, session_scope

    with session_scope(database_url) as session:
        formats = sorted(session.scalars(select(Recording.format).where(Recording.dataset == "clinic")))
    assert set(formats) == set(ONE_OF_EACH.values())
    assert formats.count("muse_xml") == 3 and formats.count("philips_xml") == 3
