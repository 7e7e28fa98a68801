"""Trust, over a real database: auto-accept at a target precision, audit it, review the least sure first."""

from __future__ import annotations

import random

import fiftyone as fo
import fiftyone.utils.iou as foui
import pytest
from fiftyone import ViewField as F

import gemini_annotate
from gemini_annotate import review
from gemini_annotate.cli import main
from gemini_annotate.cli_commands import EXIT_ERROR, EXIT_OK
from gemini_annotate.emulator import OracleNoise
from gemini_annotate.precision import BELOW, CONFIRMED, CONSISTENT, UNDER, precision_interval
from gemini_annotate.review_rules import is_kept_on_replace
from gemini_annotate.vocabulary import (
    ACCEPTED,
    ADDED,
    AUTO_ACCEPTED,
    EDITED,
    REJECTED,
    REVIEW_STATUSES,
    UNREVIEWED,
)
from test_operators import _form, operator

LABELS_PER_SAMPLE = 10


def _detection(i: int, label: str, confidence, status: str) -> fo.Detection:
    made_by_gemini = {} if status == ADDED else {"gemini_run": "gemini", "gemini_model": "emulated"}
    return fo.Detection(label=label, bounding_box=[0.02 * (i % 40), 0.1, 0.05, 0.05], confidence=confidence,
                        review=status, **made_by_gemini)


def _dataset(make_dataset, reviewed=(), pending=()) -> fo.Dataset:
    """Samples of ``(class, confidence, status)`` rows, ten labels each: the ``reviewed`` rows on
    samples marked reviewed, the ``pending`` ones on samples that are not."""
    dataset = make_dataset()
    samples = []
    for rows, flag in ((list(reviewed), True), (list(pending), False)):
        for start in range(0, len(rows), LABELS_PER_SAMPLE):
            chunk = rows[start:start + LABELS_PER_SAMPLE]
            detections = [_detection(start + i, *row) for i, row in enumerate(chunk)]
            samples.append(fo.Sample(filepath=f"/images/{len(samples):04d}.jpg",
                                     gemini=fo.Detections(detections=detections), gemini_reviewed=flag))
    dataset.add_samples(samples)
    return dataset


def _kept(n: int, label: str = "cat", top: float = 0.999) -> list[tuple]:
    """``n`` labels people accepted, with confidences from ``top`` down by 0.001."""
    return [(label, round(top - i * 0.001, 3), ACCEPTED) for i in range(n)]


TRUSTED_REVIEWS = _kept(100) + [("cat", 0.5, REJECTED)] * 20
"""100 cats kept at 0.999–0.900, 20 rejected at 0.5: cats at or above 0.900 show 95 %."""


def _statuses(dataset, field="gemini") -> dict[tuple[str, object], str]:
    return {(d.label, d.confidence): d.review for value in dataset.values(field) for d in value.detections}


def test_auto_accept_never_changes_what_a_person_decided(make_dataset):
    pending = [("cat", 0.95, status) for status in (UNREVIEWED, ACCEPTED, REJECTED, EDITED, ADDED)]
    pending = [(f"{label}-{status}", c, status) for label, c, status in pending]
    dataset = _dataset(make_dataset, TRUSTED_REVIEWS, pending)
    before = _statuses(dataset)

    report = review.auto_accept(dataset, "gemini", per_class=False)
    again = review.auto_accept(dataset, "gemini", per_class=False)

    after = _statuses(dataset)
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {("cat-unreviewed", 0.95)} and after[("cat-unreviewed", 0.95)] == AUTO_ACCEPTED
    assert report.auto_accepted == 1 and again.auto_accepted == 0
    remembered = dataset.filter_labels("gemini", F(review.AUTO_ACCEPT_TARGET_ATTRIBUTE) == 0.95)
    assert remembered.values("gemini.detections.label", unwind=True) == ["cat-unreviewed"]


def test_labels_below_the_threshold_or_without_a_confidence_stay_unreviewed(make_dataset):
    dataset = _dataset(make_dataset, TRUSTED_REVIEWS, [("cat", 0.95, UNREVIEWED), ("cat", 0.899, UNREVIEWED),
                                                       ("cat", None, UNREVIEWED)])

    report = review.auto_accept(dataset, "gemini")

    assert report.thresholds == {"cat": 0.9}
    after = _statuses(dataset)
    assert after[("cat", 0.95)] == AUTO_ACCEPTED
    assert after[("cat", 0.899)] == after[("cat", None)] == UNREVIEWED
    assert report.labels == 123 and report.share == pytest.approx(1 / 123)
    assert report.supporting == 100 and report.precision == 1.0 and report.lower_bound >= 0.95


