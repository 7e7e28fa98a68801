"""Conversion of parsed items to FiftyOne labels: boxes, points, polygons, PNG masks.

Pure functions, so these tests need no database or server; each row of a
table is one kind of item real replies hold.
"""

from __future__ import annotations

import base64

import cv2
import fiftyone as fo
import numpy as np
import pytest

from gemini_annotate.boxes import Box2d, box_pixel_region
from gemini_annotate.items import ConversionReport, LabelPolicy, read_polygon
from gemini_annotate.labels import MaskOptions, items_to_detections, items_to_keypoints, items_to_segments
from gemini_annotate.masks import MaskError, decode_png_mask, instance_mask_to_frame, instance_mask_to_polygons, png_mask_to_instance_mask, polygon_to_instance_mask
from gemini_annotate.vocabulary import Provenance

PROVENANCE = Provenance(model="gemini-3-flash-preview", run_key="test")
FRAME = (640, 480)


def png_base64(grey: np.ndarray, prefix: str = "data:image/png;base64,") -> str:
    ok, png = cv2.imencode(".png", grey)
    assert ok
    return prefix + base64.b64encode(png.tobytes()).decode("ascii")


def full_box_png(value: int = 255, size: int = 64) -> str:
    return png_base64(np.full((size, size), value, np.uint8))


def detections(items, classes=None, unknown="drop"):
    return items_to_detections(items, policy=LabelPolicy.for_classes(classes, unknown), provenance=PROVENANCE)


def segments(items, classes=None, threshold=127, frame=FRAME):
    return items_to_segments(items, policy=LabelPolicy.for_classes(classes), provenance=PROVENANCE,
                             masks=MaskOptions(frame_size=frame, threshold=threshold))


# boxes


def test_duplicate_items_are_dropped_but_the_same_box_under_two_labels_is_kept():
    box = [100, 200, 300, 600]
    items = [{"box_2d": box, "label": "cat"}, {"box_2d": box, "label": "cat"}, {"box_2d": box, "label": "kitten"}]

    dets, report = detections(items)

    assert [d.label for d in dets.detections] == ["cat", "kitten"]
    assert report.dropped["duplicate item"] == 1


LABELS = [
    # (id, raw label, classes, unknown policy, written label or None)
    ("exact", "cat", ["cat", "dog"], "drop", "cat"),
    ("case", "CAT", ["cat", "dog"], "drop", "cat"),
    ("plural", "Cats", ["cat", "dog"], "drop", "cat"),
    ("irregular_plural", "people", ["person"], "drop", "person"),
    ("separators", "traffic-lights", ["traffic light"], "drop", "traffic light"),
    ("spacing", "  dining   table ", ["dining table"], "drop", "dining table"),
    ("class_written_in_plural", "dining table", ["dining tables"], "drop", "dining tables"),
    ("small_typo", "bicyle", ["bicycle"], "drop", "bicycle"),
    ("unknown_dropped", "zebra", ["cat", "dog"], "drop", None),
    ("unknown_kept", "zebra", ["cat", "dog"], "keep", "zebra"),
    ("missing_with_classes", None, ["cat"], "drop", None),
    ("missing_without_classes", None, None, "drop", "object"),
    ("free_text_without_classes", "a red mug", None, "drop", "a red mug"),
]


@pytest.mark.parametrize("raw, classes, unknown, written", [r[1:] for r in LABELS], ids=[r[0] for r in LABELS])
def test_labels_are_matched_to_classes_ignoring_case_spacing_and_plural(raw, classes, unknown, written):
    item = {"box_2d": [1, 2, 300, 400]}
    if raw is not None:
        item["label"] = raw

    dets, report = detections([item], classes, unknown)

    assert [d.label for d in dets.detections] == ([written] if written else [])
    if written is None:
        assert report.dropped["label is not one of the classes"] == 1


def test_label_synonym_keys_and_extra_keys_become_attributes():
    dets, _ = detections([{"bbox_2d": [1, 2, 300, 400], "class": "cat", "confidence": 0.9, "id": 4, "color": "red"}])

    det = dets.detections[0]
    assert det.label == "cat" and det.color == "red"
    # Gemini's "confidence" is not a calibrated score: it must not pass for one
    assert det.confidence is None and det.gemini_confidence == 0.9 and det.gemini_id == 4
    assert det.review == "unreviewed" and det.gemini_run == "test"


# points

