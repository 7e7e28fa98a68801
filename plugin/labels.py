"""Parsed items → FiftyOne labels: ``fo.Detections``, linked masks and outlines, ``fo.Keypoints``.

Each builder reads the items (:mod:`gemini_annotate.items`), converts their
geometry (:mod:`gemini_annotate.boxes`, :mod:`gemini_annotate.masks`) and
writes the provenance a reviewer needs onto every label. Segmentation writes
both an instance mask on each ``fo.Detection`` (what
``evaluate_detections(..., use_masks=True)`` reads) and the outline as an
``fo.Polyline`` (what annotation tools edit), the two linked by a shared
``instance`` and ``index``. No database, no SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple, Optional

import fiftyone.core.labels as fol
import numpy as np

from .boxes import SCALE, Box2d, box_2d_to_relative, polygon_bounds
from .items import (
    ConversionReport,
    LabelPolicy,
    extra_attributes,
    item_box,
    item_mask,
    item_point,
    orient_polygon,
    read_box_2d,
    read_box_2d_extent,
    read_confidence,
    read_point,
    read_polygon,
    usable_items,
)
from .label_factory import make_label
from .masks import (
    DEFAULT_MASK_THRESHOLD,
    POLYGON_TOLERANCE,
    MaskError,
    decode_png_mask,
    instance_mask_to_polygons,
    png_mask_to_instance_mask,
    polygon_to_instance_mask,
)
from .vocabulary import CONFIDENCE_ATTRIBUTE, Provenance

LABEL_LISTS: dict[type, str] = {
    fol.Detections: "detections",
    fol.Polylines: "polylines",
    fol.Keypoints: "keypoints",
    fol.Classifications: "classifications",
}
"""The list types a run writes, each with the field holding its labels. Spelled
out with public names: FiftyOne's own marker of list types is private."""


def list_field_of(label_type: type) -> Optional[str]:
    """The field holding the labels of a list type (``"detections"``...), ``None`` for a single label."""
    return next((name for kind, name in LABEL_LISTS.items() if issubclass(label_type, kind)), None)


def labels_in(value: Any) -> list[fol.Label]:
    """The labels of a label field's value: the list of a ``Detections``-like
    value, the label itself, or none."""
    list_field = list_field_of(type(value))
    if list_field is not None:
        # the stored list, past mongoengine's descriptor: its first read walks every label
        # looking for database references to fetch (labels hold none), ~150 µs for five boxes
        return list(value._data.get(list_field) or [])
    if isinstance(value, fol.Label):
        return [value]
    return []


def field_value(label_type: type, labels: list[fol.Label]) -> Any:
    """The value of a field of ``label_type`` holding ``labels`` (the inverse of
    :func:`labels_in`); a single-label field keeps the last one."""
    list_field = list_field_of(label_type)
    if list_field is not None:
        return label_list(label_type, labels)
    return labels[-1] if labels else None


def label_list(label_type: type, labels: Iterable[fol.Label]) -> Any:
    """A list label (``fo.Detections``, ...) holding ``labels``, which were validated when built.

    ``fo.Detections(detections=labels)`` validates every label again: about
    60 µs per label. Made from the template of its shape
    (:func:`~gemini_annotate.label_factory.make_label`), it does not.

    >>> label_list(fol.Detections, [fol.Detection(label="cat")]).detections[0].label
    'cat'
    """
    return make_label(label_type, **{list_field_of(label_type): list(labels)})


def adopt_confidence(labels: Iterable[fol.Label], report: ConversionReport) -> None:
    """Makes the confidence a run asked Gemini for each label's ``confidence``.

    Conversion keeps an item's ``confidence`` as ``gemini_confidence`` (an
    unrequested number must not pass for a score); a run that asked for it
    moves it into ``confidence``, where FiftyOne ranks labels by it (a
    keypoint's is one per point). A label without a usable value keeps
    ``confidence`` empty and is counted.
    """
    for label in labels:
        raw = label[CONFIDENCE_ATTRIBUTE] if label.has_field(CONFIDENCE_ATTRIBUTE) else None
        value = read_confidence(raw)
        if value is None:
            report.lacking["a usable confidence"] += 1
            continue
        label.confidence = [value] * len(label.points) if isinstance(label, fol.Keypoint) else value
        label.clear_field(CONFIDENCE_ATTRIBUTE)


def items_to_detections(
    items: Iterable[dict],
    *,
    policy: LabelPolicy,
    provenance: Provenance,
) -> tuple[fol.Detections, ConversionReport]:
    """Converts parsed items with ``box_2d`` into ``fo.Detections``.

    Args:
        items: item dicts from :func:`gemini_annotate.parse.parse_items`.
        policy: how labels are matched to classes.
        provenance: model and run written onto each label.

    Returns:
        the detections and a :class:`ConversionReport` (see :func:`usable_items`).
    """
    report = ConversionReport()
    detections = [
        make_label(fol.Detection, label=label, bounding_box=box_2d_to_relative(box),
                   **extra_attributes(item), **provenance.attributes())
        for item, label, box in usable_items(items, _item_box_2d, policy, report)
    ]
    report.kept = len(detections)
    return label_list(fol.Detections, detections), report


def _item_box_2d(item: dict, report: ConversionReport) -> Optional[list[float]]:
    raw_box = item_box(item)
    if raw_box is None:
        report.dropped["item has no box_2d"] += 1
        return None
    return read_box_2d(raw_box, report)


