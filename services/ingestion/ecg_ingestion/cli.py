"""``ecg ingest`` (a job in the foreground with a progress bar, or ``--queue`` for the workers) and
``ecg dataset upload`` (a local data set into a container, with its Excel manifest).

Secrets: prefer ECG_INGEST_SAS_TOKEN / ECG_INGEST_CONNECTION_STRING to the options, which show in shell history and
process lists. A foreground job keeps the credential in memory only; ``--queue`` needs ECG_SECRET_KEY.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

SOURCE = "Source"
SELECTION = "What to take"


def _secret(value: str | None, setting) -> str | None:
    return value or (setting.get_secret_value() if setting is not None else None)


def _validation_message(exc) -> str:
    """A pydantic error as one line, without the input (which holds the secrets)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) + ': ' if e['loc'] else ''}{e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors(include_input=False)
    )


def _database_error(exc: Exception) -> str:
    """An unreachable database as one line (the URL without its password)."""
    from sqlalchemy.engine import make_url

    from ecg_shared.settings import get_settings

    url = make_url(get_settings().database_url)
    return f"database unavailable at {url.host}:{url.port or 5432}/{url.database} ({type(exc.orig or exc).__name__})"


def _setup_logging() -> None:
    from ecg_ingestion.logs import install_redaction, quiet_azure_logs

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    install_redaction()
    quiet_azure_logs()


def ingest(
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset name to file the recordings under."),
    container: str | None = typer.Option(None, "--container", "-c", help="Blob container.", rich_help_panel=SOURCE),
    account_url: str | None = typer.Option(
        None, "--account-url", help="https://<account>.blob.core.windows.net", rich_help_panel=SOURCE
    ),
    sas_token: str | None = typer.Option(
        None, "--sas-token", help="SAS token (read, list); better: ECG_INGEST_SAS_TOKEN.", rich_help_panel=SOURCE
    ),
    connection_string: str | None = typer.Option(
        None,
        "--connection-string",
        help="Instead of URL and token; better: ECG_INGEST_CONNECTION_STRING.",
        rich_help_panel=SOURCE,
    ),
    manifest: str | None = typer.Option(
        None,
        "--manifest",
        "-m",
        help="Manifest (.xlsx or .csv): a local file, or a blob path in the container.",
        rich_help_panel=SELECTION,
    ),
    sheet: str | None = typer.Option(
        None, "--sheet", help="Manifest sheet (default: the first).", rich_help_panel=SELECTION
    ),
    blob_column: str = typer.Option(
        "blob", "--blob-column", help="Manifest column with the blob name or URL.", rich_help_panel=SELECTION
    ),
    label_column: str = typer.Option(
        "label", "--label-column", help="Manifest column with the label ('' for none).", rich_help_panel=SELECTION
    ),
    prefix: str | None = typer.Option(
        None, "--prefix", help="Take every blob under this prefix (no manifest).", rich_help_panel=SELECTION
    ),
    format: str | None = typer.Option(None, "--format", help="a format name (docs/formats.md; default: detect)."),  # noqa: A002
    queue: bool = typer.Option(False, "--queue", help="Enqueue for the ingestion workers; print the job id."),
    resume: int | None = typer.Option(None, "--resume", help="Run job ID again: it skips what is already stored."),
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON."),
) -> None:
    """Ingest ECG blobs from Azure Blob Storage into Postgres: a manifest's rows, or every blob under a prefix."""
    options = dict(locals())  # the options above, before anything else is defined here
    from sqlalchemy.exc import DBAPIError

    from ecg_ingestion.runner import IngestionUnavailable, outage_reason

    try:
        _ingest(**options)
    except IngestionUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except DBAPIError as exc:
        if outage_reason(exc) is None:
            raise
        typer.echo(f"error: {_database_error(exc)}", err=True)
        raise typer.Exit(1) from None


def _ingest(
    dataset: str | None,
    container: str | None,
    account_url: str | None,
    sas_token: str | None,
    connection_string: str | None,
    manifest: str | None,
    sheet: str | None,
    blob_column: str,
    label_column: str,
    prefix: str | None,
    format: str | None,  # noqa: A002
    queue: bool,
    resume: int | None,
    as_json: bool,
) -> None:
    """The body of ``ecg ingest``; an unreachable database ends it with one line, not a traceback (see above)."""
    from pydantic import ValidationError

    from ecg_ingestion.manifest import ManifestError, read_manifest
    from ecg_shared.db import session_scope
    from ecg_shared.jobs.ingestion import (
        IngestionJobNotFound,
        IngestionJobRequest,
        SecretKeyMissing,
        StorageCredential,
        create_ingestion_job,
        enqueue_ingestion_job,
        get_ingestion_job,
    )
    from ecg_shared.settings import get_settings

    _setup_logging()
    settings = get_settings()
    sas_token = _secret(sas_token, settings.ingest_sas_token)
    connection_string = _secret(connection_string, settings.ingest_connection_string)

    if resume is not None:
        credential = None
        if sas_token or connection_string:
            credential = StorageCredential(
                sas_token=sas_token if not connection_string else None, connection_string=connection_string
            )
        try:
            with session_scope() as session:
                get_ingestion_job(session, resume)
        except IngestionJobNotFound as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        _run_foreground(resume, credential, as_json, rerun_finished=True)
        return

    if not dataset or not container:
        typer.echo("error: --dataset and --container are required (or --resume JOB_ID)", err=True)
        raise typer.Exit(2)
    rows = None
    if manifest and Path(manifest).is_file():
        path = Path(manifest)
        try:
            rows = read_manifest(path.read_bytes(), path.name, sheet, blob_column, label_column or None)
        except ManifestError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        manifest = None
    try:
        request = IngestionJobRequest(
            dataset=dataset,
            container=container,
            account_url=account_url,
            sas_token=sas_token,
            connection_string=connection_string,
            manifest=manifest,
            rows=rows,
            prefix=prefix,
            sheet=sheet,
            blob_column=blob_column,
            label_column=label_column or None,
            format=format,
        )
    except ValidationError as exc:
        typer.echo(f"error: {_validation_message(exc)}", err=True)
        raise typer.Exit(2) from None

    try:
        with session_scope() as session:
            job = create_ingestion_job(session, request, keep_credential=queue)
            job_id = job.id
    except SecretKeyMissing as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if queue:
        enqueue_ingestion_job(job_id)
        typer.echo(json.dumps({"job_id": job_id, "status": "queued"}) if as_json else str(job_id))
        return
    _run_foreground(job_id, request.credential(), as_json)


