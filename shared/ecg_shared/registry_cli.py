"""``ecg models``: list, show, promote and archive registered model versions, seed the bundled models, and check
that every version's file is in the artifact store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import typer

models_app = typer.Typer(help="Model registry: versions, stages, promotion, bundled models.", no_args_is_help=True)


@dataclass
class SeedResult:
    name: str
    version: int
    registered: bool  # False: a version with the same file was already registered
    promoted: bool
    restored: str | None = None  # what was wrong with the registered version's stored file, now replaced
    stage: str = "active"  # this version's stage after seeding
    active_version: int | None = None  # the name's active version after seeding (this one, when promoted)

    @property
    def waits_for_promotion(self) -> bool:
        """A bundled file the service does not answer with: a candidate beside another active version."""
        return self.stage == "candidate" and self.active_version not in (None, self.version)


def read_bundled_model(path: Path):
    """(ModelMetadata, ONNX bytes, model card) of a bundled ``NAME.onnx`` (card from ``NAME.card.json`` beside it).

    The metadata is read the way the inference service reads it: from an onnxruntime session, which also proves the
    file loads.
    """
    import onnxruntime

    from ecg_shared.model_metadata import ModelMetadata

    data = path.read_bytes()
    try:
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise ValueError(f"{path}: not a loadable ONNX model ({exc})") from None
    try:
        metadata = ModelMetadata.from_onnx_props(session.get_modelmeta().custom_metadata_map)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    card_path = path.with_name(path.name.removesuffix(".onnx") + ".card.json")
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    return metadata, data, card


def seed_models(session, models_dir: Path, store=None) -> list[SeedResult]:
    """Register every ``models_dir/*.onnx`` unless a version with the same file exists; promote it if its name has
    no active version. A version already registered has its stored file checked, and restored from the bundled one
    when it is missing or differs. Idempotent: running it again changes nothing.

    A bundled model's metadata names the training job that made it, in the database it was trained in; here that id
    would point at an unrelated job, so the version links to none (its model card keeps the original as
    ``origin_training_job_id``)."""
    from sqlalchemy import select

    from ecg_shared.artifacts import ArtifactStore, sha256
    from ecg_shared.db.models import ModelVersion
    from ecg_shared.registry import active_versions, artifact_problem, promote, register_version

    store = store or ArtifactStore()
    results = []
    for path in sorted(models_dir.glob("*.onnx")):
        metadata, data, card = read_bundled_model(path)
        existing = session.scalar(
            select(ModelVersion).where(ModelVersion.name == metadata.name, ModelVersion.artifact_sha256 == sha256(data))
        )
        restored = None
        if existing is None:
            origin, metadata.training_job_id = metadata.training_job_id, None
            model_card = {**card, "bundled_file": path.name}
            if origin is not None:
                model_card["origin_training_job_id"] = origin
            row = register_version(
                session, metadata, data, metrics=card.get("metrics", {}), model_card=model_card, store=store
            )
        else:
            row = existing
            restored = artifact_problem(row, store)
            if restored:
                store.restore(row.artifact_uri, data)
        active = next((v.version for v in active_versions(session) if v.name == metadata.name), None)
        promoted = active is None
        if promoted:
            promote(session, row.name, row.version)
            active = row.version
        results.append(SeedResult(row.name, row.version, existing is None, promoted, restored, row.stage, active))
    return results


def _version_line(row) -> str:
    primary = (row.metrics or {}).get("primary") or {}
    score = f"{primary['name']} {primary['value']:.3f}" if "value" in primary else ""
    return f"{row.name:<24} v{row.version:<4} {row.stage:<10} {row.family:<10} {row.created_at:%Y-%m-%d %H:%M}  {score}"


@models_app.command("list")
def list_command(
    name: str | None = typer.Argument(None, help="Only this model."), as_json: bool = typer.Option(False, "--json")
) -> None:
    """Registered versions, newest first per model."""
    from ecg_shared.db import session_scope
    from ecg_shared.registry import list_versions

    with session_scope() as session:
        rows = list_versions(session, name)
        if as_json:
            for row in rows:
                typer.echo(
                    json.dumps(
                        {
                            "name": row.name,
                            "version": row.version,
                            "stage": row.stage,
                            "family": row.family,
                            "primary": (row.metrics or {}).get("primary"),
                            "created_at": row.created_at.isoformat(),
                        }
                    )
                )
            return
        if not rows:
            typer.echo("no registered models" + (f" named {name!r}" if name else ""))
        for row in rows:
            typer.echo(_version_line(row))


@models_app.command("show")
def show_command(name: str, version: int) -> None:
    """One version: stage, artifact, metadata and model card (JSON)."""
    from ecg_shared.db import session_scope
    from ecg_shared.registry import RegistryError, get_version

    with session_scope() as session:
        try:
            row = get_version(session, name, version)
        except RegistryError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(
            json.dumps(
                {
                    "name": row.name,
                    "version": row.version,
                    "stage": row.stage,
                    "family": row.family,
                    "artifact_uri": row.artifact_uri,
                    "artifact_sha256": row.artifact_sha256,
                    "training_job_id": row.training_job_id,
                    "created_at": row.created_at.isoformat(),
                    "promoted_at": row.promoted_at.isoformat() if row.promoted_at else None,
                    "metadata": row.onnx_metadata,
                    "metrics": row.metrics,
                    "model_card": row.model_card,
                },
                indent=2,
            )
        )


@models_app.command("promote")
def promote_command(
    name: str,
    version: int,
    evaluation: str = typer.Option(
        "reviewed", "--evaluation", help="the gate's evaluation data: 'reviewed' or a dataset name"
    ),
    force: bool = typer.Option(False, "--force", help="promote even if it scores lower (skips the gate)"),
) -> None:
    """Make NAME vVERSION the active version (the previous active one is archived), if it passes the promotion gate:
    the inference service (ECG_INFERENCE_URL) scores it and the active version on the same evaluation data."""
    from ecg_shared.db import session_scope
    from ecg_shared.promotion import ask_gate
    from ecg_shared.registry import RegistryError, active_versions, get_version, promote

    if not force:
        try:
            with session_scope() as session:
                get_version(session, name, version)
                active = next((v.version for v in active_versions(session) if v.name == name), None)
        except RegistryError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        if active is not None and active != version:
            gate = ask_gate(name, version, evaluation)
            if not gate.passed:
                typer.echo(f"error: not promoted: {gate.reason} (--force overrides the gate)", err=True)
                raise typer.Exit(1)
            typer.echo(f"gate: {gate.reason}")
    _change_stage(promote, name, version, "is active")


@models_app.command("archive")
def archive_command(name: str, version: int) -> None:
    """Archive NAME vVERSION (an archived active version leaves the model without an active one)."""
    from ecg_shared.registry import archive

    _change_stage(archive, name, version, "archived")


def _change_stage(change, name: str, version: int, outcome: str) -> None:
    """Run a registry stage change in one transaction; a refused change is a one-line error and exit status 1."""
    from ecg_shared.db import session_scope
    from ecg_shared.registry import RegistryError

    try:
        with session_scope() as session:
            row = change(session, name, version)
            typer.echo(f"{row.name} v{row.version} {outcome}")
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@models_app.command("seed")
def seed_command(models_dir: Path | None = typer.Option(None, "--dir", help="Default: ECG_MODELS_DIR.")) -> None:
    """Register the bundled models (models/*.onnx) and promote each whose name has no active version."""
    from ecg_shared.db import session_scope
    from ecg_shared.settings import get_settings

    folder = models_dir or get_settings().models_dir
    if not folder.is_dir():
        typer.echo(f"error: models folder {folder} not found", err=True)
        raise typer.Exit(1)
    try:
        with session_scope() as session:
            results = seed_models(session, folder)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if not results:
        typer.echo(f"no bundled models in {folder}")
    for result in results:
        what = "registered" if result.registered else "already registered"
        if result.restored:
            what += f", its file restored ({result.restored})"
        if result.promoted:
            what += ", promoted to active"
        elif result.waits_for_promotion:
            what += (
                f", a candidate: v{result.active_version} stays active until this one is promoted"
                f" (ecg models promote {result.name} {result.version}, through the promotion gate)"
            )
        typer.echo(f"{result.name} v{result.version}: {what}")


@models_app.command("check")
def check_command() -> None:
    """Check every registered version's file in the artifact store (present, same sha256); exit 1 if any is not."""
    from ecg_shared.db import session_scope
    from ecg_shared.registry import artifact_problem, list_versions

    with session_scope() as session:
        rows = list_versions(session)
        problems = [(row, artifact_problem(row)) for row in rows]
    for row, problem in problems:
        typer.echo(f"{row.name} v{row.version} ({row.stage}): {problem or 'ok'}")
    broken = [row for row, problem in problems if problem]
    if not rows:
        typer.echo("no registered models")
    if broken:
        typer.echo(
            f"error: {len(broken)} of {len(rows)} versions have no usable file; `ecg models seed` restores the "
            "bundled ones, others need their training job run again",
            err=True,
        )
        raise typer.Exit(1)
