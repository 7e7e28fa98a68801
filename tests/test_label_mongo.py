"""label_mongo.to_mongo stores exactly what mongoengine's to_mongo stores, byte for byte."""

import bson
import fiftyone as fo
import fiftyone.core.labels as fol
import numpy as np
import pytest

from gemini_annotate.label_factory import make_label
from gemini_annotate.label_mongo import to_mongo


def _box(**fields):
    return fol.Detection(label="cat", bounding_box=[0.1, 0.2, 0.3, 0.4], **fields)


CASES = {
    "plain boxes with provenance": lambda: fol.Detections(detections=[
        _box(gemini_model="m", gemini_run="r", gemini_confidence=0.5), _box(confidence=0.9, index=2)]),
    "boxes made from a template": lambda: fol.Detections(detections=[
        make_label(fol.Detection, label="dog", bounding_box=[0.5, 0.5, 0.1, 0.1], gemini_model="m")
        for _ in range(3)]),
    "no boxes": lambda: fol.Detections(),
    "an int confidence, a bool and an int attribute": lambda: fol.Detections(detections=[
        _box(confidence=1, gemini_flag=True, votes=3)]),
    "numpy numbers": lambda: fol.Detections(detections=[_box(confidence=np.float64(0.25), votes=np.int64(2))]),
    "a mask and an instance": lambda: fol.Detections(detections=[
        _box(mask=np.ones((3, 4), bool), instance=fol.Instance()), _box()]),
    "tags and attributes": lambda: fol.Detections(detections=[
        _box(tags=["reviewed"], attributes={"x": fol.Attribute(value=1)})]),
    "an ObjectId and a dict attribute": lambda: fol.Detections(detections=[
        _box(source_id=bson.ObjectId(), extra={"a": [1, 2]})]),
    "a list attribute and a None": lambda: fol.Detections(detections=[_box(points_seen=[1.0, 2.0], note=None)]),
    "classifications with logits": lambda: fol.Classifications(
        classifications=[fol.Classification(label="a", confidence=0.3, gemini_model="m")], logits=np.ones(2)),
    "a classification": lambda: fol.Classification(label="a", gemini_model="m"),
    "keypoints": lambda: fol.Keypoints(keypoints=[fol.Keypoint(label="eye", points=[[0.1, 0.2]], index=1)]),
    "polylines": lambda: fol.Polylines(polylines=[
        fol.Polyline(label="road", points=[[(0.0, 0.0), (1.0, 1.0)]], closed=True, filled=False)]),
    "image metadata": lambda: fo.ImageMetadata(width=640, height=480, size_bytes=1000, mime_type="image/jpeg",
                                               num_channels=3),
}


@pytest.mark.parametrize("make", CASES.values(), ids=CASES.keys())
def test_stored_document_is_mongoengines_byte_for_byte(make):
    value = make()
    expected = bson.encode({"v": value.to_mongo()})
    assert bson.encode({"v": to_mongo(value)}) == expected
    assert bson.encode({"v": to_mongo(value)}) == expected  # reading it changed nothing


def test_a_value_read_back_from_the_database_is_stored_the_same():
    dataset = fo.Dataset()
    try:
        dataset.add_sample(fo.Sample(filepath="/tmp/label-mongo.jpg", gt=CASES["plain boxes with provenance"]()))
        value = dataset.first().gt
        value.detections[0]["gemini_review"] = "accepted"
        assert bson.encode({"v": to_mongo(value)}) == bson.encode({"v": value.to_mongo()})
    finally:
        dataset.delete()
