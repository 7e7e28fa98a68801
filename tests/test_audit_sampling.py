"""Which auto-accepted labels an audit draws: proportional strata, the same draw for the same seed."""

from __future__ import annotations

from collections import Counter

import pytest

from gemini_annotate.audit_sampling import AuditCandidate, allocate, confidence_band, stratified_draw


@pytest.mark.parametrize("sizes, n, expected", [
    ({"a": 90, "b": 10}, 10, {"a": 9, "b": 1}),
    ({"a": 10, "b": 10}, 5, {"a": 3, "b": 2}),            # equal remainders: the first key
    ({"a": 12, "b": 10}, 5, {"a": 3, "b": 2}),            # 2.73 and 2.27
    ({"a": 5, "b": 20}, 3, {"a": 1, "b": 2}),             # 0.6 and 2.4: the larger remainder wins
    ({"a": 1, "b": 1, "c": 1}, 2, {"a": 1, "b": 1, "c": 0}),
    ({"a": 3, "b": 4}, 10, {"a": 3, "b": 4}),             # more asked than there are: all
    ({"a": 3}, 0, {"a": 0}),
])
def test_draws_are_split_in_proportion_to_strata(sizes, n, expected):
    assert allocate(sizes, n) == expected


@pytest.mark.parametrize("confidence, band", [
    (0.70, 0), (0.79, 0), (0.80, 1), (0.89, 1), (0.90, 2), (1.0, 2), (None, 0),
])
def test_confidence_bands_are_equal_slices_of_the_range(confidence, band):
    assert confidence_band(confidence, 0.7, 1.0, bands=3) == band


def _candidates() -> list[AuditCandidate]:
    """60 cats and 20 dogs with confidences spread over 0.70–0.99."""
    return [AuditCandidate(f"id{i:03d}", "cat" if i % 4 else "dog", round(0.7 + (i % 30) / 100, 2))
            for i in range(80)]


def test_the_same_candidates_and_seed_draw_the_same_labels_in_any_order():
    candidates = _candidates()

    first = stratified_draw(candidates, 12, seed=5)
    again = stratified_draw(list(reversed(candidates)), 12, seed=5)
    other = stratified_draw(candidates, 12, seed=6)

    assert first == again and len(set(first)) == 12
    assert set(other) != set(first)


def test_the_draw_follows_the_classes_and_confidence_bands_in_proportion():
    candidates = _candidates()
    by_id = {c.label_id: c for c in candidates}

    drawn = [by_id[i] for i in stratified_draw(candidates, 20, seed=1)]

    assert Counter(c.label for c in drawn) == {"cat": 15, "dog": 5}
    bands = Counter((c.label, confidence_band(c.confidence, 0.7, 0.99)) for c in drawn)
    assert min(bands.values()) >= 1 and len(bands) == 6  # every class × band stratum is checked


def test_asking_for_more_than_there_are_draws_them_all():
    candidates = _candidates()[:7]
    assert sorted(stratified_draw(candidates, 50)) == sorted(c.label_id for c in candidates)
