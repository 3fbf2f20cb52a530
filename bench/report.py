"""Benchmark results: the machine and versions they were measured with, JSON and Markdown, the README section."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
README = REPO_ROOT / "README.md"
START_MARKER = "<!-- bench:start -->"
END_MARKER = "<!-- bench:end -->"
# Distributions whose versions a result depends on (absent ones are reported as such).
VERSIONED = (
    "numpy",
    "scipy",
    "onnxruntime",
    "onnxruntime-gpu",
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "tf2onnx",
    "fastapi",
    "uvicorn",
    "httpx",
    "celery",
    "sqlalchemy",
    "psycopg",
    "azure-storage-blob",
    "wfdb",
    "neurokit2",
    "flask",
)
# Keys of a benchmark's result that the report lays out itself; any others go to a details block.
LAID_OUT = ("name", "title", "rows", "ratios", "targets", "notes")


# --- what the numbers were measured on --------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    from ecg_shared.machine import cpu_model, usable_cpus

    memory_gib = None
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        found = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(), re.M)
        memory_gib = round(int(found.group(1)) / 2**20, 1) if found else None
    usable = usable_cpus()
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "cpu_model": cpu_model(),
        "memory_gib": memory_gib,
        "platform": platform.platform(),
        # Other work on a shared machine skews absolute numbers (not the same-run ratios): say how busy it was.
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def git_revision() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+local changes" if dirty else "")


def build_report(benchmarks: dict[str, dict[str, Any]], *, quick: bool) -> dict[str, Any]:
    """The whole result document: when, where, with what, and each benchmark's outcome."""
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "git_revision": git_revision(),
        "machine": machine(),
        "versions": versions(),
        "benchmarks": benchmarks,
    }


# --- Markdown ------------------------------------------------------------------------------------------------------


