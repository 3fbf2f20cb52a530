"""The `ecg` command line, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ECG = str(Path(sys.executable).with_name("ecg"))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ECG, *args], capture_output=True, text=True, timeout=120)


def test_inspect_wellnest_json(wellnest_sample):
    result = run("inspect", str(wellnest_sample), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["format"] == "wellnest"
    assert info["sampling_rate"] == 500
    assert len(info["leads"]) == 12
    assert info["duration_s"] == 10.0
    assert abs(info["heart_rate_bpm"] - 75) < 5
    assert info["quality"]["usable"] is True


def test_inspect_reports_the_readers_repairs(wellnest_sample, tmp_path):
    blob = bytearray(wellnest_sample.read_bytes())
    blob[16 * 1200] = 0x00  # one frame loses its sync byte
    corrupt = tmp_path / "corrupt.raw"
    corrupt.write_bytes(bytes(blob))
    result = run("inspect", str(corrupt))
    assert result.returncode == 0, result.stderr
    assert "  - repaired: 1 corrupt or missing frame (2 ms) filled in by linear interpolation" in result.stdout
    info = json.loads(run("inspect", str(corrupt), "--json").stdout)
    assert info["metadata"]["dropped_frames"] == 1
    assert info["quality"]["repairs"] == ["1 corrupt or missing frame (2 ms) filled in by linear interpolation"]


def test_inspect_wfdb_text_shows_the_label(data_dir):
    result = run("inspect", str(data_dir / "ptbxl" / "00003_lr.hea"))
    assert result.returncode == 0, result.stderr
    assert "format        wfdb" in result.stdout
    assert "100 Hz" in result.stdout
    assert "label         Normal" in result.stdout or "label         Abnormal" in result.stdout


def test_inspect_bad_file_exits_2_with_a_message(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00" * 100)
    result = run("inspect", str(bad))
    assert result.returncode == 2
    assert "unknown ECG format" in result.stderr
    assert "Traceback" not in result.stderr
