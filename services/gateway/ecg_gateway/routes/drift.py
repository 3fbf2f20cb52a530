"""Drift of the active model versions: ``p_abnormal`` on live requests (the inference service's Prometheus
histogram) against the validation split's (the version's metrics), with the population stability index
(:mod:`ecg_shared.drift`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

from ecg_shared import registry
from ecg_shared.db import session_scope
from ecg_shared.drift import BUCKET_EDGES, psi, reading

router = APIRouter(prefix="/api/drift", tags=["models"])


class BucketShares(BaseModel):
    upper: float = Field(description="upper edge of the p_abnormal bucket")
    reference: float | None = Field(description="share of validation recordings in the bucket")
    live: float | None = Field(description="share of live answers in the bucket")


class VersionDrift(BaseModel):
    name: str
    version: int
    live_answers: int
    reference_recordings: int | None
    psi: float | None
    reading: str = Field(description="stable (< 0.1), moderate shift (< 0.25), significant shift, or no data")
    calls: dict[str, int] = Field(
        description="live calls: normal / abnormal / unreadable (these make live_answers), and not_judged: answers "
        "on leads the model cannot read (models[].not_judged), left out of the buckets"
    )
    buckets: list[BucketShares]
    note: str | None


class DriftReport(BaseModel):
    source: str
    versions: list[VersionDrift]


def live_counts(metrics_text: str) -> tuple[dict[tuple[str, str], list[int]], dict[tuple[str, str], dict[str, int]]]:
    """Per (model, version): p_abnormal counts per bucket, and calls, from the inference service's metrics."""
    cumulative: dict[tuple[str, str], dict[float, float]] = {}
    calls: dict[tuple[str, str], dict[str, int]] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            key = (sample.labels.get("model", ""), sample.labels.get("version", ""))
            if sample.name == "ecg_inference_p_abnormal_bucket" and sample.labels["le"] != "+Inf":
                cumulative.setdefault(key, {})[float(sample.labels["le"])] = sample.value
            elif sample.name == "ecg_inference_calls_total":
                calls.setdefault(key, {})[sample.labels["call"]] = int(sample.value)
    counts = {}
    for key, by_edge in cumulative.items():
        running = [by_edge.get(edge, 0.0) for edge in BUCKET_EDGES]
        counts[key] = [round(b - a) for a, b in zip([0.0, *running[:-1]], running, strict=True)]
    return counts, calls


def version_drift(
    name: str, version: int, metrics: dict, live: list[int] | None, calls: dict[str, int]
) -> VersionDrift:
    """One version's report: its live counts (None: no answers yet) against its metrics' validation histogram."""
    reference = ((metrics or {}).get("validation") or {}).get("p_abnormal_histogram")
    live = live or [0] * len(BUCKET_EDGES)
    n_live, n_reference = sum(live), sum(reference) if reference else None
    note = None
    if not reference:
        note = (
            "no reference: this version's metrics hold no validation p_abnormal histogram "
            "(trained before training kept one)"
        )
    elif not n_live:
        note = "no live answers from this version since the inference service started"
    value = psi(reference, live) if reference else None
    return VersionDrift(
        name=name,
        version=version,
        live_answers=n_live,
        reference_recordings=n_reference,
        psi=None if value is None else round(value, 4),
        reading=reading(value),
        calls=calls,
        buckets=[
            BucketShares(
                upper=edge,
                reference=round(reference[i] / n_reference, 4) if n_reference else None,
                live=round(live[i] / n_live, 4) if n_live else None,
            )
            for i, edge in enumerate(BUCKET_EDGES)
        ],
        note=note,
    )


@router.get("", response_model=DriftReport, summary="p_abnormal of each active version: live against validation")
async def drift(request: Request) -> DriftReport:
    response = await request.app.state.inference.request("GET", "/metrics")
    counts, calls = live_counts(response.text)
    with session_scope() as session:
        active = [(v.name, v.version, v.metrics or {}) for v in registry.active_versions(session)]
    return DriftReport(
        source="the inference service's answers since it started (Prometheus metrics of all its workers)",
        versions=[
            version_drift(name, version, metrics, counts.get((name, str(version))), calls.get((name, str(version)), {}))
            for name, version, metrics in active
        ],
    )
