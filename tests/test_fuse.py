"""Fusing a consensus run's N answers: who agrees, where the fused label lies, and how sure it is."""

from __future__ import annotations

import itertools
import math

import fiftyone as fo
import numpy as np
import pytest

from gemini_annotate.fuse import (
    RELABELLED_OBJECT_IOU,
    combined_confidence,
    fuse_segments,
    fuse_values,
)
from gemini_annotate.labels import labels_in
from gemini_annotate.masks import instance_mask_to_frame, instance_mask_to_polygons

FRAME = (100, 100)
PROVENANCE = dict(gemini_model="gemini-test", gemini_run="run1", review="unreviewed")


def box(label, bounding_box, confidence=None):
    return fo.Detection(label=label, bounding_box=list(bounding_box), confidence=confidence, **PROVENANCE)


def boxes(*detections):
    return fo.Detections(detections=list(detections))


def point(label, xy, confidence=None):
    return fo.Keypoint(label=label, points=[xy], confidence=None if confidence is None else [confidence],
                       **PROVENANCE)


def points(*keypoints):
    return fo.Keypoints(keypoints=list(keypoints))


def single(label, confidence=None):
    return fo.Classification(label=label, confidence=confidence, **PROVENANCE)


def multi(*labels):
    return fo.Classifications(classifications=[single(label) for label in labels])


def summary(value):
    """``(label, votes, answers)`` of each fused label, in output order."""
    return [(label.label, label.votes, label.answers) for label in labels_in(value)]


def content(value):
    """Everything a fused value says, without the ids FiftyOne draws at random."""
    described = []
    for label in labels_in(value):
        fields = {k: v for k, v in label.to_dict().items() if k not in ("_id", "instance", "mask")}
        if label.has_field("mask") and label.mask is not None:
            fields["mask"] = (label.mask.shape, label.mask.tobytes())
        described.append(fields)
    return described


# the combined score


@pytest.mark.parametrize("votes, answers, agreement, self_confidence, expected", [
    (3, 3, 1.0, None, 1.0),
    (2, 4, 0.8, None, 0.4),
    (1, 3, 1.0, None, 1 / 3),
    (3, 3, 1.0, 0.9, 0.9),
    (2, 3, 0.9, 0.5, 0.3),
    (1, 1, 1.0, 0.7, 0.7),
    (1, 1, 1.0, None, None),
])
def test_confidence_is_vote_share_times_agreement_times_self_confidence(votes, answers, agreement,
                                                                          self_confidence, expected):
    result = combined_confidence(votes, answers, agreement, self_confidence)
    assert result == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize("better, worse", [
    ((3, 3, 0.9, None), (1, 3, 1.0, None)),   # agreed object above a hallucination
    ((2, 3, 0.7, None), (1, 3, 1.0, None)),   # two loosely agreeing answers still above one alone
    ((3, 3, 0.95, None), (3, 3, 0.6, None)),  # tight above jittery
    ((3, 3, 0.9, 0.9), (3, 3, 0.9, 0.4)),     # Gemini's own doubt separates the rest
])
def test_confidence_ranks_the_more_trustworthy_label_higher(better, worse):
    assert combined_confidence(*better) > combined_confidence(*worse)


# boxes

A = [0.1, 0.1, 0.2, 0.2]
A_RIGHT_2 = [0.12, 0.1, 0.2, 0.2]
A_RIGHT_4 = [0.14, 0.1, 0.2, 0.2]
ELSEWHERE = [0.6, 0.6, 0.1, 0.1]

