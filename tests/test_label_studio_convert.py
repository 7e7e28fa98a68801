"""FiftyOne labels ↔ Label Studio results (no server): ids, geometry and classes survive the trip."""

from __future__ import annotations

import fiftyone.core.labels as fol
import numpy as np
import pytest

from gemini_annotate import labelstudio_convert as convert
from gemini_annotate.labels import labels_in
from gemini_annotate.masks import instance_mask_to_frame

pytest.importorskip("label_studio_sdk")

SIZE = (64, 48)  # width, height


def _blob_mask() -> np.ndarray:
    mask = np.zeros((20, 30), bool)
    yy, xx = np.mgrid[:20, :30]
    mask[((yy - 10) / 9) ** 2 + ((xx - 15) / 14) ** 2 <= 1] = True
    return mask


def _values() -> dict:
    # a downscaled mask over a box off the pixel grid, as Gemini's masks come
    masked = fol.Detection(label="cat", bounding_box=[0.103, 0.211, 0.497, 0.402], mask=_blob_mask())
    return {
        "boxes": fol.Detections(detections=[fol.Detection(label="cat", bounding_box=[0.1, 0.2, 0.3, 0.4]),
                                            fol.Detection(label="dog", bounding_box=[0.5, 0.5, 0.25, 0.125])]),
        "masks": fol.Detections(detections=[masked]),
        "polygons": fol.Polylines(polylines=[fol.Polyline(
            label="cat", closed=True, filled=True,
            points=[[[0.1, 0.1], [0.4, 0.1], [0.25, 0.5]], [[0.6, 0.6], [0.9, 0.6], [0.9, 0.9]]])]),
        "points": fol.Keypoints(keypoints=[fol.Keypoint(label="cat", points=[[0.25, 0.75]]),
                                           fol.Keypoint(label="dog", points=[[0.5, 0.5], [0.6, 0.4]])]),
        "class": fol.Classification(label="indoor"),
        "classes": fol.Classifications(classifications=[fol.Classification(label="cat"),
                                                        fol.Classification(label="dog")]),
        "text": "Two cats on a sofa.",
    }


def _frame(label: fol.Label) -> np.ndarray:
    return instance_mask_to_frame(label.mask, label.bounding_box, SIZE)


@pytest.mark.parametrize("kind", convert.KINDS)
def test_labels_sent_and_left_alone_come_back_as_the_same_labels(kind):
    value = _values()[kind]
    results = convert.to_results(value, kind, "gemini", SIZE)
    originals = [] if kind == "text" else labels_in(value)

    back = convert.from_results(results, kind, "gemini", SIZE, originals)

    if kind == "text":
        assert back == value
        return
    labels = labels_in(back)
    assert [label.id for label in labels] == [label.id for label in originals]
    for label, original in zip(labels, originals):
        assert label.label == original.label
        for name in ("bounding_box", "points"):
            if original.has_field(name) and original[name] is not None:
                assert label[name] == original[name]  # bit for bit, not just close
    if kind == "masks":
        assert np.array_equal(labels[0].mask, originals[0].mask)


def test_a_mask_read_back_as_a_new_label_covers_the_same_pixels():
    # no original to fall back on: the brush RLE alone carries the mask
    sent = _values()["masks"].detections[0]
    results = convert.to_results(fol.Detections(detections=[sent]), "masks", "gemini", SIZE)
    results[0]["id"] = "drawnByHand"

    (back,) = convert.from_results(results, "masks", "gemini", SIZE).detections

    a, b = _frame(back), _frame(sent)
    assert (a & b).sum() / (a | b).sum() == 1.0
    assert back.id != sent.id and back.label == "cat"


def test_whole_image_masks_become_detections_that_draw_the_same_pixels():
    mask = np.zeros(SIZE[::-1], bool)
    mask[7:19, 11:40] = True
    mask[9:12, 20:25] = False

    detection = convert.detection_from_frame_mask(mask, "cat")

    assert np.array_equal(_frame(detection), mask)
    assert detection.bounding_box == pytest.approx([11 / 64, 7 / 48, 29 / 64, 12 / 48])
    assert convert.detection_from_frame_mask(np.zeros_like(mask), "cat") is None


