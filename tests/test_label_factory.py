"""Labels made from a template (label_factory) are the labels the constructor makes."""

import fiftyone as fo
import fiftyone.core.labels as fol
import numpy as np
import pytest

from gemini_annotate.label_factory import make_label

CASES = [
    (fol.Detection, dict(label="cat", bounding_box=[0.1, 0.2, 0.3, 0.4])),
    (fol.Detection, dict(label="cat", bounding_box=[0.1, 0.2, 0.3, 0.4], gemini_model="m", gemini_run="r",
                         gemini_confidence=0.7)),
    (fol.Detection, dict(label="cat", bounding_box=[0.0, 0.0, 0.5, 0.5], mask=np.ones((3, 4), bool),
                         index=2, instance=fol.Instance())),
    (fol.Keypoint, dict(label="eye", points=[[0.1, 0.2]], index=1, gemini_model="m")),
    (fol.Keypoint, dict(label="eye", points=[(0.1, 0.2)], index=1)),  # tuples: converted by the constructor
    (fol.Classification, dict(label="dog", gemini_model="m", gemini_run="r")),
    (fol.Classification, dict(label="dog", confidence=0.25)),
    (fol.Polyline, dict(label="road", points=[[(0.0, 0.0), (1.0, 1.0), (0.0, 1.0)]], closed=True, filled=True)),
]


def _without_id(label: fol.Label) -> dict:
    d = label.to_dict()
    d.pop("_id")
    return d


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k] for k in a)


@pytest.mark.parametrize("label_type, fields", CASES, ids=lambda c: getattr(c, "__name__", None))
def test_made_label_equals_the_constructed_one_with_a_fresh_id(label_type, fields):
    made = [make_label(label_type, **fields) for _ in range(3)]  # the first builds the template
    constructed = label_type(**fields)
    for label in made:
        assert type(label) is label_type
        assert _same(_without_id(label), _without_id(constructed))
        assert label._changed_fields == []
        assert vars(label).keys() == vars(constructed).keys()
    assert len({label.id for label in made}) == 3


def test_made_labels_share_no_state_with_each_other_or_the_template():
    fields = dict(label="cat", bounding_box=[0.1, 0.2, 0.3, 0.4], gemini_model="m")
    first = make_label(fol.Detection, **fields)
    first.tags.append("reviewed")
    first.attributes["x"] = fol.Attribute(value=1)
    first["gemini_review"] = "accepted"  # a new attribute on one label
    first.confidence = 0.9
    first.label = "dog"
    second = make_label(fol.Detection, **fields)
    assert second.tags == [] and second.attributes == {}
    assert not second.has_field("gemini_review")
    assert second.confidence is None and second.label == "cat"
    assert first._changed_fields and second._changed_fields == []


def test_made_labels_round_trip_through_the_database():
    dataset = fo.Dataset()
    try:
        dets = [make_label(fol.Detection, label=name, bounding_box=[0.1, 0.1, 0.2, 0.2], gemini_model="m")
                for name in ("a", "b", "c")]
        sample = fo.Sample(filepath="/tmp/label-factory.jpg", gt=fol.Detections(detections=dets))
        dataset.add_sample(sample)
        sample.gt.detections[1]["gemini_review"] = "rejected"
        sample.save()
        dataset.reload()
        stored = dataset.first().gt.detections
        assert [d.label for d in stored] == ["a", "b", "c"]
        assert [d.id for d in stored] == [d.id for d in dets]
        assert [d["gemini_model"] for d in stored] == ["m"] * 3
        assert stored[1]["gemini_review"] == "rejected" and not stored[0].has_field("gemini_review")
    finally:
        dataset.delete()


def test_labels_given_to_a_made_list_point_at_it_as_the_constructor_makes_them():
    detections = [make_label(fol.Detection, label=name, bounding_box=[0.1, 0.1, 0.2, 0.2]) for name in "ab"]
    first = make_label(fol.Detections, detections=detections)
    again = [make_label(fol.Detection, label="c", bounding_box=[0.1, 0.1, 0.2, 0.2])]
    second = make_label(fol.Detections, detections=again)
    assert detections[0]._instance._data is first._data
    assert again[0]._instance._data is second._data
    assert [d.label for d in second.detections] == ["c"] and [d.label for d in first.detections] == ["a", "b"]


def test_a_shape_whose_copy_would_differ_is_constructed():
    from gemini_annotate.label_factory import _shapes

    points = make_label(fol.Keypoint, label="eye", points=[(0.5, 0.5)], shape_case=1)
    assert points.points == [[0.5, 0.5]]  # the constructor's lists, not the tuples given
    assert _shapes[(fol.Keypoint, "label", "points", "shape_case")].template is None


def test_a_shape_first_made_empty_still_adopts_the_labels_it_is_given_later():
    make_label(fol.Keypoints, keypoints=[])
    points = [fol.Keypoint(label="eye", points=[[0.1, 0.2]])]
    made = make_label(fol.Keypoints, keypoints=points)
    assert points[0]._instance._data is made._data