BOX_CASES = [
    # (id, answers, expected [(label, votes, fused box)] in output order)
    ("two_agree_one_hallucinates",
     [[box("cat", A)], [box("cat", A)], [box("dog", ELSEWHERE)]],
     [("cat", 2, A), ("dog", 1, ELSEWHERE)]),
    ("jitter_fuses_to_the_mean",
     [[box("cat", A)], [box("cat", A_RIGHT_2)], [box("cat", A_RIGHT_4)]],
     [("cat", 3, A_RIGHT_2)]),
    ("jitter_fuses_to_the_confidence_weighted_mean",
     [[box("cat", A, 0.9)], [box("cat", A_RIGHT_4, 0.3)]],
     [("cat", 2, [0.11, 0.1, 0.2, 0.2])]),
    ("class_dissent_places_the_box_but_does_not_vote",
     [[box("cat", A)], [box("cat", A_RIGHT_2)], [box("dog", A_RIGHT_4)]],
     [("cat", 2, A_RIGHT_2)]),
    ("class_tie_goes_to_the_surer_class",
     [[box("cat", A, 0.5)], [box("dog", A, 0.9)]],
     [("dog", 1, A)]),
    ("class_tie_without_confidences_goes_to_the_first_name",
     [[box("dog", A)], [box("cat", A)]],
     [("cat", 1, A)]),
    ("failed_answer_proposes_nothing",
     [[box("cat", A)], None, [box("cat", A)]],
     [("cat", 2, A)]),
    ("one_answer_gives_its_labels_back",
     [[box("cat", A), box("dog", ELSEWHERE)]],
     [("cat", 1, A), ("dog", 1, ELSEWHERE)]),
    ("one_answer_counts_once_per_cluster",
     [[box("cat", A), box("cat", A)], [box("cat", A)]],
     [("cat", 2, A), ("cat", 1, A)]),
    ("overlapping_objects_of_two_classes_stay_two",  # IoU 0.6: a rider and its horse
     [[box("person", [0.3, 0.2, 0.2, 0.4])], [box("horse", [0.3, 0.3, 0.2, 0.4])]],
     [("horse", 1, [0.3, 0.3, 0.2, 0.4]), ("person", 1, [0.3, 0.2, 0.2, 0.4])]),
    ("a_chain_of_shifted_boxes_is_not_one_object",  # A~B 0.6, B~C 0.6, A~C 0.33
     [[box("cat", A)], [box("cat", [0.15, 0.1, 0.2, 0.2])], [box("cat", [0.2, 0.1, 0.2, 0.2])]],
     [("cat", 2, [0.125, 0.1, 0.2, 0.2]), ("cat", 1, [0.2, 0.1, 0.2, 0.2])]),
]


@pytest.mark.parametrize("answers, expected", [c[1:] for c in BOX_CASES], ids=[c[0] for c in BOX_CASES])
def test_boxes_are_clustered_voted_and_fused(answers, expected):
    values = [None if labels is None else boxes(*labels) for labels in answers]

    fused = fuse_values(values, len(values), frame_size=FRAME)

    assert isinstance(fused, fo.Detections)
    assert summary(fused) == [(label, votes, len(values)) for label, votes, _ in expected]
    for detection, (_, _, bounding_box) in zip(fused.detections, expected):
        assert detection.bounding_box == pytest.approx(bounding_box, abs=1e-12)


def test_a_hallucination_keeps_its_one_vote_and_a_lower_confidence_than_the_agreed_object():
    values = [boxes(box("cat", A)), boxes(box("cat", A_RIGHT_2)), boxes(box("cat", A), box("dog", ELSEWHERE))]

    cat, dog = fuse_values(values, 3, frame_size=FRAME).detections

    assert (cat.votes, dog.votes, dog.answers) == (3, 1, 3)
    assert dog.confidence == pytest.approx(1 / 3)
    assert cat.confidence > dog.confidence


def test_jitter_gives_the_mean_iou_to_the_fused_box_as_agreement():
    values = [boxes(box("cat", A)), boxes(box("cat", A_RIGHT_2)), boxes(box("cat", A_RIGHT_4))]

    (cat,) = fuse_values(values, 3, frame_size=FRAME).detections

    iou_of_the_outer_boxes = 0.18 * 0.2 / (2 * 0.04 - 0.18 * 0.2)  # each is 0.02 off the fused box
    assert cat.agreement == pytest.approx((1 + 2 * iou_of_the_outer_boxes) / 3, abs=1e-6)
    assert cat.agreement < 1
    assert cat.confidence == pytest.approx(cat.agreement)


