"""The verdict when models disagree (ecg_inference.classify.combine): constructed disagreements between a 12-lead
model and a rhythm model, combined by Bayes' rule from their calibrated probabilities."""

from __future__ import annotations

import math

import pytest

from ecg_inference.classify import OTHER_MODEL_WEIGHT, combine
from ecg_inference.models import load_model
from ecg_shared.quality import QualityReport
from ecg_shared.schemas import ModelResult
from tests.inference.onnx_models import rhythm_metadata, tiny_model, twelve_lead_metadata

GOOD = QualityReport(usable=True)
TWELVE_PREVALENCE, RHYTHM_PREVALENCE = 0.47, 0.38


@pytest.fixture(scope="module")
def models():
    twelve = load_model(tiny_model(twelve_lead_metadata(abnormal_prevalence=TWELVE_PREVALENCE, threshold=0.3)))
    rhythm = load_model(tiny_model(rhythm_metadata(abnormal_prevalence=RHYTHM_PREVALENCE, threshold=0.4)))
    return twelve, rhythm


def result(
    model, p_abnormal: float, call: str | None = None, unreadable: float = 0.0, not_judged: str | None = None
) -> ModelResult:
    meta = model.metadata
    if meta.unreadable_classes:  # rhythm: N, A, O, ~
        probabilities = {"N": 1 - p_abnormal - unreadable, "A": p_abnormal / 2, "O": p_abnormal / 2, "~": unreadable}
        predicted = max(probabilities, key=probabilities.get)
    else:
        probabilities = {"Normal": 1 - p_abnormal, "Abnormal": p_abnormal}
        predicted = max(probabilities, key=probabilities.get)
    if not_judged is not None:
        call = "unreadable"
    if call is None:
        call = (
            "unreadable"
            if predicted in meta.unreadable_classes
            else ("abnormal" if p_abnormal >= meta.threshold else "normal")
        )
    return ModelResult(
        name=meta.name,
        version=1,
        family="test",
        leads=list(meta.preprocessing.leads),
        probabilities=probabilities,
        predicted_class=predicted,
        call=call,
        p_abnormal=p_abnormal,
        threshold=meta.threshold,
        windows=1,
        not_judged=not_judged,
    )


def log_odds(p: float) -> float:
    return math.log(p / (1 - p))


def test_certain_normal_twelve_lead_outweighs_a_mildly_abnormal_rhythm_call(models):
    """The case the platform met: the 12-lead model says normal with near certainty, the rhythm model abnormal."""
    twelve, rhythm = models
    verdict = combine(GOOD, [result(twelve, 0.001), result(rhythm, 0.65)], [twelve, rhythm])
    assert verdict.label == "normal" and verdict.disagreement and verdict.anchor == twelve.name
    expected = log_odds(0.001) + OTHER_MODEL_WEIGHT * (log_odds(0.65) - log_odds(RHYTHM_PREVALENCE))
    assert verdict.p_abnormal == pytest.approx(1 / (1 + math.exp(-expected)))
    assert verdict.probability == pytest.approx(1 - verdict.p_abnormal)
    for words in ("the models disagree", "normal-12lead normal", "rhythm-1lead abnormal", "threshold 0.300"):
        assert words in verdict.rule


def test_a_confident_rhythm_finding_overturns_a_mildly_normal_twelve_lead_call(models):
    twelve, rhythm = models
    verdict = combine(GOOD, [result(twelve, 0.2), result(rhythm, 0.97)], [twelve, rhythm])
    assert verdict.label == "abnormal" and verdict.disagreement
    assert verdict.p_abnormal > 0.3 and verdict.probability == pytest.approx(verdict.p_abnormal)
    assert f"weighted {OTHER_MODEL_WEIGHT:g}" in verdict.rule
    # ...but a rhythm model merely leaning abnormal does not outvote it: its evidence counts a quarter
    leaning = combine(GOOD, [result(twelve, 0.2), result(rhythm, 0.65)], [twelve, rhythm])
    assert leaning.label == "normal" and leaning.disagreement


def test_agreeing_models_reinforce_each_other(models):
    twelve, rhythm = models
    verdict = combine(GOOD, [result(twelve, 0.6), result(rhythm, 0.8)], [twelve, rhythm])
    assert verdict.label == "abnormal" and not verdict.disagreement and "the models agree" in verdict.rule
    assert verdict.p_abnormal > 0.6
    # a rhythm model at exactly its training prevalence adds no evidence either way
    neutral = combine(GOOD, [result(twelve, 0.25), result(rhythm, RHYTHM_PREVALENCE)], [twelve, rhythm])
    assert neutral.p_abnormal == pytest.approx(0.25)


def test_one_model_alone_gives_its_own_call(models):
    _, rhythm = models
    verdict = combine(GOOD, [result(rhythm, 0.45)], [rhythm])
    assert verdict.label == "abnormal" and verdict.p_abnormal == pytest.approx(0.45) and not verdict.disagreement
    assert verdict.rule.startswith("rhythm-1lead calls abnormal: p_abnormal 0.450 >= threshold 0.400")


def test_unreadable_models_and_recordings(models):
    twelve, rhythm = models
    noisy = result(rhythm, 0.1, unreadable=0.8)
    verdict = combine(GOOD, [result(twelve, 0.1), noisy], [twelve, rhythm])
    assert verdict.label == "normal" and "rhythm-1lead found it too noisy to judge" in verdict.rule
    only_noisy = combine(GOOD, [noisy], [rhythm])
    assert only_noisy.label == "unreadable" and only_noisy.probability == pytest.approx(0.8)
    bad = combine(QualityReport(usable=False, reasons=["flat line"]), [result(twelve, 0.9)], [twelve])
    assert bad.label == "unreadable" and "flat line" in bad.rule
    assert bad.probability is None and bad.p_abnormal is None  # a rule decided it: no probability stands behind it


def test_a_model_not_judged_counts_for_nothing_and_the_rule_says_why(models):
    """The chest leads off: the 12-lead model's confident 'normal' on them must not outweigh the rhythm model."""
    twelve, rhythm = models
    off = "it reads leads with no signal (V1: flat line)"
    verdict = combine(GOOD, [result(twelve, 0.001, not_judged=off), result(rhythm, 0.9)], [twelve, rhythm])
    alone = combine(GOOD, [result(rhythm, 0.9)], [rhythm])
    assert verdict.label == alone.label == "abnormal" and verdict.p_abnormal == pytest.approx(alone.p_abnormal)
    assert verdict.anchor == rhythm.name and not verdict.disagreement
    assert f"normal-12lead not judged: {off}" in verdict.rule
    nobody = combine(GOOD, [result(twelve, 0.5, not_judged=off)], [twelve])
    assert nobody.label == "unreadable" and nobody.p_abnormal is None and nobody.probability is None
    assert off in nobody.rule


def test_where_most_leads_have_problems_the_models_reading_clean_leads_decide(models):
    twelve, rhythm = models
    leads = {lead: (["flat line"] if lead.startswith("V") else []) for lead in twelve.metadata.preprocessing.leads}
    quality = QualityReport(
        usable=False,
        reasons=["7 of 12 leads have problems"],
        leads=leads,
        unreadable_leads=[lead for lead, problems in leads.items() if problems],
    )
    verdict = combine(quality, [result(twelve, 0.2, not_judged="..."), result(rhythm, 0.1)], [twelve, rhythm])
    assert verdict.label == "normal" and verdict.anchor == rhythm.name
    assert "the recording failed the quality check (7 of 12 leads have problems)" in verdict.rule
