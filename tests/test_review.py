"""Review workflow over a real database: statuses, promotion, evaluation, runs."""

from __future__ import annotations

import fiftyone as fo
import pytest

import gemini_annotate
from gemini_annotate import review, runs
from gemini_annotate.emulator import OracleNoise


@pytest.fixture
def pre_annotated(coco_dataset, emulator, oracle_for):
    """The COCO samples pre-annotated by a noisy oracle (misses, false positives)."""
    noise = OracleNoise(miss_rate=0.25, false_positive_rate=0.3, seed=3)
    emulator(oracle_for(coco_dataset, noise=noise))
    gemini_annotate.annotate(coco_dataset, label_field="gemini", concurrency=2)
    return coco_dataset


def _statuses(dataset, field="gemini"):
    return [d.review for v in dataset.values(field) for d in v.detections]


def test_accepting_selected_labels_changes_only_those(pre_annotated):
    ids = pre_annotated.values("gemini.detections.id", unwind=True)[:3]

    changed = review.set_review_status(pre_annotated, "gemini", review.ACCEPTED, ids)

    assert changed == 3
    accepted = pre_annotated.filter_labels("gemini", fo.ViewField("review") == "accepted")
    assert set(accepted.values("gemini.detections.id", unwind=True)) == set(ids)
    assert _statuses(pre_annotated).count("unreviewed") == len(_statuses(pre_annotated)) - 3


def test_accepting_keeps_edited_and_rejecting_overrides(pre_annotated):
    sample = pre_annotated.first()
    edited, other = sample.gemini.detections[:2]
    edited.review = review.EDITED
    sample.save()

    review.set_review_status(pre_annotated, "gemini", review.ACCEPTED, [edited.id, other.id])
    assert [d.review for d in pre_annotated.first().gemini.detections[:2]] == ["edited", "accepted"]

    review.set_review_status(pre_annotated, "gemini", review.REJECTED, [edited.id])
    assert pre_annotated.first().gemini.detections[0].review == "rejected"


def test_unknown_status_is_refused(pre_annotated):
    with pytest.raises(review.ReviewError, match="unknown review status"):
        review.set_review_status(pre_annotated, "gemini", "approved")


def test_marking_samples_reviewed_accepts_what_is_left_and_flags_them(pre_annotated):
    view = pre_annotated.limit(2)
    first = view.first().gemini.detections[0]
    review.set_review_status(pre_annotated, "gemini", review.REJECTED, [first.id])

    review.mark_reviewed(view, "gemini")

    counts = review.review_counts(view, "gemini")
    assert counts.reviewed_samples == 2
    assert counts.statuses["unreviewed"] == 0 and counts.statuses["rejected"] == 1
    rest = pre_annotated.skip(2)
    assert review.review_counts(rest, "gemini").statuses["accepted"] == 0
    assert rest.count_values("gemini_reviewed").get(True, 0) == 0


def test_promote_copies_only_reviewed_labels_and_can_be_repeated(pre_annotated, review_as_a_person):
    kept, rejected, added = review_as_a_person(pre_annotated)
    pre_annotated.limit(1).set_values("checked", [fo.Detections(detections=[
        fo.Detection(label="already there", bounding_box=[0.1, 0.1, 0.1, 0.1])])])

    first = review.promote(pre_annotated, "gemini", "checked")
    second = review.promote(pre_annotated, "gemini", "checked")

    assert first == second == kept + added
    labels = pre_annotated.values("checked.detections.label", unwind=True)
    assert len(labels) == kept + added + 1 and "already there" in labels
    assert set(pre_annotated.distinct("checked.detections.review")) <= {"accepted", "added"}
    source_ids = set(pre_annotated.values("checked.detections.gemini_source_id", unwind=True)) - {None}
    assert source_ids <= set(pre_annotated.values("gemini.detections.id", unwind=True))


def test_promote_refuses_a_field_of_another_type(pre_annotated):
    pre_annotated.set_values("caption", [fo.Classification(label="x")] * len(pre_annotated))
    with pytest.raises(review.ReviewError, match="choose another ground-truth field"):
        review.promote(pre_annotated, "gemini", "caption")