def test_class_dissent_lowers_the_confidence_as_a_missing_vote_does():
    dissent = [boxes(box("cat", A)), boxes(box("cat", A)), boxes(box("dog", A))]
    missing = [boxes(box("cat", A)), boxes(box("cat", A)), None]

    (with_dissent,) = fuse_values(dissent, 3, frame_size=FRAME).detections
    (without,) = fuse_values(missing, 3, frame_size=FRAME).detections

    assert with_dissent.confidence == pytest.approx(without.confidence) == pytest.approx(2 / 3)


@pytest.mark.parametrize("iou, merged", [
    (RELABELLED_OBJECT_IOU + 0.05, True),
    (RELABELLED_OBJECT_IOU - 0.05, False),
])
def test_different_classes_are_one_object_only_when_the_boxes_nearly_coincide(iou, merged):
    width = 0.2 * iou  # a narrower box inside A: IoU = its area / A's
    values = [boxes(box("cat", A)), boxes(box("dog", [0.1, 0.1, width, 0.2]))]

    fused = fuse_values(values, 2, frame_size=FRAME)

    assert len(fused.detections) == (1 if merged else 2)


def test_fused_labels_keep_their_signals_and_provenance():
    values = [boxes(box("cat", A, 0.8)), boxes(box("cat", A, 0.6)), boxes(box("dog", ELSEWHERE))]

    cat, dog = fuse_values(values, 3, frame_size=FRAME).detections

    assert (cat.votes, cat.answers, cat.agreement) == (2, 3, pytest.approx(1.0))
    assert cat.self_confidence == pytest.approx(0.7)
    assert cat.confidence == pytest.approx(2 / 3 * 0.7)
    assert not dog.has_field("self_confidence") or dog["self_confidence"] is None
    for label in (cat, dog):
        assert (label.gemini_model, label.gemini_run, label.review) == ("gemini-test", "run1", "unreviewed")


def test_one_answer_gives_its_labels_back_with_their_own_confidence():
    values = [boxes(box("cat", A, 0.8), box("dog", ELSEWHERE))]

    cat, dog = fuse_values(values, 1, frame_size=FRAME).detections

    assert (cat.votes, cat.answers, cat.confidence) == (1, 1, pytest.approx(0.8))
    assert (dog.votes, dog.answers, dog.confidence) == (1, 1, None)


# points

POINT_CASES = [
    # (id, frame size, answers, expected [(label, votes, fused point)] in output order)
    ("near_points_are_one_object",
     FRAME, [[point("cat", (0.5, 0.5))], [point("cat", (0.52, 0.5))], [point("cat", (0.9, 0.9))]],
     [("cat", 2, (0.51, 0.5)), ("cat", 1, (0.9, 0.9))]),
    ("weighted_by_self_confidence",
     FRAME, [[point("cat", (0.5, 0.5), 0.9)], [point("cat", (0.52, 0.5), 0.3)]],
     [("cat", 2, (0.505, 0.5))]),
    ("distance_is_measured_on_the_longer_side",  # 0.1 of a 100-pixel height = 0.01 of 1000 pixels
     (1000, 100), [[point("cat", (0.5, 0.5))], [point("cat", (0.5, 0.6))]],
     [("cat", 2, (0.5, 0.55))]),
    ("other_class_within_half_the_radius_is_the_same_object",
     FRAME, [[point("cat", (0.5, 0.5))], [point("cat", (0.5, 0.5))], [point("dog", (0.51, 0.5))]],
     [("cat", 2, (0.5 + 0.01 / 3, 0.5))]),
    ("other_class_beyond_half_the_radius_is_another_object",
     FRAME, [[point("cat", (0.5, 0.5))], [point("dog", (0.52, 0.5))]],
     [("cat", 1, (0.5, 0.5)), ("dog", 1, (0.52, 0.5))]),
    ("failed_answer_proposes_nothing",
     FRAME, [None, [point("cat", (0.5, 0.5))], [point("cat", (0.5, 0.5))]],
     [("cat", 2, (0.5, 0.5))]),
]


