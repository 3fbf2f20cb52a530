"""The promotion gate: a candidate version and the active one, scored on the same evaluation recordings.

Evaluation data is either the clinician-reviewed recordings (``"reviewed"``: every recording with a settled review
label, see ``ecg_shared.reviews``) or a named dataset, whose labels become normal/abnormal through the candidate's
own classes (its training ``label_mapping``, then its normal and unreadable classes); a settled review label takes
precedence over the file's. Reviewed recordings a version was fitted on (its model card's
``data.fit_on_reviewed_recordings``: its train and validation splits) are left out. Each version classifies each
recording the way the service does (``prepare_runs`` and ``model_result`` of :mod:`ecg_inference.classify`), and is
scored with the training figures (``ecg_shared.evaluation.evaluate``) on the recordings BOTH versions can read.

The figure compared: the normal-vs-abnormal ROC AUC when the evaluation holds both normal and abnormal recordings,
else agreement (the share of recordings each version calls as labelled). The candidate passes when it scores at
least as high as the active version, or when there is no active version. Too little data to compare is not a pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ecg_inference.classify import ClassificationError, model_result, prepare_runs, run_batched
from ecg_inference.models import LoadedModel, load_model
from ecg_shared.artifacts import ArtifactStore
from ecg_shared.db.models import ModelVersion, Recording
from ecg_shared.evaluation import evaluate
from ecg_shared.formats.record import Record
from ecg_shared.promotion import (
    DEFAULT_MAX_RECORDINGS,
    REVIEWED,
    GateRequest,
    GateResult,
    VersionScore,
    refused,
    unopposed,
)
from ecg_shared.registry import get_version
from ecg_shared.reviews import settled_labels

log = logging.getLogger(__name__)


@dataclass
class EvaluationSet:
    name: str
    ids: list[int] = field(default_factory=list)  # recording ids, one per record
    records: list[Record] = field(default_factory=list)
    truth: list[str] = field(default_factory=list)  # "normal" / "abnormal", one per record
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def _truth(label: str, candidate: ModelVersion) -> str | None:
    """normal/abnormal for a raw label, through the candidate's label mapping and classes; None if unreadable."""
    if label in ("normal", "abnormal"):
        return label
    if label == "unreadable":
        return None
    meta = candidate.onnx_metadata or {}
    mapping = _card_data(candidate).get("label_mapping")
    mapping = mapping if isinstance(mapping, dict) else {}
    cls = mapping.get(label, label)
    if cls not in meta.get("classes", []) or cls in meta.get("unreadable_classes", []):
        return None
    return "normal" if cls in meta.get("normal_classes", []) else "abnormal"


def _card_data(row: ModelVersion) -> dict:
    """The model card's ``data`` section, or {} (cards are free-form: a seeded or hand-written one may differ)."""
    data = (row.model_card or {}).get("data") if isinstance(row.model_card, dict) else None
    return data if isinstance(data, dict) else {}


def fitted_on(row: ModelVersion) -> set[int]:
    """Reviewed recordings the version was trained or validated on (its model card says), never used to score it."""
    ids = _card_data(row).get("fit_on_reviewed_recordings")
    return {int(i) for i in ids if isinstance(i, int)} if isinstance(ids, list) else set()


def load_evaluation(
    session: Session,
    evaluation: str,
    candidate: ModelVersion,
    max_recordings: int,
    excluded: dict[int, str] | None = None,
) -> EvaluationSet:
    """The evaluation recordings and their truth (see the module docstring), without ``excluded`` (id -> why)."""
    excluded = excluded or {}
    settled = settled_labels().subquery()
    label = settled.c.label if evaluation == REVIEWED else func.coalesce(settled.c.label, Recording.label)
    query = select(Recording, label.label("truth_label")).outerjoin(settled, settled.c.recording_id == Recording.id)
    if evaluation == REVIEWED:
        query = query.where(settled.c.label.is_not(None))
    else:
        query = query.where(Recording.dataset == evaluation, label.is_not(None))
    found = EvaluationSet(evaluation)
    for row, raw in session.execute(query.order_by(Recording.id).limit(max_recordings)):
        truth = _truth(raw, candidate)
        if row.id in excluded:
            found.skip(excluded[row.id])
        elif truth is None:
            found.skip(f"label {raw!r} is not normal or abnormal for {candidate.name}")
        else:
            found.ids.append(row.id)
            found.records.append(row.to_record())
            found.truth.append(truth)
        session.expunge(row)  # the signal is in the Record now; do not keep a second copy in the session
    return found


