"""Segmentation end to end: real SDK → emulator oracle → real FiftyOne database.

Both mask forms (Gemini 3 polygons, Gemini 2.5 PNG masks), the label layout
(instance masks on ``<field>``, outlines on ``<field>_polylines``, linked), and
messy segmentation replies that must never fail the run.
"""

from __future__ import annotations

import base64
import json
import os

import cv2
import fiftyone as fo
import numpy as np
import pytest

import gemini_annotate
from gemini_annotate.emulator import Canned, Styled

MIN_SIDE = 32


def drawn_by_fiftyone(detection, frame):
    """A detection's instance mask on a ``(width, height)`` frame, drawn by FiftyOne, not by this package."""
    return detection.to_segmentation(frame_size=frame, target=1).mask.astype(bool)


def mask_ious(dataset, field):
    """IoU of each stored instance mask with the ground truth, both drawn by FiftyOne.

    FiftyOne floors each box to whole pixels, so either mask may be drawn a
    pixel off; over these objects that costs about 0.01–0.02 of mean IoU
    (0.97 polygons, 0.98 PNG masks, against 0.98 and 1.00 drawn at pixel
    centres by ``benchmarks/fidelity.py``), well within the 0.95 promised.
    """
    ious = []
    for sample in dataset.select_fields(["ground_truth", field, "metadata"]):
        frame = (sample.metadata.width, sample.metadata.height)
        preds = list(sample[field].detections)
        for gt in sample.ground_truth.detections:
            if gt.get_attribute_value("iscrowd", False) or min(gt.bounding_box[2] * frame[0], gt.bounding_box[3] * frame[1]) < MIN_SIDE:
                continue
            pred = next(p for p in preds if p.label == gt.label and np.allclose(p.bounding_box, gt.bounding_box, atol=1.01e-3))
            truth, drawn = drawn_by_fiftyone(gt, frame), drawn_by_fiftyone(pred, frame)
            ious.append((truth & drawn).sum() / (truth | drawn).sum())
    return np.array(ious)


@pytest.mark.parametrize("mask_form, api", [("polygon", "generate_content"), ("png", "generate_content"),
                                            ("polygon", "interactions"), ("png", "interactions")])
def test_segmentation_writes_linked_masks_and_outlines(coco_dataset, emulator, oracle_for, mask_form, api):
    emulator(oracle_for(coco_dataset))

    summary = gemini_annotate.annotate(coco_dataset, task="segment", label_field="seg", mask_form=mask_form, api=api)

    assert summary.failed == 0 and summary.done == len(coco_dataset)
    assert summary.labels == coco_dataset.count("ground_truth.detections")
    assert coco_dataset.count("seg.detections") == coco_dataset.count("seg_polylines.polylines") == summary.labels
    assert isinstance(coco_dataset.get_field("seg_polylines").document_type(), fo.Polylines)
    for sample in coco_dataset.select_fields(["seg", "seg_polylines"]):
        outlines = {p.instance.id: p for p in sample.seg_polylines.polylines}
        for det in sample.seg.detections:
            assert det.mask is not None and det.mask.dtype == bool and det.mask.any()
            outline = outlines[det.instance.id]  # the reviewer's way from one to the other
            assert (outline.label, outline.index) == (det.label, det.index)
            assert outline.closed and outline.filled and outline.review == "unreviewed"
    ious = mask_ious(coco_dataset, "seg")
    assert len(ious) >= 70 and ious.mean() >= 0.95