@pytest.mark.parametrize("frame_size, answers, expected", [c[1:] for c in POINT_CASES],
                         ids=[c[0] for c in POINT_CASES])
def test_points_are_clustered_by_distance_and_averaged(frame_size, answers, expected):
    values = [None if labels is None else points(*labels) for labels in answers]

    fused = fuse_values(values, len(values), frame_size=frame_size)

    assert isinstance(fused, fo.Keypoints)
    assert summary(fused) == [(label, votes, len(values)) for label, votes, _ in expected]
    for keypoint, (_, _, xy) in zip(fused.keypoints, expected):
        assert keypoint.points[0] == pytest.approx(xy, abs=1e-12)
    assert [k.index for k in fused.keypoints] == list(range(1, len(expected) + 1))


def test_a_fused_point_gets_its_confidence_as_a_list_and_agreement_from_its_distances():
    values = [points(point("cat", (0.5, 0.5), 0.8)), points(point("cat", (0.52, 0.5), 0.8))]

    (cat,) = fuse_values(values, 2, frame_size=FRAME).keypoints

    assert cat.agreement == pytest.approx(math.exp(-2 * (0.01 / 0.03) ** 2), abs=1e-6)
    assert cat.confidence == [pytest.approx(cat.agreement * 0.8)]


# classifications

SINGLE_LABEL_CASES = [
    # (id, answers, expected (label, votes, confidence) or None)
    ("majority", [single("cat"), single("cat"), single("dog")], ("cat", 2, 2 / 3)),
    ("failed_answers_propose_nothing", [single("dog"), None, None], ("dog", 1, 1 / 3)),
    ("tie_goes_to_the_surer_class", [single("dog", 0.9), single("cat", 0.5)], ("dog", 1, 0.5 * 0.9)),
    ("tie_without_confidences_goes_to_the_first_name", [single("dog"), single("cat")], ("cat", 1, 0.5)),
    ("three_way_tie", [single("dog"), single("bird"), single("cat")], ("bird", 1, 1 / 3)),
    ("no_answer_named_a_class", [None, None], None),
]


@pytest.mark.parametrize("answers, expected", [c[1:] for c in SINGLE_LABEL_CASES],
                         ids=[c[0] for c in SINGLE_LABEL_CASES])
def test_a_single_label_takes_the_majority_class(answers, expected):
    fused = fuse_values(answers, len(answers), frame_size=(0, 0))

    if expected is None:
        assert fused is None
        return
    label, votes, confidence = expected
    assert isinstance(fused, fo.Classification)
    assert (fused.label, fused.votes, fused.answers, fused.agreement) == (label, votes, len(answers), 1.0)
    assert fused.confidence == pytest.approx(confidence)
    assert (fused.gemini_run, fused.review) == ("run1", "unreviewed")


MULTI_LABEL_CASES = [
    # (id, answers, expected [(label, votes)])
    ("kept_when_most_answers_gave_it", [multi("cat", "dog"), multi("cat"), multi("cat", "bird")], [("cat", 3)]),
    ("two_of_three", [multi("cat", "dog"), multi("dog", "cat"), multi()], [("cat", 2), ("dog", 2)]),
    ("half_is_not_a_majority", [multi("cat", "dog"), multi("cat"), multi("cat", "dog"), multi("cat")],
     [("cat", 4)]),
    ("failed_answers_propose_nothing", [multi("cat"), None, None], []),
    ("an_answer_naming_a_class_twice_votes_once", [multi("cat", "cat"), multi("dog"), multi("dog")],
     [("dog", 2)]),
]


@pytest.mark.parametrize("answers, expected", [c[1:] for c in MULTI_LABEL_CASES],
                         ids=[c[0] for c in MULTI_LABEL_CASES])
