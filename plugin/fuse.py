"""N answers for one image → one set of labels whose confidence comes from their agreement.

A consensus run asks Gemini N times per image (``consensus=N``); each answer is
read into labels by its task (:mod:`gemini_annotate.tasks`) and this module
fuses the N values of the label field into one:

- objects (boxes, masks, points) are clustered across answers, at most one
  object of each answer per cluster, and each cluster becomes one label placed
  where its members agree: weighted box fusion for boxes, a per-pixel vote for
  masks, the weighted mean for points;
- a cluster's class is its members' majority class; members that named it
  otherwise still help place it, but do not vote for it;
- a single-label classification takes the class most answers gave; a
  multi-label one keeps each class more than half of the answers gave.

Every fused label carries the signals its confidence is made of (``votes``,
``answers``, ``agreement``, ``self_confidence``; names in
:mod:`gemini_annotate.vocabulary`) and ``confidence`` =
:func:`combined_confidence` of them. Objects few answers proposed are kept,
with their few votes and low confidence: a reviewer or an auto-accept
threshold decides, and dropping them here would hide from both the objects
Gemini finds only some of the time (small, occluded, unusual ones).

The result depends on the answers, not on their order, and on nothing random
(label ids and ``fo.Instance`` ids aside). No database, no SDK.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional, Sequence

import fiftyone.core.labels as fol
import numpy as np

from .boxes import PixelRegion
from .label_factory import make_label
from .labels import labels_in
from .masks import POLYGON_TOLERANCE, instance_mask_to_frame, instance_mask_to_polygons, mask_size_for
from .vocabulary import (
    AGREEMENT_ATTRIBUTE,
    ANSWERS_ATTRIBUTE,
    MODEL_ATTRIBUTE,
    REVIEW_ATTRIBUTE,
    RUN_ATTRIBUTE,
    SELF_CONFIDENCE_ATTRIBUTE,
    UNREVIEWED,
    VOTES_ATTRIBUTE,
)

SAME_OBJECT_IOU = 0.5
"""Boxes (or masks) of one class from two answers are one object from this IoU
up: the usual threshold for matching detections."""

RELABELLED_OBJECT_IOU = 0.7
"""Boxes (or masks) of different classes are one object named two ways only
from this IoU up: a rider and its horse overlap by 0.5 and stay two objects."""

POINT_RADIUS = 0.03
"""Points of one class from two answers are one object when closer than this
share of the image's longer side; points of different classes, half of it."""

MASK_VOTE = 0.5
"""A pixel is in a fused mask when members holding this share of the weight have it."""


# the combined score


def combined_confidence(votes: int, answers: int, agreement: float,
                        self_confidence: Optional[float] = None) -> Optional[float]:
    """A fused label's confidence: vote share × agreement × Gemini's own confidence.

    Each factor is a 0–1 chance-like number and a label must do well on all
    three: a hallucination is usually proposed by one answer only (a low vote
    share); a small object the answers place differently each time has a low
    agreement, and its fused geometry is the least trustworthy; Gemini's own
    confidence, when the run asked for it, separates what is left. A missing
    self-confidence counts as 1, so runs without it rank by agreement alone.
    A single answer measures no agreement: with neither several answers nor a
    self-confidence there is no score (``None``), as for a run without consensus.

    Args:
        votes: k, the answers that proposed the label.
        answers: N, the answers the image got.
        agreement: how well the proposing answers agree on where it is (0–1).
        self_confidence: the mean of Gemini's own confidences for it, if any.

    >>> combined_confidence(2, 4, 0.8)
    0.4
    >>> combined_confidence(3, 3, 1.0, self_confidence=0.9)
    0.9
    >>> combined_confidence(1, 1, 1.0) is None
    True
    """
    if answers < 2 and self_confidence is None:
        return None
    return votes / answers * agreement * (1.0 if self_confidence is None else self_confidence)


# the two entries