def test_segment_masks_work_with_fiftyone_mask_evaluation(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    gemini_annotate.annotate(coco_dataset, task="segment", label_field="seg", mask_form="png")

    results = coco_dataset.evaluate_detections("seg", gt_field="ground_truth", eval_key="ev",
                                               use_masks=True, iscrowd="iscrowd")

    # one 5-px-tall book falls under IoU 0.5 in FiftyOne's dense mask IoU (a
    # rounding artefact of that measure); everything else matches
    assert results.metrics()["precision"] >= 0.99 and results.metrics()["recall"] >= 0.99


def test_model_family_chooses_the_mask_form_and_both_are_read(coco_dataset, emulator, oracle_for):
    server = emulator(oracle_for(coco_dataset))
    sample = coco_dataset.limit(1)

    gemini_annotate.annotate(sample, task="segment", label_field="g3", model="gemini-3-flash-preview")
    polygon_request = server.last_requests[-1]
    gemini_annotate.annotate(sample, task="segment", label_field="g25", model="gemini-2.5-flash")
    png_request = server.last_requests[-1]

    # Gemini 3: the seed's schema with polygon masks; Gemini 2.5: Google's PNG recipe, no schema
    mask_schema = json.dumps(polygon_request.schema)
    assert '"mask"' in mask_schema and "polygon of [x,y]" in mask_schema
    assert png_request.schema is None and "segmentation masks" in png_request.prompt
    first = coco_dataset.first()
    assert len(first.g3.detections) == len(first.g25.detections) == len(first.ground_truth.detections)


def test_mask_form_option_overrides_the_model_family(coco_dataset, emulator, oracle_for):
    server = emulator(oracle_for(coco_dataset))

    gemini_annotate.annotate(coco_dataset.limit(1), task="segment", label_field="s",
                             model="gemini-2.5-flash", mask_form="polygon")

    assert server.last_requests[-1].schema is not None


def png_item(label, box, value=200):
    ok, png = cv2.imencode(".png", np.full((64, 64), value, np.uint8))
    return {"box_2d": box, "mask": "data:image/png;base64," + base64.b64encode(png.tobytes()).decode(), "label": label}


def test_mask_threshold_is_configurable(coco_dataset, emulator):
    faint = json.dumps([png_item("faint", [100, 100, 400, 400], value=90), png_item("clear", [500, 500, 900, 900])])
    emulator(Canned(f"```json\n{faint}\n```"))
    sample = coco_dataset.limit(1)

    gemini_annotate.annotate(sample, task="segment", label_field="strict", mask_form="png")
    gemini_annotate.annotate(sample, task="segment", label_field="lenient", mask_form="png", mask_threshold=50)

    first = coco_dataset.first()
    assert [d.label for d in first.strict.detections] == ["clear"]
    assert "PNG mask is empty at the threshold" in first.strict_reason
    assert [d.label for d in first.lenient.detections] == ["faint", "clear"]


SQUARE = {"box_2d": [100, 100, 400, 400], "mask": [[100, 100], [400, 100], [400, 400], [100, 400]], "label": "tile"}
TRIANGLE = {"box_2d": [500, 500, 900, 900], "mask": [[500, 500], [900, 500], [700, 900]], "label": "roof"}

MESSY_SEGMENT_REPLIES = [
    # (id, reply text, finish reason, status, labels)
    ("structured", json.dumps({"boxes": [SQUARE, TRIANGLE]}), "STOP", "ok", 2),
    ("fenced_png_list_with_prose", "Here you go:\n```json\n" + json.dumps([png_item("blob", [100, 100, 500, 500])]) + "\n```",
     "STOP", "ok", 1),
    ("mixed_forms", json.dumps([SQUARE, png_item("blob", [600, 600, 900, 900])]), "STOP", "ok", 2),
    ("polygon_as_y_x", json.dumps([{**TRIANGLE, "mask": [[y, x] for x, y in TRIANGLE["mask"]], "box_2d": [500, 300, 900, 700]}]),
     "STOP", "ok", 1),
    ("one_undecodable_mask", json.dumps([SQUARE, {"box_2d": [1, 1, 50, 50], "mask": "data:image/png;base64,%%%", "label": "x"}]),
     "STOP", "ok", 1),
    ("polygon_with_two_points", json.dumps([SQUARE, {**TRIANGLE, "mask": [[1, 1], [5, 5]]}]), "STOP", "ok", 1),
    ("truncated_mid_mask", json.dumps({"boxes": [SQUARE, TRIANGLE]})[:-40], "MAX_TOKENS", "partial", 1),
    ("empty_answer", '{"boxes": []}', "STOP", "ok", 0),
    ("seg_tokens", json.dumps([{"box_2d": [1, 1, 50, 50], "mask": "<start_of_mask><seg_5><seg_77>", "label": "x"}]),
     "STOP", "failed", 0),
    ("not_json", "I can see a tiled roof, but I cannot produce masks.", "STOP", "failed", 0),
    ("empty_text", "", "STOP", "failed", 0),
    ("refused", "", "SAFETY", "failed", 0),
]


def test_messy_segmentation_replies_never_fail_the_run(make_dataset, emulator):
    dataset = make_dataset()
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "coco_val_tiny", "images", "000000547503.jpg")
    dataset.add_samples([fo.Sample(filepath=path, case=row[0]) for row in MESSY_SEGMENT_REPLIES])
    replies = iter(MESSY_SEGMENT_REPLIES)

    class InTurn(Canned):  # one case per request, with its finish reason
        def respond(self, request):
            from gemini_annotate.emulator import EmulatorReply

            _, text, finish_reason, _, _ = next(replies)
            return EmulatorReply(text, finish_reason)

    emulator(InTurn(""))
    summary = gemini_annotate.annotate(dataset, task="segment", label_field="seg", concurrency=1)

    assert summary.done + summary.failed == len(MESSY_SEGMENT_REPLIES)
    for (case, _, _, status, count), sample in zip(MESSY_SEGMENT_REPLIES, dataset):
        assert sample.case == case
        assert sample.seg_status == status, f"{case}: {sample.seg_reason}"
        got = len(sample.seg.detections) if sample.seg else 0
        assert got == count, f"{case}: {sample.seg_reason}"
        if status == "failed":
            assert sample.seg_reason
    reasons = dict(zip(dataset.values("case"), dataset.values("seg_reason")))
    assert "<seg_N> tokens" in reasons["seg_tokens"]
    assert "truncated" in reasons["truncated_mid_mask"]
    assert "mask could not be decoded" in reasons["one_undecodable_mask"]
    assert "declined" in reasons["refused"]