def test_multi_label_keeps_each_class_a_majority_gave(answers, expected):
    fused = fuse_values(answers, len(answers), frame_size=(0, 0))

    assert isinstance(fused, fo.Classifications)
    assert summary(fused) == [(label, votes, len(answers)) for label, votes in expected]


# segmentation

SEGMENT_FRAME = (20, 20)


def frame_mask(rows, columns):
    mask = np.zeros(SEGMENT_FRAME[::-1], dtype=bool)
    mask[rows, columns] = True
    return mask


AGREED = frame_mask(slice(4, 12), slice(4, 14)) & ~frame_mask(slice(4, 7), slice(4, 7))  # a notched block
SHIFTED = np.roll(AGREED, 2, axis=1)
TALLER = frame_mask(slice(3, 13), slice(4, 14))


def segment(label, on_frame, confidence=None):
    """A detection whose instance mask is ``on_frame`` cropped to its extent."""
    rows, columns = np.flatnonzero(on_frame.any(axis=1)), np.flatnonzero(on_frame.any(axis=0))
    width, height = SEGMENT_FRAME
    bounding_box = [columns[0] / width, rows[0] / height,
                    (columns[-1] + 1 - columns[0]) / width, (rows[-1] + 1 - rows[0]) / height]
    mask = on_frame[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1]
    return fo.Detection(label=label, bounding_box=bounding_box, mask=mask, confidence=confidence, **PROVENANCE)


SEGMENT_CASES = [
    # (id, answers, expected [(label, votes, fused mask on the frame)])
    ("two_of_three_agree", [[segment("cat", AGREED)], [segment("cat", AGREED)], [segment("cat", SHIFTED)]],
     [("cat", 3, AGREED)]),
    ("pixels_most_members_have", [[segment("cat", AGREED)], [segment("cat", TALLER)], [segment("cat", SHIFTED)]],
     [("cat", 3, (AGREED.astype(int) + TALLER + SHIFTED) >= 2)]),
    ("weighted_by_self_confidence", [[segment("cat", AGREED, 0.9)], [segment("cat", SHIFTED, 0.3)]],
     [("cat", 2, AGREED)]),
    ("failed_answer_proposes_nothing", [[segment("cat", AGREED)], None, [segment("cat", AGREED)]],
     [("cat", 2, AGREED)]),
    ("one_answer_gives_its_mask_back", [[segment("cat", AGREED)]], [("cat", 1, AGREED)]),
    ("far_masks_are_two_objects",
     [[segment("cat", frame_mask(slice(0, 4), slice(0, 4)))], [segment("cat", frame_mask(slice(15, 19), slice(15, 19)))]],
     [("cat", 1, frame_mask(slice(0, 4), slice(0, 4))), ("cat", 1, frame_mask(slice(15, 19), slice(15, 19)))]),
]


@pytest.mark.parametrize("answers, expected", [c[1:] for c in SEGMENT_CASES], ids=[c[0] for c in SEGMENT_CASES])
def test_masks_are_fused_by_a_per_pixel_vote(answers, expected):
    values = [None if labels is None else boxes(*labels) for labels in answers]

    detections, polylines = fuse_segments(values, len(values), frame_size=SEGMENT_FRAME)

    assert summary(detections) == [(label, votes, len(values)) for label, votes, _ in expected]
    for detection, (_, _, on_frame) in zip(detections.detections, expected):
        drawn = instance_mask_to_frame(detection.mask, detection.bounding_box, SEGMENT_FRAME)
        assert np.array_equal(drawn, on_frame)
        assert detection.mask.shape == (round(detection.bounding_box[3] * 20), round(detection.bounding_box[2] * 20))
    assert summary(polylines) == summary(detections)


def test_an_agreed_mask_scores_its_agreement_by_mask_iou():
    values = [boxes(segment("cat", AGREED)), boxes(segment("cat", AGREED)), boxes(segment("cat", SHIFTED))]

    detections, _ = fuse_segments(values, 3, frame_size=SEGMENT_FRAME)

    (cat,) = detections.detections
    shifted_iou = (AGREED & SHIFTED).sum() / (AGREED | SHIFTED).sum()
    assert cat.agreement == pytest.approx((2 + shifted_iou) / 3, abs=1e-6)
    assert cat.confidence == pytest.approx(cat.agreement)