@pytest.mark.parametrize("kind, change, expected", [
    ("boxes", lambda v: v.update(width=50.0), lambda label: label.bounding_box[2] == pytest.approx(0.5)),
    ("polygons", lambda v: v["points"].__setitem__(0, [20.0, 30.0]),
     lambda label: label.points[0][0] == pytest.approx([0.2, 0.3])),
    ("points", lambda v: v.update(x=40.0), lambda label: label.points[0] == pytest.approx([0.4, 0.75])),
    ("class", lambda v: v.update(choices=["outdoor"]), lambda label: label.label == "outdoor"),
    ("classes", lambda v: v.update(choices=["bird"]), lambda label: label.label == "bird"),
])
def test_a_changed_region_comes_back_as_its_label_changed_with_its_attributes(kind, change, expected):
    value = _values()[kind]
    originals = labels_in(value)
    for label in originals:
        label["gemini_run"] = "run1"
    results = convert.to_results(value, kind, "gemini", SIZE)
    change(results[0]["value"])

    labels = labels_in(convert.from_results(results, kind, "gemini", SIZE, originals))

    assert labels[0].id == originals[0].id and labels[0]["gemini_run"] == "run1"
    assert expected(labels[0])


@pytest.mark.parametrize("kind, expected", [
    ("boxes", ["dog"]), ("points", ["dog"]), ("classes", ["dog"]), ("class", []), ("text", None),
])
def test_a_deleted_region_leaves_its_label_out(kind, expected):
    value = _values()[kind]
    results = convert.to_results(value, kind, "gemini", SIZE)[1:] if kind in ("boxes", "points", "classes") else []
    if kind == "points":  # the dog has two points: both regions go
        results = [r for r in convert.to_results(value, kind, "gemini", SIZE) if not r["id"].startswith(
            value.keypoints[0].id)]
        expected = ["dog"]

    back = convert.from_results(results, kind, "gemini", SIZE, [] if kind == "text" else labels_in(value))

    assert (back if kind == "text" else [label.label for label in labels_in(back)]) == expected


def test_the_second_ring_of_a_polygon_comes_back_in_the_same_label():
    value = _values()["polygons"]
    results = convert.to_results(value, "polygons", "gemini", SIZE)

    assert [r["id"] for r in results] == [value.polylines[0].id, f"{value.polylines[0].id}_1"]
    (back,) = convert.from_results(results, "polygons", "gemini", SIZE, value.polylines).polylines
    assert len(back.points) == 2


@pytest.mark.parametrize("kind, tag", [
    ("boxes", "<RectangleLabels"), ("masks", "<BrushLabels"), ("polygons", "<PolygonLabels"),
    ("points", "<KeyPointLabels"), ("class", 'choice="single-radio"'), ("text", "<TextArea"),
])
def test_each_kind_gets_its_label_studio_control(kind, tag):
    config = convert.labeling_config(kind, "gemini", ["cat", "dog & co"])

    assert tag in config and 'toName="image"' in config
    assert kind == "text" or 'value="dog &amp; co"' in config


def test_multi_label_classes_get_one_drop_down_per_class_and_spares():
    value = _values()["classes"]
    slots = convert.class_slots([value, None])

    config = convert.labeling_config("classes", "gemini", ["cat", "dog"], slots=slots)

    assert slots == 2 + convert.SPARE_CLASS_SLOTS
    assert [f'name="gemini_{k}"' in config for k in range(1, slots + 1)] == [True] * slots
    assert [r["from_name"] for r in convert.to_results(value, "classes", "gemini", SIZE)] == ["gemini_1", "gemini_2"]


@pytest.mark.parametrize("label_type, has_masks, kind", [
    (fol.Detections, False, "boxes"), (fol.Detections, True, "masks"), (fol.Polylines, False, "polygons"),
    (fol.Keypoints, False, "points"), (fol.Classification, False, "class"),
    (fol.Classifications, False, "classes"), (str, False, "text"),
])
def test_each_field_type_has_its_kind(label_type, has_masks, kind):
    assert convert.label_kind(label_type, has_masks) == kind


def test_a_field_type_no_round_carries_is_refused():
    with pytest.raises(ValueError, match="Segmentation"):
        convert.label_kind(fol.Segmentation)


def test_a_mask_repainted_inside_the_same_box_is_an_edit():
    from gemini_annotate.review_rules import same_geometry

    sent = convert.detection_from_frame_mask(np.pad(np.ones((10, 10), bool), ((5, 33), (5, 49))), "cat")
    results = convert.to_results(fol.Detections(detections=[sent]), "masks", "gemini", SIZE)
    painted = convert.decode_mask(results[0]["value"]["rle"], SIZE)
    painted[8:11, 8:11] = False  # a hole inside: the box stays where it was
    results[0]["value"]["rle"] = convert.encode_mask(painted)

    (back,) = convert.from_results(results, "masks", "gemini", SIZE, [sent]).detections

    assert back.id == sent.id and back.bounding_box == sent.bounding_box
    assert not same_geometry(back, sent)
    assert same_geometry(convert.from_results(convert.to_results(
        fol.Detections(detections=[sent]), "masks", "gemini", SIZE), "masks", "gemini", SIZE, [sent]).detections[0], sent)
