"""``ecg train``: create a training job and run it here with a progress bar, or ``--queue`` it for the workers."""

from __future__ import annotations

import json
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

import typer


def _split(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def _mapping(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        raw, sep, target = pair.partition("=")
        if not sep or not raw or not target:
            raise typer.BadParameter(f"--map takes RAW=CLASS, got {pair!r}")
        mapping[raw] = target
    return mapping


def train(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset of recordings in Postgres."),
    family: str = typer.Option("resnet", "--family", "-f", help="cnn, resnet, inception or leadwise."),
    name: str | None = typer.Option(None, "--name", help="Registry model name (default DATASET-FAMILY)."),
    normal: str = typer.Option(..., "--normal", help="Comma-separated classes that mean normal, e.g. N."),
    unreadable: str | None = typer.Option(None, "--unreadable", help="Comma-separated 'too noisy' classes, e.g. ~."),
    classes: str | None = typer.Option(None, "--classes", help="Output classes in order, e.g. N,A,O,~."),
    label_map: list[str] = typer.Option([], "--map", help="RAW=CLASS label mapping (repeatable)."),
    labels: str | None = typer.Option(None, "--labels", help="Only recordings with these raw labels."),
    max_recordings: int | None = typer.Option(None, "--max-recordings", help="A seeded sample of at most N."),
    min_duration_s: float | None = typer.Option(None, "--min-duration", help="Skip recordings shorter than this (s)."),
    leads: str = typer.Option("II", "--leads", help="Comma-separated leads, e.g. II or 12 standard leads."),
    epochs: int = typer.Option(10, "--epochs"),
    batch_size: int = typer.Option(32, "--batch-size"),
    learning_rate: float = typer.Option(1e-3, "--lr"),
    window_s: float = typer.Option(10.0, "--window-s", help="Window length in seconds."),
    sampling_rate: float = typer.Option(100.0, "--sampling-rate", help="Rate (Hz) recordings are resampled to."),
    normalisation: str = typer.Option("zscore", "--normalisation", help="zscore, minmax or none (per window)."),
    highpass_hz: float | None = typer.Option(0.5, "--highpass"),
    lowpass_hz: float | None = typer.Option(40.0, "--lowpass"),
    notch_hz: float | None = typer.Option(None, "--notch"),
    seed: int = typer.Option(0, "--seed", help="Seeds weights, crops and trees (and the split, unless --split-seed)."),
    split_seed: int | None = typer.Option(
        None, "--split-seed", help="Seeds the train/validation/test split: fixed, seeds compare on one split."
    ),
    features: str = typer.Option(
        "none", "--features", help="Fuse beat features with the network: none, beats or beats+morphology."
    ),
    ensemble: int = typer.Option(1, "--ensemble", help="Networks (seeds seed, seed+1, ...) averaged in one graph."),
    augment: bool = typer.Option(False, "--augment/--no-augment", help="Amplitude, baseline, noise, lead dropout."),
    short_crops: float = typer.Option(
        0.0, "--short-crops", help="Share of training crops cut to 10 s and zero-padded (a 12-lead strip's length)."
    ),
    pretrain: str | None = typer.Option(
        None, "--pretrain", help="Pretrain the leadwise encoder on this single-lead dataset first, e.g. cinc2017."
    ),
    pretrain_classes: str | None = typer.Option(None, "--pretrain-classes", help="Its classes, e.g. N,A,O,~."),
    pretrain_normal: str | None = typer.Option(None, "--pretrain-normal", help="Its normal classes, e.g. N."),
    pretrain_unreadable: str | None = typer.Option(None, "--pretrain-unreadable", help="Its unreadable classes."),
    pretrain_lead: str = typer.Option("II", "--pretrain-lead", help="The lead read from its recordings."),
    pretrain_epochs: int = typer.Option(10, "--pretrain-epochs"),
    operating_sensitivity: float = typer.Option(
        0.9, "--operating-sensitivity", help="Sensitivity for abnormal the threshold is chosen for (validation)."
    ),
    mixed_precision: bool = typer.Option(False, "--mixed-precision/--float32", help="Train under mixed_bfloat16."),
    auto_promote: bool = typer.Option(False, "--auto-promote", help="Promote if it beats the active version."),
    queue: bool = typer.Option(False, "--queue", help="Enqueue for a training worker instead of running here."),
    output: Path | None = typer.Option(
        None, "--output", file_okay=False, help="Also write NAME.onnx and NAME.card.json into this folder."
    ),
) -> None:
    """Train a model on a dataset in Postgres; it ends as a registered (candidate) ONNX model version."""
    from pydantic import ValidationError

    from ecg_shared.db import session_scope
    from ecg_shared.jobs.training import TrainingJobRequest, create_training_job, enqueue_training_job

    try:
        request = TrainingJobRequest(
            dataset=dataset,
            name=name,
            family=family,
            normal_classes=_split(normal) or [],
            unreadable_classes=_split(unreadable) or [],
            classes=_split(classes),
            label_mapping=_mapping(label_map),
            filters={"labels": _split(labels), "max_recordings": max_recordings, "min_duration_s": min_duration_s},
            leads=_split(leads) or [],
            epochs=epochs,
            features=features,
            augment=augment,
            short_crops=short_crops,
            pretrain=None
            if pretrain is None
            else {
                "dataset": pretrain,
                "classes": _split(pretrain_classes),
                "normal_classes": _split(pretrain_normal) or [],
                "unreadable_classes": _split(pretrain_unreadable) or [],
                "lead": pretrain_lead,
                "epochs": pretrain_epochs,
            },
            ensemble=ensemble,
            operating_sensitivity=operating_sensitivity,
            batch_size=batch_size,
            learning_rate=learning_rate,
            window_s=window_s,
            sampling_rate=sampling_rate,
            normalisation=normalisation,
            highpass_hz=highpass_hz,
            lowpass_hz=lowpass_hz,
            notch_hz=notch_hz,
            seed=seed,
            split_seed=split_seed,
            mixed_precision=mixed_precision,
            auto_promote=auto_promote,
        )
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "request"
            typer.echo(f"error: {where}: {error['msg']}", err=True)
        raise typer.Exit(2) from None
    with session_scope() as session:
        job_id = create_training_job(session, request).id
    if queue:
        try:
            enqueue_training_job(job_id)
        except Exception as exc:  # the broker is unreachable: the job must not linger as queued
            from ecg_shared.jobs.training import cancel_training_job

            with session_scope() as session:
                cancel_training_job(session, job_id)
            typer.echo(f"error: training job {job_id} could not be queued ({type(exc).__name__}: {exc})", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"training job {job_id} queued ({request.family} on {request.dataset})")
        return
    with _cancel_on_ctrl_c(job_id):
        status = _run_with_progress(job_id, request.epochs * request.ensemble)
    with session_scope() as session:
        from ecg_shared.jobs.training import get_training_job

        job = get_training_job(session, job_id)
        if status != "succeeded":
            typer.echo(f"training job {job_id} {job.status}: {job.error}", err=True)
            raise typer.Exit(1)
        primary = job.metrics["primary"]
        typer.echo(
            f"training job {job_id} succeeded: {job.model_name} v{job.model_version} "
            f"(test {primary['name']} {primary['value']:.3f}"
            f"{', promoted' if job.metrics.get('promoted') else ''})"
        )
        if output is not None:
            _write_bundle(session, job.model_name, job.model_version, output)


@contextmanager
def _cancel_on_ctrl_c(job_id: int):
    """Ctrl-C cancels the foreground job the ordinary way (the job's heartbeat sees the request and training stops at
    the next batch, leaving the job 'cancelled'); a second Ctrl-C interrupts at once."""

    def cancel() -> None:
        from ecg_shared.db import session_scope
        from ecg_shared.jobs.training import TrainingJobStateError, cancel_training_job

        try:
            with session_scope() as session:
                cancel_training_job(session, job_id)
        except TrainingJobStateError:
            pass  # it finished meanwhile

    def on_interrupt(signum, frame) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        typer.echo(f"cancelling training job {job_id} (Ctrl-C again to interrupt at once)", err=True)
        threading.Thread(target=cancel, name="cancel-on-ctrl-c").start()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_with_progress(job_id: int, epochs: int) -> str:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ecg_training.runner import run_training_job

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
    ) as bar:
        epoch_task = bar.add_task(f"job {job_id}: epochs", total=epochs)
        batch_task = bar.add_task("batches", total=None)

        def on_batch(done: int, total: int) -> None:
            bar.update(batch_task, completed=done, total=total)

        def on_epoch(progress) -> None:
            scores = " ".join(f"{k} {v:.3f}" for k, v in progress.validation.items())
            bar.update(
                epoch_task,
                completed=progress.epoch,
                description=f"job {job_id}: epoch {progress.epoch} loss {progress.loss:.3f} {scores}",
            )
            bar.console.log(
                f"epoch {progress.epoch}/{epochs} loss {progress.loss:.4f} {scores} ({progress.seconds:.0f} s)"
            )

        return run_training_job(job_id, on_epoch=on_epoch, on_batch=on_batch)


def _write_bundle(session, name: str, version: int, folder: Path) -> None:
    """The version's ONNX file and model card as ``folder/NAME.onnx`` and ``folder/NAME.card.json``."""
    from ecg_shared.artifacts import ArtifactStore
    from ecg_shared.registry import get_version

    row = get_version(session, name, version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.onnx").write_bytes(ArtifactStore().get(row.artifact_uri))
    card = {**row.model_card, "version": row.version, "metrics_summary": row.metrics.get("primary")}
    (folder / f"{name}.card.json").write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    typer.echo(f"wrote {folder / (name + '.onnx')} and {folder / (name + '.card.json')}")


jobs_app = typer.Typer(help="Training jobs: list, show, cancel.", no_args_is_help=True)


@jobs_app.command("list")
def list_jobs(limit: int = typer.Option(20, "--limit", min=1, max=500)) -> None:
    """Training jobs, newest first: status, model, epochs done, test score or error."""
    from ecg_shared.db import session_scope
    from ecg_shared.jobs.training import list_training_jobs, training_job_view

    with session_scope() as session:
        views = [training_job_view(job) for job in list_training_jobs(session, limit)]
    if not views:
        typer.echo("no training jobs")
    for view in views:
        primary = view.metrics.get("primary")
        outcome = f"v{view.model_version} {primary['name']} {primary['value']:.3f}" if primary else (view.error or "")
        typer.echo(
            f"{view.id:>6}  {view.status:<10} {view.model_name:<24} {view.family:<10} "
            f"epoch {view.epoch}/{view.epochs}  {outcome}"
        )


@jobs_app.command("show")
def show_job(job_id: int) -> None:
    """One job as JSON: request, per-epoch progress, test metrics, result or error."""
    from ecg_shared.db import session_scope
    from ecg_shared.jobs.training import get_training_job, training_job_view

    with session_scope() as session:
        job = get_training_job(session, job_id)
        if job is None:
            typer.echo(f"error: training job {job_id} not found", err=True)
            raise typer.Exit(1)
        typer.echo(training_job_view(job).model_dump_json(indent=2))


@jobs_app.command("cancel")
def cancel_job(job_id: int) -> None:
    """Cancel a queued job, or ask a running one to stop at its next batch."""
    from ecg_shared.db import session_scope
    from ecg_shared.jobs.training import TrainingJobNotFound, TrainingJobStateError, cancel_training_job

    try:
        with session_scope() as session:
            job = cancel_training_job(session, job_id)
            state = "cancelled" if job.status == "cancelled" else "asked to stop"
    except (TrainingJobNotFound, TrainingJobStateError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"training job {job_id} {state}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.add_typer(jobs_app, name="training-jobs")