def test_styled_oracle_replies_keep_every_object(coco_dataset, emulator, oracle_for):
    emulator(Styled(oracle_for(coco_dataset), "prose"))

    summary = gemini_annotate.annotate(coco_dataset, task="segment", label_field="seg", mask_form="png")

    assert summary.failed == 0 and summary.labels == coco_dataset.count("ground_truth.detections")


def test_replace_unreviewed_keeps_reviewed_masks_and_outlines(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    view = coco_dataset.limit(2)
    gemini_annotate.annotate(view, task="segment", label_field="seg", mask_form="polygon")
    sample = coco_dataset.first()
    det = sample.seg.detections[0]
    det.review, det.label = "accepted", "checked"
    outline = next(p for p in sample.seg_polylines.polylines if p.instance.id == det.instance.id)
    outline.review, outline.label = "accepted", "checked"
    sample.save()
    before = (len(sample.seg.detections), len(sample.seg_polylines.polylines))

    gemini_annotate.annotate(view, task="segment", label_field="seg", mask_form="polygon",
                             if_labeled="replace_unreviewed")

    sample = coco_dataset.first()
    assert (len(sample.seg.detections), len(sample.seg_polylines.polylines)) == before
    assert "checked" in [d.label for d in sample.seg.detections]
    assert "checked" in [p.label for p in sample.seg_polylines.polylines]


def test_outline_attributes_are_declared_for_the_apps_filters(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))

    gemini_annotate.annotate(coco_dataset.limit(1), task="segment", label_field="seg")

    assert coco_dataset.get_field("seg_polylines.polylines.review") is not None
    assert coco_dataset.get_field("seg.detections.review") is not None
