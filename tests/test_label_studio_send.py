"""What send_for_review refuses before reaching Label Studio (no server needed)."""

from __future__ import annotations

import fiftyone as fo
import numpy as np
import pytest

from gemini_annotate import review
from gemini_annotate.annotation_tool import send_for_review


@pytest.mark.parametrize("field_value, message", [
    (fo.Detections(detections=[
        fo.Detection(label="cat", bounding_box=[0.1, 0.1, 0.2, 0.2], mask=np.ones((4, 4), bool)),
        fo.Detection(label="dog", bounding_box=[0.5, 0.5, 0.2, 0.2])]), "1 of the 2 labels in 'gemini' have an instance mask"),
    (fo.Polylines(polylines=[
        fo.Polyline(label="cat", points=[[[0.1, 0.1], [0.2, 0.1], [0.2, 0.2]]], closed=True, filled=True),
        fo.Polyline(label="dog", points=[[[0.5, 0.5], [0.6, 0.6]]], closed=False, filled=False)]),
     "1 of the 2 labels in 'gemini' are filled polygons"),
])
def test_a_field_mixing_what_label_studio_shows_apart_is_refused_before_sending(make_dataset, field_value, message):
    dataset = make_dataset()
    dataset.add_sample(fo.Sample(filepath="/nonexistent/a.jpg", gemini=field_value))

    with pytest.raises(review.ReviewError, match=message):
        send_for_review(dataset, "gemini", "round1", url="http://127.0.0.1:9", api_key="unused")
