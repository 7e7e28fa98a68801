"""What review statuses mean for labels: pure rules over FiftyOne label objects.

Which status a label has, what accepting it turns it into, whether a person's
review protects it from being replaced, and how a fresh run's labels merge
with the ones people kept. No database access: the review operations
(:mod:`gemini_annotate.review`) and the batched writer
(:mod:`gemini_annotate.writer`) apply these rules.
"""

from __future__ import annotations

from typing import Any

import fiftyone.core.labels as fol
import fiftyone.utils.iou as foui
import numpy as np

from .labels import list_field_of
from .vocabulary import ACCEPTED, ADDED, EDITED, REVIEW_ATTRIBUTE, RUN_ATTRIBUTE, UNREVIEWED

_SPATIAL_FIELDS = {
    fol.Detection: ("bounding_box",),
    fol.Polyline: ("points", "closed", "filled"),
    fol.Keypoint: ("points",),
}


_COORDINATE_TOLERANCE = 1e-6


def is_pre_annotation(label: fol.Label) -> bool:
    return label.has_field(RUN_ATTRIBUTE) and bool(label[RUN_ATTRIBUTE])


def review_status(label: fol.Label) -> str:
    """A label's review status: ``added`` for a person's label without one."""
    if label.has_field(REVIEW_ATTRIBUTE) and label[REVIEW_ATTRIBUTE]:
        return label[REVIEW_ATTRIBUTE]
    return UNREVIEWED if is_pre_annotation(label) else ADDED


def next_status(current: str, requested: str) -> str:
    # accepting a corrected or hand-drawn label keeps saying what a person did to it
    if requested == ACCEPTED and current in (EDITED, ADDED):
        return current
    return requested


def same_geometry(a: fol.Label, b: fol.Label) -> bool:
    """Whether two labels have the same class and the same coordinates (to 1e-6) and masks."""
    if type(a) is not type(b) or a.label != b.label:
        return False
    for name in _SPATIAL_FIELDS.get(type(a), ()):
        if not _close(a[name], b[name]):
            return False
    return _same_masks(a, b)


def _same_masks(a: fol.Label, b: fol.Label) -> bool:
    # an instance mask is geometry too; a label without one (a tool that edits boxes) is not compared
    if not isinstance(a, fol.Detection) or a.mask is None or b.mask is None:
        return True
    return np.array_equal(np.asarray(a.mask, bool), np.asarray(b.mask, bool))


def _close(x: Any, y: Any) -> bool:
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return len(x) == len(y) and all(_close(p, q) for p, q in zip(x, y))
    if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
        return abs(x - y) <= _COORDINATE_TOLERANCE
    return x == y


def is_kept_on_replace(label: fol.Label) -> bool:
    """Whether a label survives ``if_labeled="replace_unreviewed"``.

    Kept: labels a person made (no ``gemini_run``), pre-annotations a person
    accepted, edited or otherwise reviewed, and ``auto_accepted`` ones (accepted
    for a precision the reviews showed: a rerun must not undo that).
    """
    if not label_attribute(label, RUN_ATTRIBUTE):
        return True
    return label_attribute(label, REVIEW_ATTRIBUTE, UNREVIEWED) != UNREVIEWED


def label_attribute(label: fol.Label, name: str, default: Any = None) -> Any:
    """A label's attribute, or ``default`` when the label does not have it."""
    return label.get_field(name) if label.has_field(name) else default


SAME_OBJECT_IOU = 0.7
"""A new label overlapping a kept one this much is the object a person already
reviewed, and is not added again."""


def merge_kept_labels(existing: Any, new: Any) -> Any:
    """The new labels plus the existing ones a person made or reviewed.

    New labels that cover an object a kept label already covers (IoU above
    :data:`SAME_OBJECT_IOU`, whatever its class) are left out: the person's
    version of that object stands. A single kept label (a reviewed
    ``Classification``) stands whole; so does existing text (a caption, an
    answer), which carries no review state to tell a person's edit from a
    past run's output: replace text with ``if_labeled="overwrite"``.
    """
    if isinstance(existing, str) and existing:
        return existing
    list_field = list_field_of(type(existing))
    if isinstance(existing, fol.Label) and list_field is None:
        return existing if is_kept_on_replace(existing) else new
    if existing is None or list_field is None:
        return new
    kept = [label for label in existing[list_field] or [] if is_kept_on_replace(label)]
    if not kept:
        return new
    if new is None:
        return type(existing)(**{list_field: kept})
    fresh = list(new[list_field] or [])
    if fresh and isinstance(new, fol.Classifications):
        kept_classes = {label.label for label in kept}
        fresh = [label for label in fresh if label.label not in kept_classes]
    elif fresh:
        covered = _covers_same_object(fresh, kept)
        fresh = [label for label, row in zip(fresh, covered) if not row.any()]
    return type(new)(**{list_field: kept + fresh})


SAME_POINT_DISTANCE = 0.02
"""A new point this close to a kept one (relative to the image sides) marks the same object."""


def _covers_same_object(fresh: list, kept: list) -> np.ndarray:
    """For each fresh label, which kept labels cover the same object."""
    if isinstance(kept[0], fol.Keypoint):
        # one point has no extent, so FiftyOne's keypoint similarity is undefined
        a = np.array([np.nanmean(np.asarray(k.points, float), axis=0) for k in fresh])
        b = np.array([np.nanmean(np.asarray(k.points, float), axis=0) for k in kept])
        return np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2) < SAME_POINT_DISTANCE
    # box IoUs for every other label type: polygon IoUs would need shapely,
    # which FiftyOne does not install, and boxes suffice to recognise an object
    return foui.compute_ious(fresh, kept, error_level=2, use_boxes=True) > SAME_OBJECT_IOU