@pytest.mark.parametrize("reviewed, message", [
    pytest.param([], "at least 59 more reviewed label(s) are needed", id="nothing reviewed"),
    pytest.param(_kept(40), "at least 19 more reviewed label(s) with a confidence ≥ 0.960", id="40 of 40 kept"),
    pytest.param(_kept(90) + [("cat", 0.95, REJECTED)] * 2,
                 "at least 10 more reviewed label(s) with a confidence ≥ 0.951", id="two rejected among the surest"),
    pytest.param([("cat", None, ACCEPTED)] * 80, "annotate with confidence=True", id="no confidences"),
])
def test_too_few_reviews_are_refused_with_how_many_more_are_needed(make_dataset, reviewed, message):
    dataset = _dataset(make_dataset, reviewed, [("cat", 0.99, UNREVIEWED)])

    with pytest.raises(review.ReviewError, match="cannot|confidence") as refused:
        review.auto_accept(dataset, "gemini")

    assert message in str(refused.value)
    assert _statuses(dataset)[("cat", 0.99)] == UNREVIEWED


def test_the_same_reviews_choose_the_same_thresholds(make_dataset):
    shuffled = random.Random(3).sample(TRUSTED_REVIEWS, len(TRUSTED_REVIEWS))
    first = _dataset(make_dataset, TRUSTED_REVIEWS + _kept(30, "dog"), [("cat", 0.95, UNREVIEWED)])
    second = _dataset(make_dataset, shuffled + _kept(30, "dog"), [("dog", 0.95, UNREVIEWED)])

    preview = review.auto_accept(first, "gemini", dry_run=True)
    done = review.auto_accept(first, "gemini")
    elsewhere = review.auto_accept(second, "gemini")

    assert preview.thresholds == done.thresholds == elsewhere.thresholds == {"cat": 0.9, "dog": 0.9}
    assert preview.plan == done.plan == elsewhere.plan
    assert (preview.auto_accepted, preview.dry_run) == (1, True)


def test_a_class_whose_own_reviews_fall_short_is_never_auto_accepted(make_dataset):
    doubtful = [("bird", round(0.899 - i * 0.001, 3), REJECTED if i % 3 == 2 else ACCEPTED) for i in range(60)]
    reviewed = TRUSTED_REVIEWS + _kept(10, "dog", top=0.95) + doubtful
    pending = [("cat", 0.91, UNREVIEWED), ("dog", 0.91, UNREVIEWED), ("bird", 0.99, UNREVIEWED),
               ("fox", 0.99, UNREVIEWED)]
    dataset = _dataset(make_dataset, reviewed, pending)

    report = review.auto_accept(dataset, "gemini")

    sources = {name: entry.source for name, entry in report.plan.classes.items()}
    assert sources == {"bird": "none", "cat": "class", "dog": "global"}
    assert report.thresholds["bird"] is None and report.thresholds["fox"] == report.global_threshold
    after = _statuses(dataset)
    assert [after[row[:2]] for row in pending] == [AUTO_ACCEPTED, AUTO_ACCEPTED, UNREVIEWED, AUTO_ACCEPTED]
    assert "none: its 60 reviews cannot show the target" in report.describe()


def _edited_dataset(make_dataset, box, label="cat") -> fo.Dataset:
    """One reviewed sample: a proposal a person edited into ``label`` at ``box``."""
    proposal = _detection(0, "cat", 0.9, UNREVIEWED)
    proposal.bounding_box = [0.1, 0.1, 0.4, 0.4]
    edited = proposal.copy()
    edited.id = proposal.id
    edited.set_field("bounding_box", box)
    edited.set_field("label", label)
    edited.set_field("review", EDITED)
    dataset = make_dataset()
    dataset.add_sample(fo.Sample(filepath="/images/edited.jpg", gemini=fo.Detections(detections=[edited]),
                                 gemini_proposed=fo.Detections(detections=[proposal]), gemini_reviewed=True))
    return dataset