POINTS = [
    # (id, item, kept (x, y) or None, report key)
    ("point_y_x", {"point": [250, 500], "label": "cup"}, (0.5, 0.25), None),
    ("point_as_object", {"point": {"x": 500, "y": 250}, "label": "cup"}, (0.5, 0.25), None),
    ("point_out_of_range", {"point": [-5, 1200], "label": "cup"}, (1.0, 0.0), "point clipped to the image"),
    ("point_strings", {"point": ["250", "500"], "label": "cup"}, (0.5, 0.25), None),
    ("box_instead_of_point", {"box_2d": [200, 400, 300, 600], "label": "cup"}, (0.5, 0.25),
     "point taken from the centre of a box_2d"),
    ("three_numbers", {"point": [1, 2, 3], "label": "cup"}, None, "point is not 2 numbers"),
    ("no_point", {"label": "cup"}, None, "item has no point"),
]


@pytest.mark.parametrize("item, kept, reason", [p[1:] for p in POINTS], ids=[p[0] for p in POINTS])
def test_point_y_x_becomes_a_keypoint_x_y(item, kept, reason):
    keypoints, report = items_to_keypoints([item], policy=LabelPolicy(), provenance=PROVENANCE)

    got = [tuple(kp.points[0]) for kp in keypoints.keypoints]
    assert got == ([pytest.approx(kept)] if kept else [])
    if reason:
        assert (report.repaired | report.dropped)[reason] == 1


def test_each_point_is_its_own_keypoint_with_label_index_and_provenance():
    items = [{"point": [100, 200], "label": "Cups"}, {"point": [100, 200], "label": "cup"}, {"point": [500, 500], "label": "dog"}]

    keypoints, report = items_to_keypoints(items, policy=LabelPolicy.for_classes(["cup"]), provenance=PROVENANCE)

    assert [(kp.label, kp.index) for kp in keypoints.keypoints] == [("cup", 1)]
    assert report.dropped == {"duplicate item": 1, "label is not one of the classes": 1}
    assert keypoints.keypoints[0].review == "unreviewed"


# polygons

POLYGONS = [
    # (id, raw mask, shapes kept (count of points per shape) or None, report key)
    ("polygon_x_y", [[100, 100], [400, 100], [400, 300], [100, 300]], [4], None),
    ("closed_polygon_repeats_its_first_point", [[1, 1], [9, 1], [9, 9], [1, 1]], [3], None),
    ("several_polygons", [[[1, 1], [9, 1], [9, 9]], [[20, 20], [30, 20], [30, 30]]], [3, 3], None),
    ("flat_coco_list", [100, 100, 400, 100, 400, 300], [3], None),
    ("point_objects", [{"x": 1, "y": 1}, {"x": 9, "y": 1}, {"x": 9, "y": 9}], [3], None),
    ("out_of_range", [[-10, 5], [1100, 5], [500, 900]], [3], "polygon clipped to the image"),
    ("bad_points_skipped", [[1, 1], [9, "x"], [9, 1], [9, 9], None], [3], "polygon points that are not two numbers were skipped"),
    ("two_points", [[1, 1], [9, 9]], None, "polygon has fewer than 3 points"),
    ("repeated_points", [[1, 1], [1, 1], [9, 9], [9, 9]], None, "polygon has fewer than 3 points"),
    ("flat_booleans", [True, False, True, True, False, True], None, "mask is neither a PNG string nor a polygon"),
    ("nested_too_deep", [[[[1, 2]]]], None, "mask is neither a PNG string nor a polygon"),
    ("empty", [], None, "mask is neither a PNG string nor a polygon"),
]


@pytest.mark.parametrize("raw, kept, reason", [p[1:] for p in POLYGONS], ids=[p[0] for p in POLYGONS])
def test_polygon_is_validated_point_by_point(raw, kept, reason):
    report = ConversionReport()

    shapes = read_polygon(raw, report)

    assert ([len(s) for s in shapes] if shapes else None) == kept
    if reason:
        assert (report.repaired | report.dropped)[reason] == 1


def square_item(label="tile", box=(100, 200, 500, 600), **extra):
    ymin, xmin, ymax, xmax = box
    return {"box_2d": list(box), "mask": [[xmin, ymin], [xmax, ymin], [xmax, ymax], [xmin, ymax]],
            "label": label, **extra}


def test_polygon_becomes_a_mask_on_the_detection_and_a_linked_filled_polyline():
    dets, polylines, report = segments([square_item(), square_item("other", (600, 600, 900, 900))])

    assert report.kept == 2
    det, poly = dets.detections[0], polylines.polylines[0]
    assert det.bounding_box == pytest.approx([0.2, 0.1, 0.4, 0.4])
    assert det.mask.dtype == bool and det.mask.all()
    assert det.mask.shape == (192, 256)  # the box's pixel size in a 640x480 image
    assert poly.closed and poly.filled
    assert poly.points == [[[0.2, 0.1], [0.6, 0.1], [0.6, 0.5], [0.2, 0.5]]]
    # linked: the same FiftyOne instance and index, different labels ids
    assert det.instance.id == poly.instance.id and det.index == poly.index == 1
    assert dets.detections[1].instance.id != det.instance.id
    assert poly.label == det.label and poly.review == det.review == "unreviewed"


