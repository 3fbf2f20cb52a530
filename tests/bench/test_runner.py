"""`python -m bench`: each benchmark in its own process; results as JSON, Markdown and the README section."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.report import END_MARKER, START_MARKER, format_value, markdown_table
from ecg_shared.settings import REPO_ROOT

README_BEFORE = (
    f"# Title\n\nIntro.\n\n## Benchmarks\n\n{START_MARKER}\nold numbers\n{END_MARKER}\n\n## After\n\nKept.\n"
)


def run_bench(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--results-dir",
            str(tmp_path / "results"),
            "--readme",
            str(tmp_path / "README.md"),
            *args,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture()
def outcome(tmp_path):
    (tmp_path / "README.md").write_text(README_BEFORE)
    result = run_bench(
        tmp_path,
        "--quick",
        "--module",
        "tests.bench.sample_benchmark",
        "--module",
        "tests.bench.no_such_benchmark",
        "--module",
        "tests.bench.broken_benchmark",
    )
    return result, json.loads((tmp_path / "results" / "latest.json").read_text()), tmp_path


def test_runner_records_each_benchmark_status_and_exits_nonzero_on_a_failure(outcome):
    process, report, _ = outcome
    assert process.returncode == 1, process.stdout + process.stderr
    benchmarks = report["benchmarks"]
    assert list(benchmarks) == ["sample_benchmark", "no_such_benchmark", "broken_benchmark"]
    assert benchmarks["sample_benchmark"]["status"] == "ok"
    missing = benchmarks["no_such_benchmark"]
    assert missing == {
        "status": "not available",
        "reason": "not written yet (tests/bench/no_such_benchmark.py missing)",
        "seconds": missing["seconds"],
        "measured_at": missing["measured_at"],
        "git_revision": missing["git_revision"],
    }
    assert benchmarks["broken_benchmark"]["status"] == "failed"
    assert "did not start" in benchmarks["broken_benchmark"]["reason"]
    assert "RuntimeError" in process.stderr  # the traceback reaches the terminal


def test_quick_passes_the_smaller_size_and_the_result_is_the_benchmarks_own(outcome):
    _, report, _ = outcome
    sample = report["benchmarks"]["sample_benchmark"]
    assert sample["arguments"] == {"n": 300}
    rows = sample["result"]["rows"]
    assert [row["n"] for row in rows] == [300, 300]
    assert all(row["values_per_s"] > 0 for row in rows)
    ratio = sample["result"]["ratios"]["numpy / python"]
    assert ratio == pytest.approx(rows[1]["values_per_s"] / rows[0]["values_per_s"])


def test_report_names_the_machine_and_versions(outcome):
    _, report, _ = outcome
    assert report["quick"] is True
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["usable_cpus"] >= 1
    assert report["machine"]["load_average_1m"] >= 0
    assert report["versions"]["python"].startswith("3.11")
    assert report["versions"]["numpy"] and report["versions"]["onnxruntime"]
    assert "tensorflow-cpu" in report["versions"]


def test_markdown_holds_tables_ratios_notes_and_failures(outcome):
    _, _, tmp_path = outcome
    markdown = (tmp_path / "results" / "latest.md").read_text()
    assert "| method | n | values_per_s |" in markdown
    assert "| numpy / python |" in markdown
    assert "| target | goal | measured | met |" in markdown and "| numpy >= 2x python | 2 |" in markdown
    assert "- best of 5 runs each" in markdown
    assert "**not available**: not written yet" in markdown
    assert "**failed**: RuntimeError: the benchmark's service did not start" in markdown
    assert "`profile`:" in markdown


def test_readme_section_is_replaced_between_the_markers_and_the_rest_kept(outcome, tmp_path):
    _, _, folder = outcome
    readme = (folder / "README.md").read_text()
    assert "old numbers" not in readme
    assert readme.startswith("# Title\n\nIntro.\n\n## Benchmarks\n\n" + START_MARKER)
    assert readme.endswith(END_MARKER + "\n\n## After\n\nKept.\n")
    assert "| numpy / python |" in readme and "`profile`" not in readme  # headline only
    again = run_bench(folder, "--module", "tests.bench.sample_benchmark", "--arg", "sample_benchmark.n=500")
    assert again.returncode == 0, again.stderr
    readme = (folder / "README.md").read_text()
    assert readme.count(START_MARKER) == 1 and readme.count(END_MARKER) == 1
    assert "| 500 |" in readme


def test_a_readme_without_markers_gets_a_benchmarks_section(tmp_path):
    (tmp_path / "README.md").write_text("# Title\n")
    result = run_bench(tmp_path, "--module", "tests.bench.sample_benchmark", "--arg", "sample_benchmark.n=200")
    assert result.returncode == 0, result.stderr
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("# Title\n\n## Benchmarks\n") and readme.rstrip().endswith(END_MARKER)


def test_unknown_names_and_malformed_arguments_are_refused(tmp_path):
    result = run_bench(tmp_path, "--only", "nonsense")
    assert result.returncode == 2 and "unknown benchmark(s) nonsense" in result.stderr
    result = run_bench(tmp_path, "--arg", "n=5")
    assert result.returncode != 0 and "NAME.PARAM=VALUE" in result.stderr


def test_values_are_formatted_for_reading():
    assert format_value(1234.5678) == "1,235"
    assert format_value(12.345) == "12.3"
    assert format_value(0.012345) == "0.0123"
    assert format_value(None) == "–" and format_value(True) == "yes"
    assert markdown_table([{"a": 1}, {"a": 2, "b": "x|y"}]) == "| a | b |\n| --- | --- |\n| 1 | – |\n| 2 | x\\|y |"


def test_sizes_run_a_benchmark_once_per_size_and_tabulate_the_growth(tmp_path):
    (tmp_path / "README.md").write_text("# Title\n")
    result = run_bench(tmp_path, "--module", "tests.bench.sample_benchmark", "--sizes", "sample_benchmark.n=200,400")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "results" / "latest.json").read_text())
    assert list(report["benchmarks"]) == ["sample_benchmark (n=200)", "sample_benchmark (n=400)"]
    for size in (200, 400):
        outcome = report["benchmarks"][f"sample_benchmark (n={size})"]
        assert outcome["arguments"] == {"n": size}
        assert outcome["scale"] == {"benchmark": "sample_benchmark", "parameter": "n", "value": size}
        assert {row["n"] for row in outcome["result"]["rows"]} == {size}
    markdown = (tmp_path / "results" / "latest.md").read_text()
    growth = markdown.split("### How sample_benchmark grows with n", 1)[1].split("###", 1)[0]
    assert growth.count("| 200 |") == 3 and growth.count("| 400 |") == 3  # two rows and the ratio, per size
    assert "### How sample_benchmark grows with n" in (tmp_path / "README.md").read_text()


def test_sizes_must_name_a_benchmark_being_run(tmp_path):
    result = run_bench(tmp_path, "--only", "training", "--sizes", "ingestion.n=1000,6000")
    assert result.returncode == 2 and "--sizes names benchmark(s) not being run: ingestion" in result.stderr


def test_keep_others_keeps_the_results_of_benchmarks_not_run_now(outcome, tmp_path):
    _, before, _ = outcome
    result = run_bench(tmp_path, "--quick", "--keep-others", "--module", "tests.bench.sample_benchmark")
    assert result.returncode == 0, result.stdout + result.stderr
    after = json.loads((tmp_path / "results" / "latest.json").read_text())["benchmarks"]
    assert after["broken_benchmark"] == before["benchmarks"]["broken_benchmark"]  # kept as it was
    assert after["sample_benchmark"]["measured_at"] >= before["benchmarks"]["sample_benchmark"]["measured_at"]
    assert "measured " in (tmp_path / "results" / "latest.md").read_text()