@pytest.mark.parametrize("box, label, kept", [
    ([0.12, 0.1, 0.4, 0.4], "cat", True),      # nudged: IoU 0.9
    ([0.3, 0.3, 0.4, 0.4], "cat", False),      # another place: IoU 0.2
    ([0.1, 0.1, 0.4, 0.4], "dog", False),      # another class
])
def test_an_edited_label_was_right_when_it_kept_the_class_and_the_object(make_dataset, box, label, kept):
    dataset = _edited_dataset(make_dataset, box, label)
    assert [o.correct for o in review.reviewed_outcomes(dataset, "gemini")] == [kept]


def test_promote_leaves_auto_accepted_labels_out_unless_asked(make_dataset):
    dataset = _dataset(make_dataset, pending=[("cat", 0.9, ACCEPTED), ("cat", 0.95, AUTO_ACCEPTED),
                                              ("cat", 0.2, UNREVIEWED)])

    assert review.promote(dataset, "gemini", "truth") == 1
    assert review.promote(dataset, "gemini", "truth", include_auto_accepted=True) == 2
    assert sorted(dataset.values("truth.detections.confidence", unwind=True)) == [0.9, 0.95]


@pytest.mark.parametrize("status", REVIEW_STATUSES)
def test_a_rerun_replacing_unreviewed_labels_keeps_every_other_status(status):
    label = _detection(0, "cat", 0.9, status)
    assert is_kept_on_replace(label) is (status != UNREVIEWED)


def test_a_replace_unreviewed_rerun_keeps_auto_accepted_labels(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset, label_field="gemini", confidence=True)
    first = coco_dataset.first().gemini.detections
    trusted = [d.id for d in first[:2]]
    review.set_review_status(coco_dataset, "gemini", AUTO_ACCEPTED, trusted)
    labels = coco_dataset.count("gemini.detections")

    gemini_annotate.annotate(coco_dataset, label_field="gemini", confidence=True, if_labeled="replace_unreviewed")

    now = {d.id: d.review for d in coco_dataset.first().gemini.detections}
    assert [now.get(i) for i in trusted] == [AUTO_ACCEPTED, AUTO_ACCEPTED]
    assert not {d.id for d in first[2:]} & set(now)  # the unreviewed ones were replaced
    assert coco_dataset.count("gemini.detections") == labels  # not boxed twice


@pytest.fixture
def auto_accepted(make_dataset):
    """30 cats and 10 dogs auto-accepted (confidences 0.900–0.999, all distinct), 4 left unreviewed."""
    pending = ([("cat", round(0.9 + i * 0.0033, 4), UNREVIEWED) for i in range(30)]
               + [("dog", round(0.901 + i * 0.0097, 4), UNREVIEWED) for i in range(10)]
               + [("cat", 0.3, UNREVIEWED)] * 4)
    dataset = _dataset(make_dataset, TRUSTED_REVIEWS, pending)
    assert review.auto_accept(dataset, "gemini").auto_accepted == 40
    return dataset


def _tagged(dataset, tag="audit") -> set[str]:
    return set(dataset.select_labels(tags=tag).values("gemini.detections.id", unwind=True))


def test_an_audit_draws_a_stratified_sample_the_same_for_the_same_seed(auto_accepted):
    twin = auto_accepted.clone()
    try:
        draw = review.audit(auto_accepted, "gemini", 8, seed=3)
        same = review.audit(twin, "gemini", 8, seed=3)
        assert _tagged(auto_accepted) == _tagged(twin)
    finally:
        twin.delete()

    assert (draw.drawn, draw.candidates, draw.per_class) == (8, 40, {"cat": 6, "dog": 2})
    assert same.per_class == draw.per_class
    assert draw.view.count("gemini.detections") == 8
    assert set(draw.view.distinct("gemini.detections.review")) == {AUTO_ACCEPTED}
    confidences = sorted(draw.view.values("gemini.detections.confidence", unwind=True))
    assert confidences[0] < 0.935 and confidences[-1] > 0.965  # low and high bands both drawn

    more = review.audit(auto_accepted, "gemini", 8, seed=3)
    assert more.candidates == 32 and len(_tagged(auto_accepted)) == 16  # new labels, the tags add up