def fuse_values(values: Sequence[Any], answers: int, *, frame_size: tuple[int, int]) -> Any:
    """Fuses the label-field values of one image's N answers into one value of the same type.

    Args:
        values: one value per answer, in any order: ``fo.Detections`` (boxes),
            ``fo.Keypoints``, ``fo.Classification`` or ``fo.Classifications``;
            ``None`` for an answer that failed, which counts as an answer that
            proposed nothing.
        answers: N, the answers the image got (at least ``len(values)``;
            answers without a value in ``values`` proposed nothing).
        frame_size: ``(width, height)`` of the image in pixels, in which
            distances between points are measured (``(0, 0)``: relative units).

    Returns:
        the fused value; ``None`` when every value is ``None`` (or, for a
        single-label field, when no answer named a class).

    Raises:
        ValueError: values of different or unsupported types, detections with
            masks (:func:`fuse_segments` fuses those), or fewer answers than values.

    >>> cats = [fo.Classification(label="cat"), fo.Classification(label="cat"), None]
    >>> fuse_values(cats, 3, frame_size=(0, 0)).votes
    2
    """
    kind = _value_type(values, answers)
    proposals = _proposals(values)
    if kind is None:
        return None
    if kind is fol.Detections:
        if any(p.label.mask is not None for p in proposals):
            raise ValueError("these detections carry instance masks: fuse them with fuse_segments, "
                             "which fuses the masks and their outlines too")
        return fol.Detections(detections=fuse_boxes(proposals, answers))
    if kind is fol.Keypoints:
        return fol.Keypoints(keypoints=fuse_points(proposals, answers, frame_size))
    if kind is fol.Classifications:
        return fol.Classifications(classifications=fuse_multi_label(proposals, answers))
    if kind is fol.Classification:
        return fuse_single_label(proposals, answers)
    raise ValueError(f"cannot fuse {kind.__name__} values: fusion takes fo.Detections, fo.Keypoints, "
                     "fo.Classification or fo.Classifications (segmentation: fuse_segments)")


def fuse_segments(values: Sequence[Optional[fol.Detections]], answers: int, *,
                  frame_size: tuple[int, int]) -> tuple[fol.Detections, fol.Polylines]:
    """Fuses one image's N segmentation answers into linked instance masks and outlines.

    Objects are clustered by mask IoU; each cluster's mask is a per-pixel vote
    of its members (:data:`MASK_VOTE` of their weight), its box the fused
    mask's extent, and its outline is traced again from the fused mask. The
    detection and its outline share an ``fo.Instance`` and ``index``, as
    :func:`gemini_annotate.labels.items_to_segments` links them.

    Args:
        values: each answer's ``fo.Detections`` with instance masks (``None``:
            an answer that failed, which proposed nothing).
        answers: N, the answers the image got (at least ``len(values)``).
        frame_size: ``(width, height)`` of the image in pixels; masks are voted
            on its pixels.

    Returns:
        the fused detections and their outlines, in the same order.

    Raises:
        ValueError: the frame size is unknown, or the values are not detections.
    """
    width, height = frame_size
    if width <= 0 or height <= 0:
        raise ValueError(f"fusing masks needs the image's size in pixels, got {frame_size}")
    kind = _value_type(values, answers)
    if kind not in (None, fol.Detections):
        raise ValueError(f"fuse_segments takes fo.Detections with masks, got {kind.__name__}")
    proposals = _proposals(values)
    painted = [paint_detection(p.label, frame_size) for p in proposals]
    keys = [(*object_key(p.label, p.label.bounding_box), painted[i].region, painted[i].pixels.tobytes())
            for i, p in enumerate(proposals)]
    # objects of one answer are never one object: their masks need no comparing
    similarity = _pairwise(len(proposals), lambda i, j: mask_iou(painted[i], painted[j])
                           if proposals[i].answer != proposals[j].answer else 0.0)
    linkage = Linkage(same_class=SAME_OBJECT_IOU, other_class=RELABELLED_OBJECT_IOU)

    fused = []
    for members in _clusters(proposals, keys, similarity, linkage):
        label, voters = majority_class([proposals[m].label for m in members])
        weights = member_weights([proposals[m].label for m in members])
        bounding_box, mask, agreement = vote_masks([painted[m] for m in members], weights, frame_size)
        fused.append(dict(label=label, bounding_box=bounding_box, mask=mask,
                          **fused_attributes(voters, answers, agreement)))
    detections, polylines = [], []
    for index, fields in enumerate(sorted(fused, key=_output_order), start=1):
        shared = {name: value for name, value in fields.items() if name not in ("bounding_box", "mask")}
        shared.update(index=index, instance=fol.Instance())
        detections.append(fol.Detection(bounding_box=fields["bounding_box"], mask=fields["mask"], **shared))
        outline = instance_mask_to_polygons(fields["mask"], fields["bounding_box"], POLYGON_TOLERANCE)
        polylines.append(fol.Polyline(points=outline, closed=True, filled=True, **shared))
    return fol.Detections(detections=detections), fol.Polylines(polylines=polylines)


