"""The ``ecg`` command. This module adds ``inspect`` and ``db``; each installed service adds its own commands
through the ``ecg.commands`` entry-point group (a ``register(app: typer.Typer)`` function), so an image that lacks
a service also lacks its commands.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import entry_points
from pathlib import Path

import typer

from ecg_shared.registry_cli import models_app

app = typer.Typer(
    help="ECG classification platform: inspect, ingest, train and classify ECG recordings.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
dataset_app = typer.Typer(help="Data sets: import local folders, upload to blob storage.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")
app.add_typer(models_app, name="models")


def describe(path: Path, fmt: str | None = None, fs: float | None = None) -> dict:
    """What ``ecg inspect`` reports: format, rate, leads, duration, heart rate, quality, label."""
    from ecg_shared.formats import read_ecg
    from ecg_shared.heart import heart_rate
    from ecg_shared.quality import assess_quality

    record = read_ecg(path, format=fmt, fs=fs)
    rate = heart_rate(record)
    quality = assess_quality(record)
    extra = {k: v for k, v in record.metadata.items() if k not in {"format", "label", "source", "comments"}}
    return {
        "file": str(path),
        "format": record.format,
        "sampling_rate": record.sampling_rate,
        "leads": record.lead_names,
        "n_samples": record.n_samples,
        "duration_s": round(record.duration_s, 3),
        "heart_rate_bpm": None if rate.bpm is None else round(rate.bpm, 1),
        "heart_rate_lead": rate.lead,
        "quality": quality.to_dict(),
        "label": record.label,
        "metadata": extra,
    }


@app.command()
def inspect(
    file: Path = typer.Argument(
        ..., help="ECG file: MUSE/Philips/aECG XML, DICOM, SCP, EDF, ISHNE, Wellnest, WFDB .hea or zip, CSV, .npy/.npz."
    ),
    format: str | None = typer.Option(None, "--format", help="Skip detection: a format name (docs/formats.md)."),  # noqa: A002
    fs: float | None = typer.Option(None, "--fs", help="Sampling rate (Hz) for formats that carry none."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Print format, sampling rate, leads, duration, heart rate, quality and any label of an ECG file."""
    from ecg_shared.formats import EcgFormatError

    try:
        info = describe(file, format, fs)
    except EcgFormatError as exc:
        typer.echo(f"error: {file}: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(info))
        return
    quality = info["quality"]
    lines = [
        f"file          {info['file']}",
        f"format        {info['format']}",
        f"sampling rate {info['sampling_rate']:g} Hz",
        f"leads         {', '.join(info['leads'])}",
        f"duration      {info['duration_s']:.2f} s ({info['n_samples']} samples)",
        f"heart rate    {info['heart_rate_bpm'] or 'not detected'}"
        + (" bpm" if info["heart_rate_bpm"] else "")
        + f" (lead {info['heart_rate_lead']})",
        f"quality       {'usable' if quality['usable'] else 'NOT usable'}; noise score {quality['noise_score']}",
    ]
    lines += [f"  - {reason}" for reason in quality["reasons"]]
    lines += [f"  - lead {lead}: {'; '.join(issues)}" for lead, issues in quality["leads"].items() if issues]
    lines += [f"  - repaired: {repair}" for repair in quality["repairs"]]
    lines.append(f"label         {info['label'] or '-'}")
    typer.echo("\n".join(lines))


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Create the database if needed and apply migrations."""
    from ecg_shared.db.migrate import upgrade

    upgrade(revision=revision)
    typer.echo(f"database at revision {revision}")


@dataset_app.command("import")
def dataset_import(
    directory: Path = typer.Argument(
        ..., exists=True, file_okay=False, help="Folder of ECG files (e.g. WFDB records)."
    ),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name to file the recordings under."),
) -> None:
    """Read a local folder of recordings straight into Postgres (labels from headers or REFERENCE.csv)."""
    from rich.progress import Progress

    from ecg_shared.db import session_scope
    from ecg_shared.db.store import import_directory

    with session_scope() as session, Progress(transient=True) as bar:
        task = bar.add_task(f"importing {directory}", total=None)
        stored, skipped, failures = import_directory(
            session, directory, dataset, progress=lambda n: bar.advance(task, n)
        )
    typer.echo(f"{dataset}: stored {stored}, already present {skipped}, failed {len(failures)}")
    for name, reason in failures[:20]:
        typer.echo(f"  failed {name}: {reason}", err=True)


def _load_plugins() -> None:
    for entry in entry_points(group="ecg.commands"):
        try:
            register = entry.load()
        except ImportError as exc:  # a service package installed without its dependencies
            print(f"warning: ecg {entry.name} unavailable: {exc}", file=sys.stderr)
            continue
        register(app)


def main() -> None:
    _load_plugins()
    app()


if __name__ == "__main__":
    main()