def test_evaluation_scores_proposals_against_what_reviewers_kept(pre_annotated, review_as_a_person):
    kept, rejected, added = review_as_a_person(pre_annotated)
    assert rejected > 0 and added > 0  # the noisy oracle left work to do

    report = review.evaluate(pre_annotated, "gemini")

    assert (report.true_positives, report.false_positives, report.false_negatives) == (kept, rejected, added)
    assert report.precision == pytest.approx(kept / (kept + rejected))
    assert report.recall == pytest.approx(kept / (kept + added))
    assert "person" in report.per_class and report.per_class["person"]["support"] > 0
    assert report.samples == len(pre_annotated)
    assert "mAP is not reported" in report.note
    assert pre_annotated.has_evaluation("gemini_eval")
    assert "precision" in report.describe() and "person" in report.describe()


def test_evaluation_compares_with_gemini_version_of_edited_labels(pre_annotated):
    review.keep_proposals(pre_annotated.limit(1), "gemini")  # as before loading corrections
    sample = pre_annotated.first()
    before = {sample.id: pre_annotated.select(sample.id).values("gemini")[0].detections}
    sample.gemini.detections[0].bounding_box = [0.0, 0.0, 0.05, 0.05]  # a person redrew it elsewhere
    sample.save()

    counts = review.apply_corrections(pre_annotated, "gemini", before, [sample.id])
    report = review.evaluate(pre_annotated, "gemini")

    assert counts.edited == 1 and counts.accepted == len(before[sample.id]) - 1
    assert pre_annotated.first().gemini.detections[0].review == "edited"
    # Gemini's box and the corrected one do not overlap: one false positive, one miss
    assert (report.false_positives, report.false_negatives) == (1, 1)


def test_evaluation_needs_reviewed_samples(pre_annotated):
    with pytest.raises(review.ReviewError, match="no sample is marked reviewed"):
        review.evaluate(pre_annotated, "gemini")


def test_later_runs_never_overwrite_reviewed_labels(pre_annotated, emulator, oracle_for, review_as_a_person):
    review_as_a_person(pre_annotated)
    sample = pre_annotated.first()
    sample.gemini.detections[0].bounding_box = [0.3, 0.3, 0.1, 0.1]
    sample.gemini.detections[0].review = review.EDITED
    sample.save()
    reviewed = {d.id: (d.label, d.bounding_box, review.review_status(d))
                for v in pre_annotated.values("gemini") for d in v.detections}

    for if_labeled in ("skip", "replace_unreviewed"):
        emulator(oracle_for(pre_annotated))
        gemini_annotate.annotate(pre_annotated, label_field="gemini", if_labeled=if_labeled)

        after = {d.id: (d.label, d.bounding_box, review.review_status(d))
                 for v in pre_annotated.values("gemini") for d in v.detections}
        assert all(after.get(i) == v for i, v in reviewed.items()), if_labeled


def test_runs_can_be_listed_inspected_and_deleted(pre_annotated):
    review.mark_reviewed(pre_annotated.limit(1), "gemini")

    listed = runs.list_runs(pre_annotated)
    assert [r.run_key for r in listed] == ["gemini"]
    info = listed[0]
    assert info.task == "detect" and info.model == gemini_annotate.DEFAULT_MODEL
    assert info.summary.done == len(pre_annotated)
    assert info.review.reviewed_samples == 1
    assert "model gemini-3-flash-preview" in info.describe()

    deleted = runs.delete_run(pre_annotated, "gemini", delete_labels=True)

    assert runs.list_runs(pre_annotated) == []
    assert set(deleted) == {"gemini", "gemini_status", "gemini_reason", "gemini_reviewed"}
    assert not pre_annotated.has_field("gemini")
    with pytest.raises(review.ReviewError, match="no gemini-annotate run"):
        runs.run_info(pre_annotated, "gemini")


def test_deleting_a_segment_run_with_its_labels_deletes_its_outlines_too(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset.limit(2), task="segment", label_field="seg")
    assert coco_dataset.count("seg_polylines.polylines") > 0

    deleted = runs.delete_run(coco_dataset, "seg", delete_labels=True)

    assert set(deleted) == {"seg", "seg_polylines", "seg_status", "seg_reason"}
    assert not coco_dataset.has_field("seg_polylines")


