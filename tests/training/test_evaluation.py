"""Evaluation figures against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_shared.evaluation import (
    evaluate,
    primary_metric,
    sensitivity_at_specificity,
    threshold_for_sensitivity,
    with_intervals,
)

CLASSES = ["N", "A", "O", "~"]


def test_per_class_macro_confusion_and_normal_vs_abnormal():
    y = np.array([0, 0, 0, 1, 1, 2, 2, 3])
    p = np.array(
        [
            [0.8, 0.1, 0.1, 0.0],  # N -> N
            [0.6, 0.0, 0.4, 0.0],  # N -> N
            [0.3, 0.0, 0.7, 0.0],  # N -> O
            [0.1, 0.9, 0.0, 0.0],  # A -> A
            [0.2, 0.1, 0.7, 0.0],  # A -> O
            [0.1, 0.0, 0.9, 0.0],  # O -> O
            [0.7, 0.0, 0.3, 0.0],  # O -> N
            [0.1, 0.0, 0.1, 0.8],  # ~ -> ~
        ]
    )
    m = evaluate(p, y, CLASSES, normal=["N"], unreadable=["~"], threshold=0.5)
    assert m["n"] == 8 and m["accuracy"] == pytest.approx(5 / 8)
    assert m["confusion_matrix"]["matrix"] == [[2, 0, 1, 0], [0, 1, 1, 0], [1, 0, 1, 0], [0, 0, 0, 1]]
    n, a, o = m["per_class"]["N"], m["per_class"]["A"], m["per_class"]["O"]
    assert (n["precision"], n["recall"]) == pytest.approx((2 / 3, 2 / 3))
    assert (a["precision"], a["recall"], a["f1"]) == pytest.approx((1.0, 0.5, 2 / 3))
    assert (o["precision"], o["recall"], o["f1"]) == pytest.approx((1 / 3, 0.5, 0.4))
    assert m["mean_f1_readable"] == pytest.approx((2 / 3 + 2 / 3 + 0.4) / 3)
    assert m["macro"]["f1"] == pytest.approx((2 / 3 + 2 / 3 + 0.4 + 1.0) / 4)
    assert a["auc"] == pytest.approx(11.5 / 12) and a["support"] == 2  # one tie at 0.1 counts half

    binary = m["normal_vs_abnormal"]
    # readable recordings only; P(abnormal) = P(A) + P(O): N 0.2 0.4 0.7, abnormal 0.9 0.8 0.9 0.3
    assert binary["n"] == 7 and binary["abnormal_classes"] == ["A", "O"]
    assert binary["sensitivity"] == pytest.approx(3 / 4) and binary["specificity"] == pytest.approx(2 / 3)
    assert binary["auc"] == pytest.approx(10 / 12)
    assert primary_metric(m, 4) == ("mean_f1_readable", pytest.approx(m["mean_f1_readable"]))
    assert primary_metric(m, 2) == ("auc_abnormal", pytest.approx(10 / 12))


def test_threshold_is_the_highest_that_reaches_the_sensitivity_goal():
    classes = ["Normal", "Abnormal"]
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.35, 0.3, 0.6, 0.9, 0.8])
    p = np.column_stack([1 - scores, scores])
    # 3 of 4 abnormal at or above 0.6; all 4 only at or above 0.3
    assert threshold_for_sensitivity(p, y, classes, ["Normal"], [], 0.75) == pytest.approx(0.6)
    threshold = threshold_for_sensitivity(p, y, classes, ["Normal"], [], 0.9)
    assert threshold == pytest.approx(0.3)
    m = evaluate(p, y, classes, ["Normal"], [], threshold)
    assert m["normal_vs_abnormal"]["sensitivity"] == 1.0 and m["normal_vs_abnormal"]["specificity"] == pytest.approx(
        2 / 3
    )


def test_sensitivity_at_fixed_specificity():
    score = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.65, 0.85])
    truth = np.array([False] * 10 + [True, True])
    sensitivity, threshold = sensitivity_at_specificity(score, truth, 0.9)
    assert np.mean(score[~truth] < threshold) >= 0.9 and sensitivity == 0.0  # 0.65 and 0.85 are below 0.95
    sensitivity, threshold = sensitivity_at_specificity(score, truth, 0.7)
    assert np.mean(score[~truth] < threshold) >= 0.7 and sensitivity == 0.5  # 0.85 clears 0.8


def test_bootstrap_intervals_contain_the_point_value_and_narrow_with_more_data():
    rng = np.random.default_rng(0)
    classes = ["N", "A", "O", "~"]

    def sample(n):
        y = rng.integers(0, 4, n)
        p = rng.dirichlet(np.ones(4), n) * 0.8
        p[np.arange(n), y] += 0.2
        return p, y

    small = with_intervals(*sample(100), classes, ["N"], ["~"], 0.5, samples=200)
    large = with_intervals(*sample(2000), classes, ["N"], ["~"], 0.5, samples=200)
    for name in ("mean_f1_readable", "auc_abnormal", "A.f1", "sensitivity", "sensitivity_at_specificity_0.90"):
        low, high = small[name]["ci"]
        assert low <= small[name]["value"] <= high, name
        assert large[name]["ci"][1] - large[name]["ci"][0] < high - low, name


def test_single_class_truth_gives_no_auc_and_a_neutral_threshold():
    p = np.array([[0.9, 0.1], [0.8, 0.2]])
    y = np.array([0, 0])
    assert threshold_for_sensitivity(p, y, ["Normal", "Abnormal"], ["Normal"], [], 0.9) == 0.5
    m = evaluate(p, y, ["Normal", "Abnormal"], ["Normal"], [], 0.5)
    assert m["normal_vs_abnormal"]["auc"] is None and m["normal_vs_abnormal"]["sensitivity"] is None
    assert m["normal_vs_abnormal"]["specificity"] == 1.0
