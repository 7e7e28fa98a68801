"""The statistics of trust: Clopper–Pearson bounds, thresholds that meet a target, reviews still needed."""

from __future__ import annotations

import random

import pytest

from gemini_annotate.precision import (
    BELOW,
    CONFIRMED,
    CONSISTENT,
    NONE,
    NOT_AUDITED,
    OVERALL,
    OWN,
    UNDER,
    Outcome,
    audit_verdict,
    choose_thresholds,
    fewest_reviews,
    lowest_threshold,
    precision_interval,
    precision_lower_bound,
    reviews_needed,
    shortfall,
)


# Exact Clopper–Pearson values: n of n kept bound at alpha ** (1 / n); the others are the
# textbook intervals (e.g. 5/10: 0.1871–0.8129, 0/10: 0–0.3085).
@pytest.mark.parametrize("correct, total, level, expected", [
    (59, 59, 0.95, 0.05 ** (1 / 59)),     # 0.9505: the fewest that show 95 %
    (58, 58, 0.95, 0.05 ** (1 / 58)),     # 0.9497: one short
    (10, 10, 0.90, 0.10 ** (1 / 10)),     # 0.7943
    (9, 10, 0.95, 0.6058),
    (95, 100, 0.95, 0.8977),
    (0, 10, 0.95, 0.0),
    (0, 0, 0.95, 0.0),
])
def test_one_sided_lower_bound_matches_clopper_pearson(correct, total, level, expected):
    assert precision_lower_bound(correct, total, level) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("correct, total, expected", [
    (5, 10, (0.1871, 0.8129)),
    (8, 10, (0.4439, 0.9748)),
    (0, 10, (0.0, 0.3085)),
    (10, 10, (0.6915, 1.0)),
    (0, 0, (0.0, 1.0)),
])
def test_two_sided_interval_matches_clopper_pearson(correct, total, expected):
    assert precision_interval(correct, total, 0.95) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("target, level, expected", [
    (0.95, 0.95, 59), (0.90, 0.95, 29), (0.99, 0.95, 299), (0.95, 0.99, 90), (0.80, 0.80, 8),
])
def test_fewest_reviews_is_the_smallest_all_kept_count_that_shows_the_target(target, level, expected):
    assert fewest_reviews(target, level) == expected
    assert precision_lower_bound(expected, expected, level) >= target > precision_lower_bound(
        expected - 1, expected - 1, level)


@pytest.mark.parametrize("precision, expected", [(1.0, 59), (0.99, 90), (0.95, None), (0.90, None)])
def test_reviews_needed_at_a_precision(precision, expected):
    needed = reviews_needed(precision, 0.95, 0.95)
    assert needed == expected
    if needed is not None:  # the smallest: one fewer does not show it
        assert precision_lower_bound(precision * needed, needed, 0.95) >= 0.95
        assert precision_lower_bound(precision * (needed - 1), needed - 1, 0.95) < 0.95


@pytest.mark.parametrize("target, level", [(1.0, 0.95), (0.0, 0.95), (0.95, 1.0), (1.2, 0.5)])
def test_a_target_or_level_outside_zero_one_is_refused(target, level):
    with pytest.raises(ValueError, match="between 0 and 1"):
        fewest_reviews(target, level)


def _ranked(kept: list[bool], label: str = "cat", top: float = 1.0) -> list[Outcome]:
    """Outcomes with distinct confidences, the first the surest (``top``, ``top`` - 0.001, ...)."""
    return [Outcome(label, round(top - i / 1000, 3), k) for i, k in enumerate(kept)]