def test_the_audit_report_measures_auto_accepted_precision_per_class_and_flags_a_short_class(auto_accepted):
    with pytest.raises(review.ReviewError, match="draw an audit first"):
        review.audit_report(auto_accepted, "gemini")
    draw = review.audit(auto_accepted, "gemini", 8, seed=3)
    cats = draw.view.filter_labels("gemini", F("label") == "cat").values("gemini.detections.id", unwind=True)
    dogs = draw.view.filter_labels("gemini", F("label") == "dog").values("gemini.detections.id", unwind=True)
    review.set_review_status(auto_accepted, "gemini", ACCEPTED, cats)
    review.set_review_status(auto_accepted, "gemini", REJECTED, dogs[:1])

    report = review.audit_report(auto_accepted, "gemini")

    cat, dog = report.per_class["cat"], report.per_class["dog"]
    assert (cat.audited, cat.correct, cat.pending, cat.verdict) == (6, 6, 0, CONSISTENT)
    assert cat.interval == pytest.approx(precision_interval(6, 6, 0.95))
    assert (dog.audited, dog.correct, dog.pending, dog.verdict) == (1, 0, 1, UNDER)
    assert (report.overall.audited, report.overall.correct) == (7, 6)
    assert report.target_precision == 0.95 and report.flagged == ["dog"]
    assert "flagged: dog" in report.describe()
    modest = review.audit_report(auto_accepted, "gemini", target_precision=0.5)
    assert (modest.per_class["cat"].verdict, modest.per_class["dog"].verdict) == (CONFIRMED, UNDER)

    review.set_review_status(auto_accepted, "gemini", REJECTED, dogs)
    assert review.audit_report(auto_accepted, "gemini", target_precision=0.99).per_class["dog"].verdict == BELOW


def test_the_review_queue_puts_the_most_expected_mistakes_first(make_dataset):
    dataset = make_dataset()
    rows = {
        "settled": [("cat", 0.5, AUTO_ACCEPTED), ("cat", 0.1, ACCEPTED)],       # 0: nothing left to decide
        "sure": [("cat", 0.9, UNREVIEWED)] * 3,                                 # 0.3
        "unsure": [("cat", 0.2, UNREVIEWED), ("cat", 0.4, UNREVIEWED)],         # 1.4
        "unknown": [("cat", None, UNREVIEWED)],                                 # 0.5: a coin toss
        "reviewed": [("cat", 0.1, REJECTED)],                                   # left out
    }
    dataset.add_samples([
        fo.Sample(filepath=f"/images/{name}.jpg", gemini_reviewed=name == "reviewed",
                  gemini=fo.Detections(detections=[_detection(i, *row) for i, row in enumerate(labels)]))
        for name, labels in rows.items()
    ] + [fo.Sample(filepath="/images/empty.jpg")])

    queue = review.review_queue(dataset, "gemini")

    names = [path.split("/")[-1][:-4] for path in queue.values("filepath")]
    assert names == ["unsure", "unknown", "sure", "settled", "empty"]
    assert queue.values(review.expected_mistakes(queue, "gemini")) == pytest.approx([1.4, 0.5, 0.3, 0, 0])


def test_reviewing_some_samples_then_auto_accepting_the_rest_accepts_only_true_objects(
        coco_dataset, emulator, oracle_for, review_as_a_person):
    emulator(oracle_for(coco_dataset, noise=OracleNoise(false_positive_rate=0.5, seed=3)))
    gemini_annotate.annotate(coco_dataset, label_field="gemini", confidence=True)
    busiest = coco_dataset.sort_by(F("ground_truth.detections").length(), reverse=True).limit(2)
    review_as_a_person(busiest, "gemini")

    report = review.auto_accept(coco_dataset, "gemini", target_precision=0.9)

    rest = coco_dataset.match(F("gemini_reviewed") != True)  # noqa: E712
    accepted = rest.filter_labels("gemini", F("review") == AUTO_ACCEPTED)
    assert report.auto_accepted == accepted.count("gemini.detections") > 0
    for sample in accepted.select_fields(["gemini", "ground_truth"]):
        truth = sample.ground_truth.detections
        ious = foui.compute_ious(sample.gemini.detections, truth, classwise=True)
        assert all(row.max() >= 0.5 for row in ious)  # every auto-accepted label is a true object
    assert set(rest.filter_labels("gemini", F("review") == UNREVIEWED).distinct("gemini.detections.confidence")) \
        <= {OracleNoise().false_positive_confidence}  # the hallucinations wait for a person