# the answers' labels


class Proposal(NamedTuple):
    """One label one answer proposed, with the answer's number."""

    answer: int
    label: fol.Label


def _value_type(values: Sequence[Any], answers: int) -> Optional[type]:
    """The type shared by the non-``None`` values (``None`` if there are none), checked."""
    if answers < 1 or len(values) > answers:
        raise ValueError(f"{len(values)} values for {answers} answers: give one value per answer "
                         "(None for a failed one)")
    kinds = {type(value) for value in values if value is not None}
    if len(kinds) > 1:
        names = ", ".join(sorted(kind.__name__ for kind in kinds))
        raise ValueError(f"the answers hold values of different types ({names}): fuse one label field at a time")
    return next(iter(kinds), None)


def _proposals(values: Sequence[Any]) -> list[Proposal]:
    return [Proposal(answer, label) for answer, value in enumerate(values) for label in labels_in(value)]


def self_confidence_of(label: fol.Label) -> Optional[float]:
    """The confidence Gemini gave a label itself (a keypoint's: the mean of its points'), or ``None``."""
    value = label.confidence
    if isinstance(value, (list, tuple)):
        known = [v for v in value if v is not None]
        return math.fsum(known) / len(known) if known else None
    return value


def member_weights(labels: Sequence[fol.Label]) -> np.ndarray:
    """How much each member counts when placing a fused label: its self-confidence
    when every member has a positive one (as weighted box fusion does), else the same."""
    confidences = [self_confidence_of(label) for label in labels]
    if all(c is not None and c > 0 for c in confidences):
        return np.asarray(confidences, dtype=np.float64)
    return np.ones(len(labels))


def object_key(label: fol.Label, geometry: Sequence[float]) -> tuple:
    """A label's content as a sortable key: what breaks ties without looking at answer order."""
    confidence = self_confidence_of(label)
    return (label.label or "", tuple(float(v) for v in geometry), -1.0 if confidence is None else confidence)


# classes


def majority_class(labels: Sequence[fol.Label]) -> tuple[str, list[fol.Label]]:
    """The class most labels name, and the labels naming it (its voters).

    Ties go to the class with the larger sum of self-confidences, then to the
    alphabetically first: an arbitrary rule, but one that ignores the order of
    the answers; the tie still shows in ``votes`` and ``confidence``.

    >>> majority_class([fo.Detection(label="dog"), fo.Detection(label="cat")])[0]
    'cat'
    """
    voters: dict[str, list[fol.Label]] = {}
    for label in labels:
        voters.setdefault(label.label, []).append(label)

    def rank(name: str) -> tuple:
        confidences = [self_confidence_of(v) for v in voters[name]]
        return (-len(voters[name]), -math.fsum(c for c in confidences if c is not None), name or "")

    winner = min(voters, key=rank)
    return winner, voters[winner]


def fuse_single_label(proposals: Sequence[Proposal], answers: int) -> Optional[fol.Classification]:
    """The class most answers gave (see :func:`majority_class`), with its votes; ``None`` if none gave one."""
    if not proposals:
        return None
    label, voters = majority_class([p.label for p in proposals])
    return fol.Classification(label=label, **fused_attributes(voters, answers, 1.0))