def _calls(model: LoadedModel, evaluation: EvaluationSet) -> dict[int, tuple[float, str]]:
    """Recording index -> (p_abnormal, call), for every evaluation recording the model can read."""
    runs, indices = [], []
    for i, record in enumerate(evaluation.records):
        try:
            (run,), _ = prepare_runs(record, [model], None)
        except ClassificationError as exc:
            evaluation.skip(f"v{model.version} cannot read it: {exc.message.split(':')[0]}")
            continue
        runs.append(run)
        indices.append(i)
    if not runs:
        return {}
    outputs = run_batched(model, [run.windows for run in runs])
    results = {}
    for i, run, probabilities in zip(indices, runs, outputs, strict=True):
        result = model_result(run, probabilities)
        results[i] = (result.p_abnormal, result.call)
    return results


def _score(
    model: LoadedModel, calls: dict[int, tuple[float, str]], common: list[int], truth: list[str]
) -> VersionScore:
    p = np.array([calls[i][0] for i in common])
    y = np.array([1 if truth[i] == "abnormal" else 0 for i in common])
    figures = evaluate(np.column_stack([1 - p, p]), y, ["normal", "abnormal"], ["normal"], [], model.metadata.threshold)
    binary = figures["normal_vs_abnormal"]
    agreement = float(np.mean([calls[i][1] == truth[i] for i in common])) if common else None
    return VersionScore(
        version=model.version,
        n=len(common),
        agreement=agreement,
        auc=binary["auc"],
        sensitivity=binary["sensitivity"],
        specificity=binary["specificity"],
        threshold=float(model.metadata.threshold),
        score=None,
    )


def compare(name: str, candidate: LoadedModel, active: LoadedModel | None, evaluation: EvaluationSet) -> GateResult:
    """Score both on the recordings both can read and decide (see the module docstring)."""
    if active is None or active.version == candidate.version:
        return unopposed(
            name, evaluation.name, "no active version to compare with" if active is None else "it is the active version"
        )
    theirs, ours = _calls(active, evaluation), _calls(candidate, evaluation)
    common = sorted(set(theirs) & set(ours))
    labels = {k: sum(evaluation.truth[i] == k for i in common) for k in ("normal", "abnormal")}
    if not common:
        why = "; ".join(f"{n} x {reason}" for reason, n in evaluation.skipped.items()) or "no labelled recordings"
        result = refused(name, evaluation.name, f"nothing to compare on in {evaluation.name!r} ({why})")
        result.skipped = evaluation.skipped
        return result
    mine, current = _score(candidate, ours, common, evaluation.truth), _score(active, theirs, common, evaluation.truth)
    metric = "auc_abnormal" if mine.auc is not None and current.auc is not None else "agreement"
    for score in (mine, current):
        score.score = score.auc if metric == "auc_abnormal" else score.agreement
    passed = mine.score >= current.score
    reason = (
        f"candidate {metric} {mine.score:.3f} {'>=' if passed else '<'} active v{current.version} "
        f"{current.score:.3f} on {len(common)} recordings of {evaluation.name!r}"
    )
    return GateResult(
        name=name, evaluation=evaluation.name, metric=metric, n=len(common), labels=labels,
        skipped=evaluation.skipped, candidate=mine, active=current, passed=passed, reason=reason,
    )  # fmt: skip


def load_version(session: Session, name: str, version: int, store: ArtifactStore | None = None) -> LoadedModel:
    row = get_version(session, name, version)
    return load_model((store or ArtifactStore()).get(row.artifact_uri), version=row.version, expected_name=name)


def active_version(session: Session, name: str) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.name == name, ModelVersion.stage == "active"))


def gate(
    session: Session,
    name: str,
    evaluation: str = REVIEWED,
    *,
    candidate: LoadedModel,
    candidate_row: ModelVersion,
    max_recordings: int = DEFAULT_MAX_RECORDINGS,
    store: ArtifactStore | None = None,
) -> GateResult:
    """Compare ``candidate`` with ``name``'s active version (loaded from the registry) on ``evaluation``."""
    active_row = active_version(session, name)
    active = None
    if active_row is not None and active_row.version != candidate.version:
        active = load_version(session, name, active_row.version, store)
    excluded = {rid: "the candidate was fitted on it" for rid in fitted_on(candidate_row)}
    if active_row is not None and active_row.version != candidate.version:
        excluded |= {rid: f"v{active_row.version} was fitted on it" for rid in fitted_on(active_row)}
    data = load_evaluation(session, evaluation, candidate_row, max_recordings, excluded)
    result = compare(name, candidate, active, data)
    log.info("promotion gate for %s v%s: %s", name, candidate.version, result.reason)
    return result


def gate_registered(session: Session, request: GateRequest, store: ArtifactStore | None = None) -> GateResult:
    """The gate for a registered version (what ``POST /gate`` and the gateway's promotion run)."""
    row = get_version(session, request.name, request.version)
    candidate = load_version(session, request.name, request.version, store)
    return gate(
        session,
        request.name,
        request.evaluation,
        candidate=candidate,
        candidate_row=row,
        max_recordings=request.max_recordings,
        store=store,
    )