def _run_foreground(job_id: int, credential, as_json: bool, rerun_finished: bool = False) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ecg_ingestion.runner import Counts, run_ingestion_job
    from ecg_shared.jobs.ingestion import JobRunningElsewhere

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(f"ingestion job {job_id}", total=None, detail="listing")

        def show(counts: Counts) -> None:
            done = counts.stored + counts.skipped + counts.failed
            bar.update(
                task,
                total=counts.listed or None,
                completed=done,
                detail=f"stored {counts.stored}, skipped {counts.skipped}, failed {counts.failed}",
            )

        try:
            view = run_ingestion_job(job_id, credential, progress=show, rerun_finished=rerun_finished)
        except JobRunningElsewhere as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    if as_json:
        typer.echo(view.model_dump_json())
    else:
        typer.echo(
            f"ingestion job {view.id} {view.status}: listed {view.listed}, downloaded {view.downloaded}, "
            f"stored {view.stored}, skipped (already stored) {view.skipped}, failed {view.failed}"
        )
        for failure in view.failures[:20]:
            typer.echo(f"  failed {failure.blob}: {failure.reason}", err=True)
        if view.error:
            typer.echo(f"error: {view.error}", err=True)
    if view.status != "succeeded":
        raise typer.Exit(1)


def upload(
    directory: Path = typer.Argument(..., exists=True, file_okay=False, help="Folder of WFDB records."),
    container: str = typer.Option(..., "--container", "-c", help="Blob container (created if missing)."),
    format: str = typer.Option(  # noqa: A002 - the option is --format
        "wfdb",
        "--format",
        help="wfdb (the .hea and .mat/.dat as they are) or wellnest "
        "(12-lead records converted into Wellnest device blobs).",
    ),
    account_url: str | None = typer.Option(None, "--account-url", help="https://<account>.blob.core.windows.net"),
    sas_token: str | None = typer.Option(
        None, "--sas-token", help="SAS token (create, write); better: ECG_INGEST_SAS_TOKEN."
    ),
    connection_string: str | None = typer.Option(
        None, "--connection-string", help="better: ECG_INGEST_CONNECTION_STRING."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Upload the first N records only."),
    prefix: str = typer.Option("", "--prefix", help="Put the blobs (and manifest.xlsx) under this prefix."),
) -> None:
    """Upload a local data set to a blob container and write the Excel manifest (manifest.xlsx) beside the blobs."""
    from pydantic import ValidationError
    from rich.progress import Progress

    from ecg_ingestion.storage import BlobSource, StorageAccessError
    from ecg_ingestion.upload import upload_dataset
    from ecg_shared.jobs.ingestion import IngestionJobRequest
    from ecg_shared.settings import get_settings

    _setup_logging()
    settings = get_settings()
    try:
        request = IngestionJobRequest(
            dataset="upload",
            container=container,
            account_url=account_url,
            sas_token=_secret(sas_token, settings.ingest_sas_token),
            connection_string=_secret(connection_string, settings.ingest_connection_string),
        )
    except ValidationError as exc:
        typer.echo(f"error: {_validation_message(exc)}", err=True)
        raise typer.Exit(2) from None
    source = BlobSource(request.account_url, container, request.credential())
    try:
        with Progress(transient=True) as bar:
            task = bar.add_task(f"uploading {directory}", total=limit)
            summary = upload_dataset(directory, source, format, limit, prefix, progress=lambda n: bar.advance(task, n))
    except (ValueError, StorageAccessError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"uploaded {summary.uploaded} recordings to {source.account_url}/{container}; manifest: {summary.manifest_blob}"
    )
    for name, reason in summary.failures[:20]:
        typer.echo(f"  skipped {name}: {reason}", err=True)


def register(app: typer.Typer) -> None:
    from ecg_shared.cli import dataset_app

    app.command("ingest")(ingest)
    dataset_app.command("upload")(upload)