def fuse_multi_label(proposals: Sequence[Proposal], answers: int) -> list[fol.Classification]:
    """Each class more than half of the answers gave, with its votes.

    Unlike objects, a class few answers gave is dropped: each class of a
    multi-label answer is a yes/no question about the whole image, decided by
    majority as a single-label class is.
    """
    by_class: dict[str, dict[int, fol.Label]] = {}
    for proposal in proposals:
        by_class.setdefault(proposal.label.label, {}).setdefault(proposal.answer, proposal.label)
    kept = [fol.Classification(label=name, **fused_attributes(list(voters.values()), answers, 1.0))
            for name, voters in by_class.items() if 2 * len(voters) > answers]
    return sorted(kept, key=lambda c: (-c[VOTES_ATTRIBUTE], -(c.confidence or 0.0), c.label or ""))


# the signals every fused label carries


def fused_attributes(voters: Sequence[fol.Label], answers: int, agreement: float) -> dict[str, Any]:
    """A fused label's signals, combined confidence and provenance, from the labels that voted for it."""
    confidences = [c for c in (self_confidence_of(v) for v in voters) if c is not None]
    self_confidence = math.fsum(sorted(confidences)) / len(confidences) if confidences else None
    attributes: dict[str, Any] = {
        VOTES_ATTRIBUTE: len(voters),
        ANSWERS_ATTRIBUTE: answers,
        AGREEMENT_ATTRIBUTE: agreement,
        "confidence": combined_confidence(len(voters), answers, agreement, self_confidence),
    }
    if self_confidence is not None:
        attributes[SELF_CONFIDENCE_ATTRIBUTE] = self_confidence
    for name in (MODEL_ATTRIBUTE, RUN_ATTRIBUTE):
        present = sorted(str(v[name]) for v in voters if v.has_field(name) and v[name] is not None)
        if present:
            # the answers of one run share them; should they differ, the most common wins
            attributes[name] = Counter(present).most_common(1)[0][0]
    attributes[REVIEW_ATTRIBUTE] = UNREVIEWED
    return attributes


def _agreement(similarities: Sequence[float]) -> float:
    """The members' mean similarity to their fused label, to 6 decimals: a
    member identical to it scores 1 exactly, not 1 less a rounding error, so
    equal cases get equal confidences."""
    return round(math.fsum(similarities) / len(similarities), 6)


def _output_order(fields: dict[str, Any]) -> tuple:
    """Fused labels most confident first, then by content: an order free of the answers' order."""
    geometry = fields.get("bounding_box") or fields.get("points") or ()
    return (-(fields["confidence"] or 0.0), -fields[VOTES_ATTRIBUTE], fields["label"] or "",
            tuple(float(v) for v in np.ravel(geometry)))


# clustering objects across answers


class Linkage(NamedTuple):
    """The similarity from which two objects are one: of the same class, and of different classes."""

    same_class: float
    other_class: float


def cluster_objects(answers: Sequence[int], classes: Sequence[str], keys: Sequence[tuple],
                    similarity: np.ndarray, linkage: Linkage) -> list[list[int]]:
    """Groups objects of several answers into clusters, at most one object of each answer per cluster.

    Pairs of objects from different answers that are similar enough (same
    class from ``linkage.same_class`` up, different classes from
    ``linkage.other_class`` up) are taken same-class first, most similar
    first, ties by content; each merges its two clusters when they share no
    answer and are similar on average (average linkage, from
    ``linkage.same_class`` up), so a chain of slightly shifted boxes does not
    become one object. Answer order is used for nothing but ties between
    identical objects.

    Args:
        answers: each object's answer.
        classes: each object's class.
        keys: each object's content as a sortable key (:func:`object_key`).
        similarity: the symmetric object × object similarity (IoU...).
        linkage: the thresholds.

    Returns:
        the clusters, as lists of object numbers.

    >>> cluster_objects([0, 1, 1], ["cat"] * 3, [(0,), (1,), (2,)],
    ...                 np.array([[1, .9, .6], [.9, 1, 0], [.6, 0, 1]]), Linkage(.5, .7))
    [[0, 1], [2]]
    """
    count = len(answers)
    pairs = []
    for i, j in zip(*np.triu_indices(count, k=1)):
        same = classes[i] == classes[j]
        if answers[i] != answers[j] and similarity[i, j] >= (linkage.same_class if same else linkage.other_class):
            first, second = sorted((i, j), key=lambda m: (keys[m], answers[m]))
            pairs.append(((not same, -similarity[i, j], keys[first], keys[second],
                           answers[first], answers[second]), first, second))
    pairs.sort(key=lambda pair: pair[0])

    cluster_of = list(range(count))
    members = {i: [i] for i in range(count)}
    for _, i, j in pairs:
        a, b = cluster_of[i], cluster_of[j]
        if a == b or {answers[m] for m in members[a]} & {answers[m] for m in members[b]}:
            continue
        cross = sorted(float(similarity[m, n]) for m in members[a] for n in members[b])
        if math.fsum(cross) / len(cross) < linkage.same_class:
            continue
        for m in members[b]:
            cluster_of[m] = a
        members[a] += members.pop(b)
    return [sorted(cluster) for cluster in members.values()]


