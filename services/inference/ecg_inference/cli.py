"""``ecg classify FILE...``: the service's classification in process, on the bundled models, no server needed.

Files are read and prepared on a thread pool and classified in chunks, one onnxruntime call per model per chunk, so
thousands of files reuse the same sessions. With ``--json`` each line is the service's answer plus ``file``.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import typer

CSV_COLUMNS = [
    "file",
    "verdict",
    "probability",
    "format",
    "sampling_rate",
    "leads",
    "duration_s",
    "heart_rate_bpm",
    "quality_usable",
    "models",
    "error",
]


def expand_files(files: list[Path]) -> list[Path]:
    """The files as given, minus a WFDB record's .dat/.mat when its .hea is also named (a record is its .hea)."""
    given = {f.resolve() for f in files}
    kept, seen = [], set()
    for f in files:
        resolved = f.resolve()
        if f.suffix.lower() in (".dat", ".mat") and resolved.with_suffix(".hea") in given:
            continue
        if resolved not in seen:
            seen.add(resolved)
            kept.append(f)
    return kept


def _prepare_file(path: Path, models, explain: bool, only: str | None, fmt: str | None, fs: float | None):
    from ecg_inference.classify import ClassificationError, prepare_recording
    from ecg_shared.formats import EcgFormatError, read_ecg

    started = time.perf_counter()
    try:
        record = read_ecg(path, format=fmt, fs=fs)
        read_ms = (time.perf_counter() - started) * 1000
        return prepare_recording(record, models, explain, only, read_ms=read_ms), started
    except (EcgFormatError, ClassificationError) as exc:
        return str(exc), started


def _csv_row(file: str, answer: dict | None, error: str | None) -> dict:
    if answer is None:
        return {"file": file, "error": error}
    recording = answer["recording"]
    return {
        "file": file,
        "verdict": answer["verdict"]["label"],
        "probability": "" if answer["verdict"]["probability"] is None else round(answer["verdict"]["probability"], 4),
        "format": recording["format"],
        "sampling_rate": recording["sampling_rate"],
        "leads": " ".join(recording["leads"]),
        "duration_s": recording["duration_s"],
        "heart_rate_bpm": recording["heart_rate_bpm"],
        "quality_usable": recording["quality"]["usable"],
        "models": "; ".join(
            f"{m['name']}=not judged"
            if m.get("not_judged")
            else f"{m['name']}={m['predicted_class']} ({m['call']}, p_abnormal {m['p_abnormal']:.3f}"
            + (", shorter than its window" if m.get("caveat") else "")
            + ")"
            for m in answer["models"]
        ),
        "error": "",
    }


def _text_line(file: str, answer: dict | None, error: str | None) -> str:
    if answer is None:
        return f"{file}: error: {error}"
    verdict = answer["verdict"]
    models = ", ".join(
        f"{m['name']} not judged"
        if m.get("not_judged")
        else f"{m['name']} {m['predicted_class']}" + (" (shorter than its window)" if m.get("caveat") else "")
        for m in answer["models"]
    )
    probability = "by rule" if verdict["probability"] is None else f"{verdict['probability']:.2f}"
    return f"{file}: {verdict['label']} ({probability}); {models}"


def classify(
    files: list[Path] = typer.Argument(
        ..., help="ECG files: clinical XML, DICOM, SCP, EDF, ISHNE, Wellnest, WFDB, CSV, .npy/.npz."
    ),
    model: str | None = typer.Option(None, "--model", help="Only this bundled model (e.g. rhythm-1lead)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line: the service's answer plus 'file'."),
    csv_path: Path | None = typer.Option(None, "--csv", help="Also write a CSV report (one row per file) here."),
    explain: bool = typer.Option(
        False, "--explain/--no-explain", help="Add occlusion explanations (each costs a forward pass per lead and s)."
    ),
    fmt: str | None = typer.Option(None, "--format", help="Skip detection: a format name (docs/formats.md)."),
    fs: float | None = typer.Option(None, "--fs", help="Sampling rate (Hz) for formats that carry none."),
    chunk: int = typer.Option(64, "--chunk", min=1, help="Files classified per onnxruntime call."),
) -> None:
    """Classify ECG files in process with the bundled models (models/*.onnx); no server or database needed."""
    from rich.console import Console
    from rich.progress import Progress

    from ecg_inference.classify import classify_prepared
    from ecg_inference.models import ModelLoadError, load_bundled
    from ecg_shared.settings import get_settings

    settings = get_settings()
    try:
        models = load_bundled(names=[model] if model else None)
    except ModelLoadError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not models:
        typer.echo(f"error: no bundled models in {settings.models_dir} (*.onnx)", err=True)
        raise typer.Exit(2)
    paths = expand_files(files)
    failures = 0
    report = open(csv_path, "w", newline="") if csv_path else None  # noqa: SIM115 - closed below
    writer = csv.DictWriter(report, CSV_COLUMNS) if report else None
    if writer:
        writer.writeheader()
    console = Console(stderr=True)
    try:
        with (
            ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool,
            Progress(console=console, transient=True) as progress,
        ):
            task = progress.add_task("classifying", total=len(paths))
            for offset in range(0, len(paths), chunk):
                part = paths[offset : offset + chunk]
                prepared = list(pool.map(lambda p: _prepare_file(p, models, explain, model, fmt, fs), part))
                ready = [(i, p, s) for i, (p, s) in enumerate(prepared) if not isinstance(p, str)]
                answers = classify_prepared([p for _, p, _ in ready], [s for _, _, s in ready]) if ready else []
                by_index = {i: a.model_dump(mode="json") for (i, _, _), a in zip(ready, answers, strict=True)}
                for i, path in enumerate(part):
                    answer = by_index.get(i)
                    error = None if answer is not None else prepared[i][0]
                    failures += answer is None
                    if as_json:
                        line = {"file": str(path), **answer} if answer else {"file": str(path), "error": error}
                        sys.stdout.write(json.dumps(line) + "\n")
                    else:
                        sys.stdout.write(_text_line(str(path), answer, error) + "\n")
                    if writer:
                        writer.writerow(_csv_row(str(path), answer, error))
                sys.stdout.flush()
                progress.advance(task, len(part))
    finally:
        if report:
            report.close()
    if failures:
        typer.echo(f"{failures} of {len(paths)} files could not be classified", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("classify")(classify)