def test_polygon_without_a_box_gets_the_polygons_bounds():
    item = {"mask": [[100, 100], [400, 100], [400, 300]], "label": "triangle"}

    dets, _, report = segments([item])

    assert dets.detections[0].bounding_box == pytest.approx([0.1, 0.1, 0.3, 0.2])
    assert report.repaired["box_2d taken from the polygon"] == 1


def test_polygon_written_as_y_x_is_swapped_back_using_its_box():
    item = {"box_2d": [100, 500, 200, 900], "mask": [[100, 500], [100, 900], [200, 900], [200, 500]], "label": "bar"}

    dets, polylines, report = segments([item])

    assert report.repaired["polygon points were [y, x]; swapped to [x, y]"] == 1
    assert dets.detections[0].mask.mean() > 0.99
    assert polylines.polylines[0].points[0][0] == pytest.approx((0.5, 0.1))


def test_polygon_outside_its_box_is_cut_at_the_box():
    item = square_item(box=(0, 0, 1000, 1000))
    item["box_2d"] = [0, 0, 500, 500]

    dets, _, _ = segments([item])

    assert dets.detections[0].mask.all()  # the polygon covers the whole (smaller) box


def test_polygon_round_trip_through_a_mask_is_exact():
    mask = np.zeros((480, 640), bool)
    cv2.ellipse(mask.view(np.uint8), (300, 200), (40, 25), 30, 0, 360, 1, -1)
    det = fo.Detection.from_mask(mask)

    shapes = instance_mask_to_polygons(det.mask, det.bounding_box, tolerance=0)
    x, y, w, h = det.bounding_box
    box = [y * 1000, x * 1000, (y + h) * 1000, (x + w) * 1000]
    back = polygon_to_instance_mask([[(px * 1000, py * 1000) for px, py in s] for s in shapes], box, FRAME)

    assert np.array_equal(back, det.mask)


def test_traced_outlines_follow_pixel_edges():
    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:5] = True

    (outline,) = instance_mask_to_polygons(mask, [0, 0, 1, 1], tolerance=0)

    xs, ys = [p[0] * 6 for p in outline], [p[1] * 4 for p in outline]
    assert (min(xs), max(xs), min(ys), max(ys)) == pytest.approx((2, 5, 1, 3))


# PNG masks


def test_png_mask_is_decoded_with_or_without_its_data_uri_prefix():
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)

    for prefix in ("data:image/png;base64,", "", "DATA:image/png;base64,"):
        assert np.array_equal(decode_png_mask(png_base64(grey, prefix)), grey)


def test_png_mask_tolerates_line_breaks_and_missing_padding():
    text = png_base64(np.full((9, 7), 200, np.uint8), "").rstrip("=")
    wrapped = "\n".join(text[i:i + 60] for i in range(0, len(text), 60))

    assert decode_png_mask(wrapped).shape == (9, 7)


def test_colour_and_16_bit_png_masks_are_read_as_grey():
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[:4] = 255
    deep = np.full((8, 8), 65535, np.uint16)

    assert decode_png_mask(png_base64(colour))[:4].min() == 255
    assert decode_png_mask(png_base64(deep)).min() == 255


BAD_MASKS = [
    ("empty_string", "", "the mask is empty"),
    ("not_base64", "data:image/png;base64,@@@not base64@@@", "not valid base64"),
    ("base64_of_text", "data:image/png;base64," + base64.b64encode(b"hello world").decode(), "does not hold a PNG"),
    ("truncated_png", full_box_png()[:60], "does not hold a PNG"),
    ("seg_tokens", "<start_of_mask><seg_1><seg_2>", "<seg_N> tokens"),
]


@pytest.mark.parametrize("value, message", [b[1:] for b in BAD_MASKS], ids=[b[0] for b in BAD_MASKS])
def test_undecodable_mask_raises_a_mask_error_that_says_why(value, message):
    with pytest.raises(MaskError, match=message):
        decode_png_mask(value)


def test_undecodable_mask_drops_its_item_not_the_reply():
    good = {"box_2d": [100, 100, 300, 300], "mask": full_box_png(), "label": "good"}
    bad = {"box_2d": [500, 500, 700, 700], "mask": "data:image/png;base64,@@@", "label": "bad"}
    no_mask = {"box_2d": [500, 100, 700, 300], "label": "bare"}

    dets, polylines, report = segments([bad, good, no_mask])

    assert [d.label for d in dets.detections] == ["good"] and len(polylines.polylines) == 1
    assert report.dropped == {"mask could not be decoded (the mask is not valid base64)": 1,
                              "item has no mask": 1}