def _pairwise(count: int, measure: Callable[[int, int], float]) -> np.ndarray:
    similarity = np.eye(count)
    for i, j in zip(*np.triu_indices(count, k=1)):
        similarity[i, j] = similarity[j, i] = measure(i, j)
    return similarity


def _clusters(proposals: Sequence[Proposal], keys: Sequence[tuple], similarity: np.ndarray,
              linkage: Linkage) -> list[list[int]]:
    """The clusters of ``proposals``, each's members in content order (sums then do not depend on the answers' order)."""
    clusters = cluster_objects([p.answer for p in proposals], [p.label.label for p in proposals],
                               keys, similarity, linkage)
    return [sorted(cluster, key=lambda m: (keys[m], proposals[m].answer)) for cluster in clusters]


# boxes


def box_iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """The IoU of every pair of relative ``[x, y, w, h]`` boxes (an ``n × n`` array).

    >>> round(float(box_iou_matrix(np.array([[0, 0, .2, .2], [.1, 0, .2, .2]]))[0, 1]), 3)
    0.333
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    width = np.clip(np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1), 0, None)
    height = np.clip(np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1), 0, None)
    inter = width * height
    area = boxes[:, 2] * boxes[:, 3]
    union = area[:, None] + area - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def weighted_box(boxes: np.ndarray, weights: np.ndarray) -> list[float]:
    """Weighted box fusion of relative ``[x, y, w, h]`` boxes: the weighted mean of their corners.

    The mean of ``[x, y, w, h]`` is the mean of the corners (both are linear),
    and leaves a coordinate all members share as it is.

    >>> weighted_box(np.array([[0, 0, .5, .5], [.25, .25, .5, .5]]), np.array([1.0, 3.0]))
    [0.1875, 0.1875, 0.5, 0.5]
    """
    return (weights @ np.asarray(boxes, dtype=np.float64) / weights.sum()).tolist()


def fuse_boxes(proposals: Sequence[Proposal], answers: int) -> list[fol.Detection]:
    """Clusters boxes by IoU and fuses each cluster into one detection.

    The box is :func:`weighted_box` of all members (weights:
    :func:`member_weights`) and ``agreement`` the members' mean IoU to it.
    The weighted box fusion of Solovyev et al. is written here rather than
    taken from ``ensemble-boxes``: it is a few lines, and that package's
    greedy clustering depends on the order of the boxes, which fusion must not.
    """
    boxes = np.asarray([p.label.bounding_box for p in proposals], dtype=np.float64).reshape(-1, 4)
    keys = [object_key(p.label, p.label.bounding_box) for p in proposals]
    linkage = Linkage(same_class=SAME_OBJECT_IOU, other_class=RELABELLED_OBJECT_IOU)
    fused = []
    for members in _clusters(proposals, keys, box_iou_matrix(boxes), linkage):
        labels = [proposals[m].label for m in members]
        label, voters = majority_class(labels)
        box = weighted_box(boxes[members], member_weights(labels))
        overlaps = box_iou_matrix(np.vstack([box, boxes[members]]))[0, 1:]
        agreement = _agreement(overlaps.tolist())
        fused.append(dict(label=label, bounding_box=box, **fused_attributes(voters, answers, agreement)))
    return [make_label(fol.Detection, **fields) for fields in sorted(fused, key=_output_order)]


# points


def point_similarity(a: np.ndarray, b: np.ndarray, frame_size: tuple[int, int]) -> float:
    """How close two relative ``(x, y)`` points are, 0–1: ``exp(-2 (d / POINT_RADIUS)²)``.

    ``d`` is measured in pixels over the image's longer side (relative units
    when the size is unknown), so a point is as near across as down a wide
    image. Like COCO's keypoint similarity, it is 1 at the same place, and
    ``exp(-2)`` at :data:`POINT_RADIUS`, ``exp(-0.5)`` at half of it.

    >>> round(point_similarity(np.array([0.5, 0.5]), np.array([0.53, 0.5]), (100, 100)), 3)
    0.135
    """
    width, height = frame_size if min(frame_size) > 0 else (1, 1)
    dx, dy = (a[0] - b[0]) * width, (a[1] - b[1]) * height
    distance = math.hypot(dx, dy) / max(width, height)
    return math.exp(-2 * (distance / POINT_RADIUS) ** 2)


def keypoint_position(keypoint: fol.Keypoint) -> np.ndarray:
    """The one point of a keypoint as the points task writes it (``[x, y]``)."""
    if len(keypoint.points or []) != 1:
        raise ValueError(f"a fused keypoint holds one point (one per object, as the points task "
                         f"writes them); {keypoint.label!r} has {len(keypoint.points or [])}")
    return np.asarray(keypoint.points[0], dtype=np.float64)


def fuse_points(proposals: Sequence[Proposal], answers: int, frame_size: tuple[int, int]) -> list[fol.Keypoint]:
    """Clusters points by :func:`point_similarity` and fuses each cluster into one keypoint.

    Points of one class are one object within :data:`POINT_RADIUS`, of
    different classes within half of it; the point is the weighted mean of the
    members and ``agreement`` their mean :func:`point_similarity` to it.
    """
    points = [keypoint_position(p.label) for p in proposals]
    keys = [object_key(p.label, point) for p, point in zip(proposals, points)]
    similarity = _pairwise(len(points), lambda i, j: point_similarity(points[i], points[j], frame_size))
    linkage = Linkage(same_class=math.exp(-2), other_class=math.exp(-0.5))
    fused = []
    for members in _clusters(proposals, keys, similarity, linkage):
        labels = [proposals[m].label for m in members]
        label, voters = majority_class(labels)
        weights = member_weights(labels)
        point = (weights @ np.vstack([points[m] for m in members]) / weights.sum()).tolist()
        agreement = _agreement([point_similarity(np.asarray(point), points[m], frame_size) for m in members])
        fused.append(dict(label=label, points=[tuple(point)], **fused_attributes(voters, answers, agreement)))
    keypoints = []
    for index, fields in enumerate(sorted(fused, key=_output_order), start=1):
        confidence = fields.pop("confidence")
        keypoints.append(fol.Keypoint(index=index, confidence=None if confidence is None else [confidence],
                                      **fields))
    return keypoints


# masks


@dataclass(frozen=True)
class Painted:
    """An instance mask drawn on the frame pixels of its box (as the App draws it)."""

    region: PixelRegion
    pixels: np.ndarray


def pixel_region(bounding_box: Sequence[float], frame_size: tuple[int, int]) -> PixelRegion:
    """The frame pixels a relative box touches, at least one, inside the frame.

    >>> pixel_region([0.25, 0.5, 0.5, 0.25], (8, 4))
    PixelRegion(left=2, top=2, right=6, bottom=3)
    """
    width, height = frame_size
    x, y, w, h = bounding_box
    left = min(max(math.floor(x * width), 0), width - 1)
    top = min(max(math.floor(y * height), 0), height - 1)
    right = min(max(math.ceil((x + w) * width), left + 1), width)
    bottom = min(max(math.ceil((y + h) * height), top + 1), height)
    return PixelRegion(left, top, right, bottom)


def paint_detection(detection: fol.Detection, frame_size: tuple[int, int]) -> Painted:
    """A detection's mask on the frame pixels of its box; a detection without a mask fills its box."""
    width, height = frame_size
    region = pixel_region(detection.bounding_box, frame_size)
    mask = detection.mask if detection.mask is not None else np.ones((1, 1), dtype=bool)
    x, y, w, h = detection.bounding_box
    # the box in the region's own relative units: each region pixel samples the
    # mask pixel under its centre, exactly as on the whole frame
    in_region = [(x * width - region.left) / region.width, (y * height - region.top) / region.height,
                 w * width / region.width, h * height / region.height]
    return Painted(region, instance_mask_to_frame(mask, in_region, (region.width, region.height)))