@pytest.mark.parametrize("outcomes, expected", [
    pytest.param(_ranked([True] * 58), None, id="58 kept: too few to show 95 %"),
    pytest.param(_ranked([True] * 59), (0.942, 59, 59), id="59 kept"),
    pytest.param(_ranked([True] * 70 + [False] * 30), (0.931, 70, 70), id="stops above the wrong ones"),
    pytest.param(_ranked([False] + [True] * 150), (0.85, 151, 150), id="a wrong one at the top is outweighed"),
    pytest.param([Outcome("cat", 0.8, True)] * 60 + [Outcome("cat", 0.8, False)], None,
                 id="equal confidences are taken together"),
    pytest.param(_ranked([True] * 59) + [Outcome("cat", None, False)] * 10, (0.942, 59, 59),
                 id="labels without a confidence are left out"),
])
def test_lowest_threshold_whose_bound_meets_the_target(outcomes, expected):
    found = lowest_threshold(outcomes, 0.95, 0.95, min_reviews=fewest_reviews(0.95, 0.95))
    got = None if found is None else (found.threshold, found.reviewed, found.correct)
    assert got == expected
    if found is not None:
        assert found.lower_bound >= 0.95


def _three_classes() -> list[Outcome]:
    trusted = _ranked([True] * 100, "cat")                         # its own threshold
    few = _ranked([True, False] * 10, "dog", top=0.85)              # 20 reviews: the threshold of all
    doubtful = _ranked([True, True, False] * 25, "bird", top=0.80)  # 75 reviews, a third wrong: none
    return trusted + few + doubtful


def test_a_class_with_enough_reviews_gets_its_own_threshold_and_the_others_the_overall_one():
    plan = choose_thresholds(_three_classes(), 0.95, 0.95)

    assert {name: entry.source for name, entry in plan.classes.items()} == {"bird": NONE, "cat": OWN,
                                                                           "dog": OVERALL}
    assert plan.threshold_for("cat") == 0.901  # all 100 of its reviews
    assert plan.threshold_for("bird") is None
    assert plan.threshold_for("dog") == plan.threshold_for("never reviewed") == plan.overall.threshold
    correct, reviewed = plan.passing(_three_classes())
    assert precision_lower_bound(correct, reviewed, 0.95) >= 0.95


def test_without_per_class_every_class_shares_one_threshold():
    plan = choose_thresholds(_three_classes(), 0.95, 0.95, per_class=False)
    assert plan.classes == {} and plan.threshold_for("bird") == plan.threshold_for("cat") == plan.overall.threshold


def test_the_same_reviews_in_any_order_choose_the_same_thresholds():
    outcomes = _three_classes()
    shuffled = random.Random(7).sample(outcomes, len(outcomes))
    assert choose_thresholds(shuffled, 0.95, 0.95) == choose_thresholds(outcomes, 0.95, 0.95)


@pytest.mark.parametrize("outcomes, more_if_all_kept, more_at_observed", [
    pytest.param([], 59, None, id="nothing reviewed: the fewest that can show it"),
    pytest.param(_ranked([True] * 40), 19, 19, id="40 of 40: 19 more"),
    pytest.param(_ranked([True] * 17 + [False] * 3), 42, 42, id="the 17 surest were all kept"),
    pytest.param([Outcome("cat", 0.5, k) for k in [True] * 17 + [False] * 3], 133, None,
                 id="no threshold above the target: no number at that precision"),
])
def test_shortfall_says_how_many_more_reviews_the_target_needs(outcomes, more_if_all_kept, more_at_observed):
    gap = shortfall(outcomes, 0.95, 0.95, min_reviews=fewest_reviews(0.95, 0.95))
    assert (gap.more_if_all_correct, gap.more_at_observed) == (more_if_all_kept, more_at_observed)
    assert f"at least {more_if_all_kept} more reviewed label(s)" in gap.describe()


@pytest.mark.parametrize("correct, audited, verdict", [
    (100, 100, CONFIRMED),    # interval 0.964–1
    (10, 10, CONSISTENT),     # 1.0 measured, interval from 0.69
    (9, 10, UNDER),           # 0.9 measured, interval up to 0.997
    (5, 10, BELOW),           # interval up to 0.81
    (0, 0, NOT_AUDITED),
])
def test_an_audit_verdict_reads_the_interval_against_the_target(correct, audited, verdict):
    assert audit_verdict(correct, audited, 0.95, 0.95) == verdict