def test_deleting_a_run_keeps_its_labels_unless_asked(pre_annotated):
    runs.delete_run(pre_annotated, "gemini")
    assert pre_annotated.has_field("gemini") and pre_annotated.count("gemini.detections") > 0


def test_corrections_keep_masks_of_boxes_that_did_not_move(pre_annotated):
    import numpy as np

    first, second = pre_annotated.limit(2)
    for sample in (first, second):
        for d in sample.gemini.detections[:2]:
            d.mask = np.ones((4, 4), dtype=bool)
        sample.save()
    before = {s.id: list(s.gemini.detections) for s in pre_annotated.limit(2).select_fields("gemini")}
    for sample in (first, second):  # what a box-only tool gives back: no masks
        for d in sample.gemini.detections:
            d.mask = None
        sample.save()
    first.gemini.detections[1].bounding_box = [0.0, 0.0, 0.1, 0.1]  # a person moved this box
    first.save()

    review.apply_corrections(pre_annotated, "gemini", before, reviewed_sample_ids=[first.id])

    first_masks = [d.mask is not None for d in pre_annotated[first.id].gemini.detections[:2]]
    second_masks = [d.mask is not None for d in pre_annotated[second.id].gemini.detections[:2]]
    assert first_masks == [True, False] and second_masks == [True, True]
    assert {d.review for d in pre_annotated[second.id].gemini.detections} == {"unreviewed"}
    assert pre_annotated[second.id].gemini_reviewed is None


def test_a_classification_is_evaluated_per_sample_against_the_class_people_kept(described_dataset, emulator,
                                                                                 described_oracle):
    emulator(described_oracle(described_dataset))
    gemini_annotate.annotate(described_dataset, task="classify", classes=["indoor", "outdoor"], label_field="scene")
    review.keep_proposals(described_dataset, "scene")  # as before loading corrections
    ids = described_dataset.values("id")
    before = {sid: [value] for sid, value in zip(ids, described_dataset.values("scene"))}
    edited, removed = described_dataset[ids[0]], described_dataset[ids[1]]
    edited.scene.label = "indoor" if edited.scene.label == "outdoor" else "outdoor"  # Gemini was wrong
    edited.save()
    removed.scene = None  # no class applies, says the reviewer
    removed.save()

    counts = review.apply_corrections(described_dataset, "scene", before, ids)
    report = review.evaluate(described_dataset, "scene")

    n = len(ids)
    assert (counts.accepted, counts.edited, counts.rejected) == (n - 2, 1, 1)
    assert (report.true_positives, report.false_positives, report.false_negatives) == (n - 2, 2, 1)
    assert report.precision == pytest.approx((n - 2) / n)
    assert report.recall == pytest.approx((n - 2) / (n - 1))
    assert set(report.per_class) == {"indoor", "outdoor"} and report.iou is None
    assert described_dataset.has_evaluation("scene_eval") and "IoU" not in report.describe()


def test_a_classification_field_where_gemini_proposed_nothing_is_evaluated_as_all_missed(
        described_dataset, emulator, described_oracle):
    emulator(described_oracle(described_dataset))
    gemini_annotate.annotate(described_dataset, task="classify", classes=["indoor", "outdoor"], label_field="scene")
    # a person replaced every class with their own (no Gemini proposal is left to keep)
    described_dataset.set_values("scene", [fo.Classification(label="indoor")] * len(described_dataset))
    review.mark_reviewed(described_dataset, "scene")

    report = review.evaluate(described_dataset, "scene")

    assert (report.true_positives, report.false_positives) == (0, 0)
    assert report.false_negatives == len(described_dataset)


def test_evaluating_multi_label_classifications_is_refused_before_anything_is_written(described_dataset, emulator,
                                                                                      described_oracle):
    emulator(described_oracle(described_dataset))
    gemini_annotate.annotate(described_dataset, task="classify", classes=["person", "cup", "dog"],
                             multi_label=True, label_field="present")
    review.mark_reviewed(described_dataset, "present")

    with pytest.raises(review.ReviewError, match="multi-label classifications .* not supported"):
        review.evaluate(described_dataset, "present")
    assert not described_dataset.has_field("present_proposed")