def place(painted: Painted, region: PixelRegion) -> np.ndarray:
    """A painted mask's pixels on a larger ``region`` holding its own."""
    canvas = np.zeros((region.height, region.width), dtype=bool)
    top, left = painted.region.top - region.top, painted.region.left - region.left
    canvas[top:top + painted.region.height, left:left + painted.region.width] = painted.pixels
    return canvas


def mask_iou(a: Painted, b: Painted) -> float:
    """The IoU of two painted masks on the frame."""
    left, top = max(a.region.left, b.region.left), max(a.region.top, b.region.top)
    right, bottom = min(a.region.right, b.region.right), min(a.region.bottom, b.region.bottom)
    if right <= left or bottom <= top:
        return 0.0
    inter = int(np.count_nonzero(
        a.pixels[top - a.region.top:bottom - a.region.top, left - a.region.left:right - a.region.left]
        & b.pixels[top - b.region.top:bottom - b.region.top, left - b.region.left:right - b.region.left]))
    union = int(np.count_nonzero(a.pixels)) + int(np.count_nonzero(b.pixels)) - inter
    return inter / union if union else 0.0


def vote_masks(members: Sequence[Painted], weights: np.ndarray,
               frame_size: tuple[int, int]) -> tuple[list[float], np.ndarray, float]:
    """The per-pixel vote of a cluster's masks: its box, instance mask and the members' mean IoU to it.

    A pixel is in when members holding :data:`MASK_VOTE` of the weight have
    it; should no pixel reach that (members that barely overlap), the pixels
    with the most weight are.

    Returns:
        the relative box around the fused mask, the mask over that box (at its
        pixel size, up to :data:`gemini_annotate.masks.MAX_MASK_SIDE`), and the agreement.
    """
    width, height = frame_size
    region = PixelRegion(min(p.region.left for p in members), min(p.region.top for p in members),
                         max(p.region.right for p in members), max(p.region.bottom for p in members))
    placed = [place(p, region) for p in members]
    share = sum(w * mask for w, mask in zip(weights.tolist(), placed)) / weights.sum()
    # a hair below the vote share so that exactly half of equal weights counts
    fused = share >= min(MASK_VOTE, float(share.max())) - 1e-9
    ious = [np.count_nonzero(mask & fused) / np.count_nonzero(mask | fused) for mask in placed]
    rows, columns = np.flatnonzero(fused.any(axis=1)), np.flatnonzero(fused.any(axis=0))
    crop = fused[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1]
    box = PixelRegion(region.left + columns[0], region.top + rows[0],
                      region.left + columns[-1] + 1, region.top + rows[-1] + 1)
    bounding_box = [box.left / width, box.top / height, box.width / width, box.height / height]
    return bounding_box, _fit_mask(crop, box), _agreement(ious)


def _fit_mask(mask: np.ndarray, region: PixelRegion) -> np.ndarray:
    """A frame crop as a stored instance mask: as it is, or sampled down to :func:`mask_size_for`."""
    mask_width, mask_height = mask_size_for(region)
    if (mask_width, mask_height) == (region.width, region.height):
        return mask
    rows = ((np.arange(mask_height) + 0.5) * region.height / mask_height).astype(np.int64)
    columns = ((np.arange(mask_width) + 0.5) * region.width / mask_width).astype(np.int64)
    return mask[np.ix_(rows, columns)]