def test_the_trust_commands_auto_accept_audit_report_and_queue(auto_accepted, make_dataset, capsys):
    name = auto_accepted.name
    sparse = _dataset(make_dataset, _kept(40), [("cat", 0.99, UNREVIEWED)])

    assert main(["auto-accept", sparse.name, "--label-field", "gemini"]) == EXIT_ERROR
    assert "at least 19 more reviewed label(s)" in capsys.readouterr().err
    assert main(["auto-accept", name, "--target-precision", "0.9", "--confidence-level", "0.9", "--dry-run"]) == EXIT_OK
    assert "would auto-accept 0 of 164 label(s)" in capsys.readouterr().out
    assert main(["audit", name, "-n", "5", "--seed", "1"]) == EXIT_OK
    assert "5 of 40 auto-accepted label(s) drawn for audit" in capsys.readouterr().out
    assert main(["audit-report", name]) == EXIT_OK
    assert "not audited yet" in capsys.readouterr().out  # nobody checked them yet
    assert main(["review-queue", name, "-n", "2"]) == EXIT_OK
    shown = capsys.readouterr().out.splitlines()
    assert "2.80 expected mistake(s)" in shown[0] and "0.00 expected mistake(s)" in shown[1]
    assert main(["review-queue", name, "--tag", "next"]) == EXIT_OK
    assert len(auto_accepted.match_tags("next")) == 5


def test_the_trust_operators_auto_accept_audit_and_queue(coco_dataset, emulator, oracle_for, review_as_a_person,
                                                         make_dataset, installed_plugin):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset, label_field="gemini", confidence=True)
    review_as_a_person(coco_dataset.sort_by(F("ground_truth.detections").length(), reverse=True).limit(2))
    rest = coco_dataset.match(F("gemini_reviewed") != True)  # noqa: E712
    params = {"label_field": "gemini", "target_precision": 0.9}
    preview = _form(coco_dataset, "auto_accept_gemini_labels", params)["preview"]["view"]
    labels = rest.count("gemini.detections")
    assert preview["label"] == f"{labels} of {coco_dataset.count('gemini.detections')} label(s) would be auto-accepted"

    result = operator("auto_accept_gemini_labels")(coco_dataset, "gemini", target_precision=0.9)
    drawn = operator("audit_auto_accepted_labels")(coco_dataset, "gemini", count=3, seed=0)
    review.set_review_status(coco_dataset.select_labels(tags="audit"), "gemini", ACCEPTED)
    audited = operator("audit_auto_accepted_labels")(coco_dataset, "gemini", action="report")
    queue = operator("show_review_queue")(coco_dataset, "gemini")

    assert result["auto_accepted"] == labels and result["global_threshold"] == 0.9
    assert sum(drawn["per_class"].values()) == 3
    assert (audited["overall"]["audited"], audited["overall"]["correct"]) == (3, 3)
    assert queue["samples"] == len(rest) and set(queue["first_ids"]) == set(rest.values("id"))
    refused = _form(coco_dataset, "auto_accept_gemini_labels", {"target_precision": 0.999})
    assert "cannot" in refused["refused"]["view"]["description"]


def test_marking_a_sample_reviewed_accepts_its_auto_accepted_labels_too(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset.limit(1), task="detect", label_field="gemini", confidence=True)
    sample = coco_dataset.first()
    ids = [d.id for d in sample.gemini.detections]
    review.set_review_status(coco_dataset.limit(1), "gemini", review.AUTO_ACCEPTED, ids[:2])

    accepted = review.mark_reviewed(coco_dataset.limit(1), "gemini")

    assert accepted == len(ids)
    assert set(coco_dataset.limit(1).values("gemini.detections.review", unwind=True)) == {review.ACCEPTED}


def test_auto_accept_reads_thresholds_and_labels_on_one_scale_after_a_calibration(coco_dataset, emulator,
                                                                                  oracle_for, review_as_a_person):
    emulator(oracle_for(coco_dataset, noise=OracleNoise(false_positive_rate=0.5, seed=5)))
    gemini_annotate.annotate(coco_dataset, task="detect", label_field="gemini", confidence=True)
    reviewed = coco_dataset.limit(4)
    review_as_a_person(reviewed, "gemini")
    plain = review.auto_accept(coco_dataset, "gemini", 0.9, 0.9, per_class=False, dry_run=True)

    review.apply_calibration(coco_dataset, "gemini", review.calibrate(reviewed, "gemini"))
    calibrated = review.auto_accept(coco_dataset, "gemini", 0.9, 0.9, per_class=False, dry_run=True)

    # the same labels qualify: a calibration changes the numbers, not which labels the reviews vouch for
    assert calibrated.auto_accepted == plain.auto_accepted and calibrated.thresholds == plain.thresholds
