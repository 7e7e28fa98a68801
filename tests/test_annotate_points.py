"""Pointing end to end, and the new tasks in every front door (Python, CLI, App form)."""

from __future__ import annotations

import json

import fiftyone as fo
import pytest

import gemini_annotate
from gemini_annotate.cli import build_parser
from gemini_annotate.config import SPATIAL_TASKS
from gemini_annotate.emulator import Canned

QUANTIZATION_BOUND = 0.0005 + 1e-9


def test_points_become_labeled_keypoints_at_the_objects(coco_dataset, emulator, oracle_for):
    server = emulator(oracle_for(coco_dataset))

    summary = gemini_annotate.annotate(coco_dataset, task="points", label_field="pts")

    assert summary.failed == 0 and summary.labels == coco_dataset.count("ground_truth.detections")
    assert isinstance(coco_dataset.get_field("pts").document_type(), fo.Keypoints)
    assert '"point"' in json.dumps(server.last_requests[-1].schema)
    for sample in coco_dataset.select_fields(["ground_truth", "pts"]):
        centres = [(d.label, d.bounding_box[0] + d.bounding_box[2] / 2, d.bounding_box[1] + d.bounding_box[3] / 2)
                   for d in sample.ground_truth.detections]
        for kp in sample.pts.keypoints:
            (x, y), = kp.points
            # the oracle points at box centres, quantised to the 0-1000 grid
            assert any(label == kp.label and abs(x - cx) <= QUANTIZATION_BOUND and abs(y - cy) <= QUANTIZATION_BOUND
                       for label, cx, cy in centres)
            assert kp.review == "unreviewed" and kp.gemini_run == "pts"


def test_points_with_classes_are_restricted_and_normalised(coco_dataset, emulator, oracle_for):
    server = emulator(oracle_for(coco_dataset))

    gemini_annotate.annotate(coco_dataset, task="points", label_field="pts", classes=["Person", "Dining Table"])

    assert set(coco_dataset.distinct("pts.keypoints.label")) == {"Person", "Dining Table"}
    assert '"enum": ["Person", "Dining Table"]' in json.dumps(server.last_requests[-1].schema)
    counts = coco_dataset.count_values("ground_truth.detections.label")
    assert coco_dataset.count_values("pts.keypoints.label") == {"Person": counts["person"],
                                                               "Dining Table": counts["dining table"]}


def test_messy_point_reply_is_read(coco_dataset, emulator):
    emulator(Canned('Sure:\n```json\n[{"point": [500, 250], "label": "cup"}, {"point": [1200, -3], "label": "plate"},\n'
                    ' {"point": [1, 2, 3], "label": "bad"}, {"point": [500, 250], "label": "cup"}]\n```'))

    gemini_annotate.annotate(coco_dataset.limit(1), task="points", label_field="pts")

    sample = coco_dataset.first()
    assert [(k.label, tuple(k.points[0])) for k in sample.pts.keypoints] == [("cup", (0.25, 0.5)), ("plate", (0.0, 1.0))]
    assert sample.pts_status == "ok"
    assert "point clipped" in sample.pts_reason and "duplicate" in sample.pts_reason


@pytest.mark.parametrize("task", SPATIAL_TASKS)
def test_cli_takes_the_mask_options_with_every_spatial_task(task):
    args = build_parser().parse_args(["annotate", "some-dataset", "--task", task, "--mask-form", "png",
                                      "--mask-threshold", "100"])

    assert args.task == task and args.mask_form == "png" and args.mask_threshold == 100


def test_form_parameters_choose_the_mask_form_and_threshold():
    from gemini_annotate.operators import config_from_params

    config = config_from_params({"task": "segment", "mask_form": "png", "mask_threshold": 90})
    assert (config.task, config.mask_form, config.mask_threshold) == ("segment", "png", 90)


def test_replace_unreviewed_keeps_points_people_accepted(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    view = coco_dataset.limit(1)
    gemini_annotate.annotate(view, task="points", label_field="pts")
    sample = coco_dataset.first()
    accepted = sample.pts.keypoints[0]
    accepted.review, accepted.label = "accepted", "checked"
    sample.save()
    count = len(sample.pts.keypoints)

    gemini_annotate.annotate(view, task="points", label_field="pts", if_labeled="replace_unreviewed")

    keypoints = coco_dataset.first().pts.keypoints
    # the accepted point stands, and the fresh point at the same place is not added again
    assert len(keypoints) == count
    assert [k.id for k in keypoints if k.label == "checked"] == [accepted.id]