def items_to_keypoints(
    items: Iterable[dict],
    *,
    policy: LabelPolicy,
    provenance: Provenance,
) -> tuple[fol.Keypoints, ConversionReport]:
    """Converts parsed items with ``point`` ``[y, x]`` (0–1000) into ``fo.Keypoints``.

    Each item becomes one ``fo.Keypoint`` holding one point, so every point
    keeps its own label and review state. An item that has a ``box_2d`` but no
    point is pointed at the box's centre.
    """
    report = ConversionReport()
    keypoints = [
        make_label(fol.Keypoint, label=label, points=[list(point)], index=number,
                   **extra_attributes(item), **provenance.attributes())
        for number, (item, label, point) in enumerate(
            usable_items(items, _item_point_or_box_centre, policy, report), start=1)
    ]
    report.kept = len(keypoints)
    return label_list(fol.Keypoints, keypoints), report


def _item_point_or_box_centre(item: dict, report: ConversionReport) -> Optional[tuple[float, float]]:
    raw_point = item_point(item)
    if raw_point is not None:
        return read_point(raw_point, report)
    raw_box = item_box(item)
    if raw_box is None:
        report.dropped["item has no point"] += 1
        return None
    box = read_box_2d(raw_box, report)
    if box is None:
        return None
    report.repaired["point taken from the centre of a box_2d"] += 1
    ymin, xmin, ymax, xmax = box
    return (xmin + xmax) / 2 / SCALE, (ymin + ymax) / 2 / SCALE


@dataclass(frozen=True)
class MaskOptions:
    """How masks become labels.

    Attributes:
        frame_size: ``(width, height)`` of the image the labels are drawn on,
            in pixels (as a viewer shows it): masks are stored at its scale.
        threshold: PNG probabilities above it are inside (0–254).
        tolerance: simplification of outlines traced from PNG masks, in pixels.
    """

    frame_size: tuple[int, int]
    threshold: int = DEFAULT_MASK_THRESHOLD
    tolerance: float = POLYGON_TOLERANCE


class Segment(NamedTuple):
    """One object's geometry: its ``box_2d`` (0–1000), instance mask, and polygon shapes if it came as one."""

    box: list[float]
    mask: np.ndarray
    shapes: Optional[list[list[tuple[float, float]]]]


def items_to_segments(
    items: Iterable[dict],
    *,
    policy: LabelPolicy,
    provenance: Provenance,
    masks: MaskOptions,
) -> tuple[fol.Detections, fol.Polylines, ConversionReport]:
    """Converts segmentation items into linked instance masks and outlines.

    Each item's ``mask`` is read in whichever form it came: a PNG string
    (covering the box) or a polygon (over the image). Every kept item gives one
    ``fo.Detection`` with its instance mask and one closed, filled
    ``fo.Polyline`` with its outline, sharing an ``fo.Instance`` and ``index``
    (the item's number in the reply), so a reviewer can go from one to the other.
    An item without a usable mask is dropped and counted, never the reply.

    Args:
        items: item dicts from :func:`gemini_annotate.parse.parse_items`.
        policy: how labels are matched to classes.
        provenance: model and run written onto each label.
        masks: frame size and mask options.

    Returns:
        the detections, the polylines and a :class:`ConversionReport`.
    """
    report = ConversionReport()
    detections, polylines = [], []

    def read(item: dict, report: ConversionReport) -> Optional[Segment]:
        return _read_segment(item, masks, report)

    def identity(segment: Segment) -> tuple:
        return (*segment.box, segment.mask.shape, int(segment.mask.sum()))

    for number, (item, label, segment) in enumerate(
            usable_items(items, read, policy, report, key=identity), start=1):
        bounding_box = box_2d_to_relative(segment.box)
        if segment.shapes is None:
            shapes = instance_mask_to_polygons(segment.mask, bounding_box, masks.tolerance)
        else:
            shapes = [[(x / SCALE, y / SCALE) for x, y in shape] for shape in segment.shapes]
        shared = dict(label=label, index=number, instance=fol.Instance(),
                      **extra_attributes(item), **provenance.attributes())
        detections.append(fol.Detection(bounding_box=bounding_box, mask=segment.mask, **shared))
        polylines.append(fol.Polyline(points=shapes, closed=True, filled=True, **shared))
    report.kept = len(detections)
    return label_list(fol.Detections, detections), label_list(fol.Polylines, polylines), report


def _read_segment(item: dict, masks: MaskOptions, report: ConversionReport) -> Optional[Segment]:
    """An item's box and mask, in whichever form its mask came, or ``None`` (counted)."""
    raw_mask = item_mask(item)
    raw_box = item_box(item)
    if raw_mask is None:
        report.dropped["item has no mask"] += 1
        return None
    box = read_box_2d_extent(raw_box, report) if raw_box is not None else None
    if raw_box is not None and box is None:
        return None
    if isinstance(raw_mask, str):
        if box is None:
            report.dropped["PNG mask without a box_2d to place it in"] += 1
            return None
        try:
            probability = decode_png_mask(raw_mask)
        except MaskError as e:
            report.dropped[f"mask could not be decoded ({e})"] += 1
            return None
        mask = png_mask_to_instance_mask(probability, box, masks.frame_size, masks.threshold)
        if not mask.any():
            report.dropped["PNG mask is empty at the threshold"] += 1
            return None
        return Segment(box.box, mask, None)

    shapes = read_polygon(raw_mask, report)
    if shapes is None:
        return None
    if box is None:
        bounds = polygon_bounds(shapes)
        if bounds[2] <= bounds[0] or bounds[3] <= bounds[1]:
            report.dropped["polygon has no area"] += 1
            return None
        report.repaired["box_2d taken from the polygon"] += 1
        box = Box2d(bounds, bounds)
    shapes = orient_polygon(shapes, box.box, report)
    mask = polygon_to_instance_mask(shapes, box.box, masks.frame_size)
    if not mask.any():
        report.dropped["polygon covers no pixel of its box"] += 1
        return None
    return Segment(box.box, mask, shapes)

