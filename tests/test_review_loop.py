"""The keyboard review loop over a real database: least sure first, one label per key."""

from __future__ import annotations

import pytest

import gemini_annotate
from gemini_annotate import review, review_loop
from gemini_annotate.emulator import NOISE_PROFILES

CLASSES = ["dining table", "bowl", "sink", "refrigerator", "wine glass"]


@pytest.fixture
def pre_annotated(coco_dataset, emulator, oracle_for):
    """The COCO samples pre-annotated with confidences by a noisy oracle."""
    emulator(oracle_for(coco_dataset, noise=NOISE_PROFILES["flash"]))
    gemini_annotate.annotate(coco_dataset, classes=CLASSES, label_field="gemini", confidence=True, concurrency=2)
    return coco_dataset


def _statuses(dataset):
    return {d.id: d.review for v in dataset.values("gemini") for d in v.detections}


def test_loop_starts_at_the_least_sure_sample_and_its_least_sure_label(pre_annotated):
    position = review_loop.start(pre_annotated, "gemini")

    assert position.sample_id == review.review_queue(pre_annotated, "gemini").first().id
    waiting = review_loop.waiting_labels(pre_annotated, "gemini", position.sample_id)
    confidences = [d.confidence for d in waiting]
    assert confidences == sorted(confidences) and position.label_id == waiting[0].id


def test_each_key_decides_the_label_shown_and_the_sample_is_reviewed_after_its_last(pre_annotated):
    position = review_loop.start(pre_annotated, "gemini")
    first_sample = position.sample_id
    pressed = {}
    while position.sample_id == first_sample and position.label_id is not None:
        key = "a" if len(pressed) % 2 == 0 else "r"
        pressed[position.label_id] = {"a": "accepted", "r": "rejected"}[key]
        position = review_loop.press(pre_annotated, "gemini", position, key).position

    statuses = _statuses(pre_annotated)
    assert {i: statuses[i] for i in pressed} == pressed
    assert pre_annotated[first_sample].gemini_reviewed is True
    assert position.sample_id != first_sample
    untouched = set(statuses) - set(pressed)
    assert {statuses[i] for i in untouched} == {"unreviewed"}


@pytest.mark.parametrize("key, expected", [
    ("n", None),                # left for later: nothing decided, not reviewed
    ("A", "accepted"),          # the rest of the sample accepted
])
def test_next_leaves_the_sample_and_accept_rest_settles_it(pre_annotated, key, expected):
    position = review_loop.start(pre_annotated, "gemini")
    sample_id = position.sample_id

    step = review_loop.press(pre_annotated, "gemini", position, key)

    labels = pre_annotated[sample_id].gemini.detections
    assert step.position.sample_id != sample_id
    if expected is None:
        assert {d.review for d in labels} == {"unreviewed"} and step.position.skipped == (sample_id,)
        assert not pre_annotated[sample_id].has_field("gemini_reviewed") or \
            pre_annotated[sample_id].gemini_reviewed is not True
    else:
        assert {d.review for d in labels} == {expected} and pre_annotated[sample_id].gemini_reviewed


def test_accepting_an_edited_label_records_it_as_edited(pre_annotated):
    position = review_loop.start(pre_annotated, "gemini")
    step = review_loop.press(pre_annotated, "gemini", position, "e")
    assert step.edit == (position.sample_id, position.label_id) and step.position == position
    sample = pre_annotated[position.sample_id]
    label = next(d for d in sample.gemini.detections if d.id == position.label_id)
    label.bounding_box = [0.1, 0.1, 0.3, 0.3]  # what the App's annotation mode would save
    sample.save()

    review_loop.press(pre_annotated, "gemini", position, "a")

    assert _statuses(pre_annotated)[position.label_id] == "edited"
    proposed = {d.id: d for d in pre_annotated[position.sample_id].gemini_proposed.detections}
    assert proposed[position.label_id].bounding_box != [0.1, 0.1, 0.3, 0.3]


def test_keys_typed_together_apply_in_order_and_unknown_characters_are_ignored(pre_annotated):
    position = review_loop.start(pre_annotated, "gemini")
    last, steps = review_loop.press_keys(pre_annotated, "gemini", position, "a r?")

    assert len(steps) == 2
    decided = [s for s in _statuses(pre_annotated).values() if s != "unreviewed"]
    assert sorted(decided) == ["accepted", "rejected"]
    assert last.position == steps[-1].position


def test_progress_counts_statuses_classes_and_precision(pre_annotated):
    position = review_loop.start(pre_annotated, "gemini")
    for key in "aar":
        position = review_loop.press(pre_annotated, "gemini", position, key).position

    progress = review_loop.review_progress(pre_annotated, "gemini")

    total = pre_annotated.count("gemini.detections")
    assert progress.statuses["accepted"] == 2 and progress.statuses["rejected"] == 1
    assert sum(sum(row.values()) for row in progress.by_class.values()) == total
    assert sum(row.get("accepted", 0) for row in progress.by_class.values()) == 2
    assert progress.precision == pytest.approx(2 / 3)
    low, high = progress.interval
    assert low < 2 / 3 < high
    assert progress.samples == len(pre_annotated)


def test_unknown_key_is_refused(pre_annotated):
    with pytest.raises(ValueError, match="unknown review key"):
        review_loop.press(pre_annotated, "gemini", review_loop.start(pre_annotated, "gemini"), "x")


def test_panel_markdown_shows_progress_precision_statuses_and_classes():
    from gemini_annotate.review_panel import progress_markdown

    progress = review_loop.ReviewProgress(
        samples=30, reviewed_samples=12, statuses={"unreviewed": 5, "accepted": 8, "rejected": 2},
        by_class={"bowl": {"accepted": 3}, "sink": {"rejected": 2, "unreviewed": 5}},
        precision=0.8, interval=(0.44, 0.97))

    text = progress_markdown(progress)

    assert "**12 of 30 samples reviewed**" in text
    assert "**80.0 %** of 10 decided (95 % interval 44.0 %–97.0 %)" in text
    assert "**8** accepted" in text and "**2** rejected" in text
    assert "| bowl | 0 | 3 | 0 |" in text and "| sink | 5 | 0 | 2 |" in text
