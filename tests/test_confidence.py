"""Confidences asked of Gemini (``confidence=True``): schema, conversion, and mAP in the evaluation."""

from __future__ import annotations

import fiftyone as fo
import pytest

import gemini_annotate
from gemini_annotate import review
from gemini_annotate.config import AnnotateConfig
from gemini_annotate.items import ConversionReport, read_confidence
from gemini_annotate.labels import adopt_confidence
from gemini_annotate.emulator import OracleNoise
from gemini_annotate.prompts import request_prompt
from gemini_annotate.tasks import get_task


@pytest.mark.parametrize("value, expected", [
    (0.75, 0.75), (0, 0.0), (1, 1.0), ("0.4", 0.4), ("85%", 0.85), (85, 0.85), (100, 1.0),
    (-0.1, None), (101, None), ("150%", None), ("high", None), (None, None), (True, None), (float("nan"), None),
])
def test_a_confidence_is_read_as_a_fraction_or_not_at_all(value, expected):
    assert read_confidence(value) == (pytest.approx(expected) if expected is not None else None)


def test_adopting_confidences_moves_them_and_counts_labels_without_one():
    labels = [fo.Detection(label="a", gemini_confidence=0.8), fo.Detection(label="b", gemini_confidence="n/a"),
              fo.Detection(label="c")]
    report = ConversionReport()

    adopt_confidence(labels, report)

    assert [d.confidence for d in labels] == [0.8, None, None]
    assert "gemini_confidence" not in labels[0].field_names
    assert report.lacking["a usable confidence"] == 2
    assert "2 item(s) without a usable confidence" in report.warnings()


@pytest.mark.parametrize("task", ["detect", "segment", "points"])
def test_asking_for_confidence_puts_it_in_the_schema_and_the_prompt(task):
    config = AnnotateConfig(task=task, classes=["cat"], confidence=True)
    spec = get_task(task)

    schema = spec.build_schema(config)
    item = next(iter(schema["$defs"].values()))

    assert item["properties"]["confidence"]["minimum"] == 0 and item["properties"]["confidence"]["maximum"] == 1
    assert "confidence" in request_prompt(config)
    assert "confidence" not in str(spec.build_schema(AnnotateConfig(task=task, classes=["cat"])))


def test_confidence_is_refused_for_tasks_without_objects():
    with pytest.raises(ValueError, match="confidence is asked per object"):
        AnnotateConfig(task="caption", confidence=True)


def _with_known_confidences(dataset):
    """Gives every ground-truth object a distinct confidence; returns {(label, box): confidence}."""
    known = {}
    for i, sample in enumerate(dataset.select_fields("ground_truth")):
        for j, det in enumerate(sample.ground_truth.detections):
            det.confidence = round(0.05 + ((7 * i + 3 * j) % 19) / 20, 4)
            known[(det.label, tuple(round(v, 3) for v in det.bounding_box))] = det.confidence
        sample.save()
    return known


def test_the_confidences_gemini_gives_become_the_labels_confidence(coco_dataset, emulator, oracle_for):
    known = _with_known_confidences(coco_dataset)
    emulator(oracle_for(coco_dataset))

    gemini_annotate.annotate(coco_dataset, label_field="ranked", confidence=True)
    gemini_annotate.annotate(coco_dataset, label_field="plain")

    got = {(d.label, tuple(round(v, 3) for v in d.bounding_box)): d.confidence
           for value in coco_dataset.values("ranked") for d in value.detections}
    assert len(got) == len(known)
    for key, confidence in got.items():
        match = min(known, key=lambda k: (k[0] != key[0], max(abs(a - b) for a, b in zip(k[1], key[1]))))
        assert confidence == pytest.approx(known[match], abs=1e-4)
    plain = [d for value in coco_dataset.values("plain") for d in value.detections]
    assert all(d.confidence is None and "gemini_confidence" not in d.field_names for d in plain)


def test_a_segment_run_ranks_both_masks_and_outlines(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))

    gemini_annotate.annotate(coco_dataset, task="segment", label_field="seg", confidence=True)

    assert coco_dataset.count("seg.detections") > 0
    assert coco_dataset.count("seg.detections.confidence") == coco_dataset.count("seg.detections")
    assert coco_dataset.count("seg_polylines.polylines.confidence") == coco_dataset.count("seg_polylines.polylines")


def test_a_points_run_gives_each_keypoint_its_confidence(coco_dataset, emulator, oracle_for):
    # FiftyOne keeps one confidence per point of a keypoint; the answers come from known keypoints
    points = [fo.Keypoints(keypoints=[fo.Keypoint(label=d.label, confidence=[0.25 + 0.5 * (i % 2)],
                                                  points=[(d.bounding_box[0] + d.bounding_box[2] / 2,
                                                           d.bounding_box[1] + d.bounding_box[3] / 2)])
                                      for i, d in enumerate(value.detections)])
              for value in coco_dataset.values("ground_truth")]
    coco_dataset.set_values("known_points", points)
    emulator(oracle_for(coco_dataset, field="known_points"))

    summary = gemini_annotate.annotate(coco_dataset, task="points", label_field="pts", confidence=True)

    assert summary.failed == 0
    coco_dataset.reload()
    got = sorted(kp.confidence[0] for sample in coco_dataset for kp in sample.pts.keypoints)
    want = sorted(kp.confidence[0] for value in points for kp in value.keypoints)
    assert got == pytest.approx(want) and all(len(kp.confidence) == 1 for v in coco_dataset.values("pts")
                                              for kp in v.keypoints)


def _evaluate_noisy_run(dataset, server_for, review_as_a_person, field, false_positive_confidence):
    noise = OracleNoise(false_positive_rate=0.5, false_positive_confidence=false_positive_confidence, seed=5)
    server_for(noise)
    gemini_annotate.annotate(dataset, label_field=field, confidence=True)
    review_as_a_person(dataset, field)
    return review.evaluate(dataset, field)


def test_evaluation_reports_map_when_gemini_ranked_its_proposals(coco_dataset, emulator, oracle_for,
                                                                review_as_a_person):
    def server_for(noise):
        return emulator(oracle_for(coco_dataset, noise=noise))

    # the spurious boxes below every true one (0.3 < 0.9), then above (0.99)
    sure_of_the_right = _evaluate_noisy_run(coco_dataset, server_for, review_as_a_person, "sure", 0.3)
    sure_of_the_wrong = _evaluate_noisy_run(coco_dataset, server_for, review_as_a_person, "unsure", 0.99)

    assert sure_of_the_right.false_positives > 0
    assert (sure_of_the_right.precision, sure_of_the_right.recall) == (sure_of_the_wrong.precision,
                                                                       sure_of_the_wrong.recall)
    # ranked right, precision stays 1 until the last true box: AP is the recall reached
    assert sure_of_the_right.mAP > sure_of_the_wrong.mAP
    for name, row in sure_of_the_right.per_class.items():
        if "ap" in row:
            assert row["ap"] == pytest.approx(row["recall"], abs=0.011)  # 101-point interpolation
    assert "mAP" in sure_of_the_right.describe() and "AP" in sure_of_the_right.describe()
    assert sure_of_the_right.note == review.RANKED_NOTE
    assert coco_dataset.get_evaluation_info("sure_eval").config.compute_mAP


def test_evaluation_without_confidences_reports_no_map_and_says_why(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset, label_field="gemini")
    review.mark_reviewed(coco_dataset, "gemini")

    report = review.evaluate(coco_dataset, "gemini")

    assert report.mAP is None and "mAP is not reported" in report.note
    assert all("ap" not in row for row in report.per_class.values())
