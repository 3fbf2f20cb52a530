"""Drift on the real stack: answers classified through the gateway show up in GET /api/drift per active version,
against the validation split's distribution when the version's metrics hold one; and on the models page."""

from __future__ import annotations

import httpx
import pytest

from ecg_gateway.routes.drift import version_drift
from ecg_shared.drift import bucket_counts
from tests.gateway.test_browser import SCREENSHOTS, browser, page  # noqa: F401 - the Chromium fixtures


def active_now(database_url: str) -> set[tuple[str, int]]:
    """The active versions as the registry has them now (earlier tests on the shared stack may have promoted others
    than the ones the stack started with)."""
    from ecg_shared import registry
    from ecg_shared.db import session_scope

    with session_scope(database_url) as session:
        return {(row.name, row.version) for row in registry.active_versions(session)}


def test_live_answers_are_counted_per_active_version(gateway_url, active_models, database_url, wellnest_sample):
    before = {
        (v["name"], v["version"]): v["live_answers"] for v in httpx.get(f"{gateway_url}/api/drift").json()["versions"]
    }
    for _ in range(2):
        response = httpx.post(
            f"{gateway_url}/classify", files={"file": (wellnest_sample.name, wellnest_sample.read_bytes())}, timeout=60
        )
        assert response.status_code == 200, response.text
    answered = {m["name"]: m for m in response.json()["models"]}
    report = httpx.get(f"{gateway_url}/api/drift", timeout=30).json()
    versions = {(v["name"], v["version"]): v for v in report["versions"]}
    assert set(versions) == active_now(database_url)
    for (name, version), view in versions.items():
        if name not in answered:
            continue
        assert view["live_answers"] - before.get((name, version), 0) == 2
        assert sum(n for call, n in view["calls"].items() if call != "not_judged") == view["live_answers"]
        assert sum(b["live"] for b in view["buckets"]) == pytest.approx(1.0, abs=1e-3)
        p_abnormal = answered[name]["p_abnormal"]
        bucket = next(b for b in view["buckets"] if p_abnormal <= b["upper"])
        assert bucket["live"] > 0
        if view["reference_recordings"] is None:
            # registered without a validation histogram (the stack's test models): no PSI, and the page says why
            assert view["psi"] is None and view["reading"] == "no data" and "no reference" in view["note"]
        else:  # trained by an earlier test through the pipeline, which stores the histogram
            assert view["psi"] is not None and view["psi"] >= 0


def test_a_version_with_a_reference_gets_its_psi():
    reference = bucket_counts([0.05] * 50 + [0.95] * 50)
    same = version_drift("m", 3, {"validation": {"p_abnormal_histogram": reference}}, reference, {"normal": 50})
    assert same.psi == 0.0 and same.reading == "stable" and same.reference_recordings == 100
    shifted = version_drift(
        "m", 3, {"validation": {"p_abnormal_histogram": reference}}, bucket_counts([0.95] * 90 + [0.05] * 10), {}
    )
    assert shifted.psi > 0.25 and shifted.reading == "significant shift" and shifted.note is None
    assert shifted.buckets[-1].live == 0.9 and shifted.buckets[-1].reference == 0.5


@pytest.mark.browser
@pytest.mark.slow
def test_the_models_page_shows_each_active_versions_drift(page, active_models, database_url):  # noqa: F811
    page.goto("/models")
    cards = page.locator("#drift .drift-card")
    cards.first.wait_for(timeout=10_000)
    shown = {cards.nth(i).get_attribute("data-model") for i in range(cards.count())}
    assert shown == {name for name, _ in active_now(database_url)}
    text = page.locator("#drift").inner_text()
    assert "PSI below 0.1: stable" in text and "no reference" in text
    assert cards.first.locator("table.drift-table tbody tr").count() == 10
    page.screenshot(path=str(SCREENSHOTS / "models-drift.png"), full_page=True)