def test_each_fused_outline_is_traced_from_its_mask_and_linked_to_its_detection():
    values = [boxes(segment("cat", AGREED), segment("dog", frame_mask(slice(15, 19), slice(15, 19)))),
              boxes(segment("cat", SHIFTED))]

    detections, polylines = fuse_segments(values, 2, frame_size=SEGMENT_FRAME)

    assert len(detections.detections) == len(polylines.polylines) == 2
    for detection, polyline in zip(detections.detections, polylines.polylines):
        assert polyline.instance.id == detection.instance.id
        assert polyline.index == detection.index
        assert (polyline.label, polyline.votes, polyline.confidence) == (
            detection.label, detection.votes, detection.confidence)
        assert polyline.closed and polyline.filled
        traced = instance_mask_to_polygons(detection.mask, detection.bounding_box)
        assert [[tuple(xy) for xy in shape] for shape in polyline.points] == traced
    assert [d.index for d in detections.detections] == [1, 2]
    assert len({d.instance.id for d in detections.detections}) == 2


# mistakes a caller can make


@pytest.mark.parametrize("call, message", [
    (lambda: fuse_values([boxes(box("cat", A)), points(point("cat", (0.5, 0.5)))], 2, frame_size=FRAME),
     "different types"),
    (lambda: fuse_values([boxes(box("cat", A))] * 3, 2, frame_size=FRAME), "3 values for 2 answers"),
    (lambda: fuse_values([boxes(segment("cat", AGREED))], 1, frame_size=FRAME), "fuse_segments"),
    (lambda: fuse_values([fo.Polylines()], 1, frame_size=FRAME), "cannot fuse Polylines"),
    (lambda: fuse_segments([boxes(segment("cat", AGREED))], 1, frame_size=(0, 0)), "image's size"),
])
def test_values_that_cannot_be_fused_are_refused_with_the_reason(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_no_value_fuses_to_nothing():
    assert fuse_values([None, None], 2, frame_size=FRAME) is None


# the answers' order does not matter

PERMUTED = {
    "boxes": [boxes(box("cat", A, 0.9), box("dog", ELSEWHERE, 0.4)), boxes(box("cat", A_RIGHT_2, 0.7)),
              boxes(box("dog", A_RIGHT_4, 0.5), box("cat", [0.15, 0.1, 0.2, 0.2])), None],
    "points": [points(point("cat", (0.5, 0.5)), point("dog", (0.51, 0.5))), points(point("cat", (0.52, 0.5))),
               points(point("dog", (0.505, 0.5)), point("cat", (0.9, 0.1))), None],
    "single_label": [single("cat"), single("dog"), single("dog"), single("cat")],
    "multi_label": [multi("cat", "dog"), multi("dog"), multi("bird", "cat"), None],
}


@pytest.mark.parametrize("kind", sorted(PERMUTED))
def test_permuting_the_answers_gives_the_same_fused_labels(kind):
    answers = PERMUTED[kind]
    expected = content(fuse_values(answers, len(answers), frame_size=FRAME))

    for order in itertools.permutations(answers):
        assert content(fuse_values(list(order), len(answers), frame_size=FRAME)) == expected


def test_permuting_the_answers_gives_the_same_fused_masks():
    answers = [boxes(segment("cat", AGREED, 0.8), segment("dog", frame_mask(slice(15, 19), slice(15, 19)))),
               boxes(segment("cat", SHIFTED, 0.6)), boxes(segment("cat", TALLER, 0.7)), None]
    expected = [content(v) for v in fuse_segments(answers, 4, frame_size=SEGMENT_FRAME)]

    for order in itertools.permutations(answers):
        assert [content(v) for v in fuse_segments(list(order), 4, frame_size=SEGMENT_FRAME)] == expected