def format_value(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        if magnitude >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(format_value(row.get(column)) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def _notes(notes: Any) -> list[str]:
    if not notes:
        return []
    if isinstance(notes, str):
        return [notes.strip()]
    if isinstance(notes, dict):
        return [f"{key}: {value}" for key, value in notes.items()]
    return [str(note).strip() for note in notes]


def _target_row(name: str, value: Any) -> dict[str, Any]:
    """A target's row: its name, then its figures (a figure called "target", the goal, shown as "goal")."""
    figures = value if isinstance(value, dict) else {"value": value}
    return {"target": name, **{("goal" if key == "target" else key): v for key, v in figures.items()}}


def _targets_table(targets: Any) -> str:
    if isinstance(targets, dict):
        targets = [_target_row(name, value) for name, value in targets.items()]
    return markdown_table(list(targets))


def benchmark_markdown(name: str, outcome: dict[str, Any], *, headline_only: bool = False) -> str:
    """One benchmark's section: status, rows, ratios, targets; notes and other details unless ``headline_only``."""
    result = outcome.get("result") or {}
    title = result.get("title") or name
    if outcome.get("scale"):
        title += f" ({outcome['scale']['parameter']}={outcome['scale']['value']})"
    parts = [f"### {title}"]
    if outcome["status"] != "ok":
        parts.append(f"**{outcome['status']}**: {outcome.get('reason', '')}".rstrip(": "))
        return "\n\n".join(parts)
    measured = ""
    if outcome.get("measured_at"):
        measured = f"; measured {outcome['measured_at']} at {outcome.get('git_revision')}"
    parts.append(
        f"_{outcome.get('seconds', 0):.1f} s; arguments {json.dumps(outcome.get('arguments') or {})}{measured}_"
    )
    if result.get("rows"):
        parts.append(markdown_table(result["rows"]))
    if result.get("ratios"):
        ratios = result["ratios"]
        rows = (
            [{"ratio": key, "value": value} for key, value in ratios.items()]
            if isinstance(ratios, dict)
            else list(ratios)
        )
        parts.append("Ratios (same run):\n\n" + markdown_table(rows))
    if result.get("targets"):
        parts.append("Targets:\n\n" + _targets_table(result["targets"]))
    if headline_only:
        return "\n\n".join(parts)
    notes = _notes(result.get("notes"))
    if notes:
        parts.append("\n".join(f"- {note}" for note in notes))
    for key, value in result.items():
        if key in LAID_OUT:
            continue
        text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str)
        parts.append(f"`{key}`:\n\n```\n{text.rstrip()}\n```")
    return "\n\n".join(parts)


def environment_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    installed = ", ".join(f"{name} {v}" for name, v in report["versions"].items() if v)
    return "\n".join(
        [
            f"Measured {report['generated_at']}{' (quick sizes)' if report['quick'] else ''} at revision "
            f"{report['git_revision'] or 'unknown'} on {m['usable_cpus']} usable of {m['cpu_count']} CPUs "
            f"({m['cpu_model'] or 'unknown CPU'}), {m['memory_gib']} GiB RAM, {m['platform']}"
            + (f"; load average {m['load_average_1m']} when it finished." if m.get("load_average_1m") else "."),
            "",
            f"Versions: {installed}.",
        ]
    )


def scale_markdown(report: dict[str, Any]) -> list[str]:
    """For each benchmark run at several sizes (``--sizes``): its rows and ratios side by side, size by size."""
    sections = []
    scaled: dict[str, list[dict[str, Any]]] = {}
    for outcome in report["benchmarks"].values():
        if outcome.get("scale") and outcome["status"] == "ok":
            scaled.setdefault(outcome["scale"]["benchmark"], []).append(outcome)
    for name, runs in scaled.items():
        parameter = runs[0]["scale"]["parameter"]
        rows = [{parameter: run["scale"]["value"], **row} for run in runs for row in run["result"].get("rows", [])]
        ratios = [
            {parameter: run["scale"]["value"], **run["result"]["ratios"]}
            for run in runs
            if isinstance(run["result"].get("ratios"), dict)
        ]
        parts = [f"### How {name} grows with {parameter}"]
        if rows:
            parts.append(markdown_table(rows))
        if ratios:
            parts.append("Ratios (each size against its own baseline):\n\n" + markdown_table(ratios))
        sections.append("\n\n".join(parts))
    return sections


def render_markdown(report: dict[str, Any]) -> str:
    sections = ["# Benchmark results", environment_markdown(report), *scale_markdown(report)]
    sections += [benchmark_markdown(name, outcome) for name, outcome in report["benchmarks"].items()]
    return "\n\n".join(sections) + "\n"


def readme_section(report: dict[str, Any]) -> str:
    sections = [environment_markdown(report), *scale_markdown(report)]
    sections += [
        benchmark_markdown(name, outcome, headline_only=True) for name, outcome in report["benchmarks"].items()
    ]
    sections.append("Notes, profiles and the next bottleneck of each: `bench/results/latest.md`.")
    return "\n\n".join(sections)


# --- files ---------------------------------------------------------------------------------------------------------


def write_results(report: dict[str, Any], results_dir: Path = RESULTS_DIR) -> tuple[Path, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = results_dir / "latest.json", results_dir / "latest.md"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md_path.write_text(render_markdown(report))
    return json_path, md_path


def update_readme(report: dict[str, Any], readme: Path = README) -> None:
    """Replace what lies between the bench markers (appending a Benchmarks section if the README has none)."""
    text = readme.read_text()
    block = f"{START_MARKER}\n{readme_section(report)}\n{END_MARKER}"
    if START_MARKER in text and END_MARKER in text:
        before, rest = text.split(START_MARKER, 1)
        after = rest.split(END_MARKER, 1)[1]
        text = before + block + after
    else:
        text = (
            text.rstrip("\n") + "\n\n## Benchmarks\n\n`make bench` (`python -m bench`) measures the system; "
            "the latest results:\n\n" + block + "\n"
        )
    readme.write_text(text)