def test_png_mask_is_resized_to_the_boxs_pixel_size_and_thresholded():
    grey = np.zeros((256, 256), np.uint8)
    grey[:, :128] = 200  # left half inside
    grey[:, 128:] = 100  # right half below the default threshold
    item = {"box_2d": [100, 100, 600, 500], "mask": png_base64(grey), "label": "half"}

    default = segments([item])[0].detections[0].mask
    lenient = segments([item], threshold=50)[0].detections[0].mask

    assert default.shape == (240, 256)  # 0.5 x 480 rows, 0.4 x 640 columns
    assert default[:, :127].all() and not default[:, 129:].any()
    assert lenient.all()


def test_png_mask_empty_at_the_threshold_drops_its_item():
    item = {"box_2d": [100, 100, 600, 500], "mask": full_box_png(value=90), "label": "faint"}

    dets, _, report = segments([item])

    assert not dets.detections and report.dropped["PNG mask is empty at the threshold"] == 1


def test_png_mask_of_a_clipped_box_is_cropped_in_proportion():
    # the model's box runs off the right edge: [.., xmin 500, .., xmax 1500]; its
    # mask's left third is inside the object, the rest not
    grey = np.zeros((90, 90), np.uint8)
    grey[:, :30] = 255
    item = {"box_2d": [0, 500, 1000, 1500], "mask": png_base64(grey), "label": "edge"}

    dets, _, report = segments([item])

    det = dets.detections[0]
    assert report.repaired["box clipped to the image"] == 1
    assert det.bounding_box == pytest.approx([0.5, 0.0, 0.5, 1.0])
    # a third of the unclipped box is 1/3 * 1000 units = 2/3 of the clipped box
    assert det.mask[0].mean() == pytest.approx(2 / 3, abs=0.01)


def test_png_masks_outline_is_traced_onto_the_linked_polyline():
    grey = np.zeros((100, 100), np.uint8)
    cv2.circle(grey, (50, 50), 40, 255, -1)
    item = {"box_2d": [100, 100, 500, 500], "mask": png_base64(grey), "label": "disc"}

    dets, polylines, _ = segments([item])

    det, poly = dets.detections[0], polylines.polylines[0]
    drawn = instance_mask_to_frame(det.mask, det.bounding_box, FRAME)
    traced = polygon_to_instance_mask([[(x * 1000, y * 1000) for x, y in s] for s in poly.points],
                                      [0, 0, 1000, 1000], FRAME)
    assert (drawn & traced).sum() / (drawn | traced).sum() > 0.97
    assert poly.instance.id == det.instance.id


def test_both_mask_forms_are_read_in_the_same_reply():
    items = [square_item("tile"), {"box_2d": [600, 600, 900, 900], "mask": full_box_png(), "label": "blob"}]

    dets, polylines, report = segments(items)

    assert [d.label for d in dets.detections] == ["tile", "blob"]
    assert all(d.mask.all() for d in dets.detections)
    assert report.kept == 2 and len(polylines.polylines) == 2


def test_box_pixel_region_rounds_edges_like_the_coco_importer():
    assert box_pixel_region([100, 100, 101, 101], FRAME) == (64, 48, 65, 49)
    assert box_pixel_region([0, 0, 1000, 1000], FRAME) == (0, 0, 640, 480)


def test_png_mask_for_the_whole_image_box_covers_the_frame():
    mask = png_mask_to_instance_mask(np.full((3, 3), 255, np.uint8), Box2d([0, 0, 1000, 1000], [0, 0, 1000, 1000]), FRAME)

    assert mask.shape == (480, 640) and mask.all()


def test_png_mask_of_a_wildly_oversized_box_is_cropped_without_building_the_whole_box():
    grey = np.zeros((100, 100), np.uint8)
    grey[:, 50:] = 255  # the right half of a box two billion units wide, which starts at x = 0
    item = {"box_2d": [0, -1e9, 1000, 1e9], "mask": png_base64(grey), "label": "wide"}

    dets, _, _ = segments([item])

    assert dets.detections[0].mask.shape == (480, 640)  # the visible part: the whole image
    assert dets.detections[0].mask.all()


def test_png_mask_claiming_a_huge_size_is_refused_before_decoding():
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    bomb = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + chunk).decode()

    with pytest.raises(MaskError, match="100000x100000 pixels"):
        decode_png_mask(bomb)
