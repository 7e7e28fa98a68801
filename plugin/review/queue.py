"""Least sure first: the unreviewed samples in the order a review saves the most mistakes.

A sample's expected mistakes are the sum, over its ``unreviewed`` labels, of
``1 - confidence``: the chance each is wrong if confidences were calibrated.
A label without a confidence counts as :data:`UNKNOWN_CONFIDENCE` (a coin
toss: nothing says it is likelier right than wrong). Auto-accepted and reviewed
labels count for nothing: the queue is for what nobody has settled.
"""

from __future__ import annotations

import fiftyone as fo
from fiftyone import ViewField as F
from fiftyone.core.expressions import ViewExpression

from ..labels import list_field_of
from ..vocabulary import REVIEW_ATTRIBUTE, UNREVIEWED, reviewed_field
from .status import label_path

UNKNOWN_CONFIDENCE = 0.5
"""The confidence a label without one counts with."""


def _mistake_chance(label: ViewExpression) -> ViewExpression:
    # $avg turns a missing confidence into null and a keypoint's list (one per point) into its mean
    confidence = label.mean()
    return confidence.is_number().if_else(1 - confidence, 1 - UNKNOWN_CONFIDENCE)


def expected_mistakes(samples: fo.core.collections.SampleCollection, label_field: str) -> ViewExpression:
    """The expression of a sample's expected mistakes in ``label_field`` (for ``values`` or ``sort_by``)."""
    label_path(samples, label_field)  # a label field, or a clear error
    list_field = list_field_of(samples.get_field(label_field).document_type)
    if list_field is None:
        unreviewed = F(f"{label_field}.{REVIEW_ATTRIBUTE}") == UNREVIEWED
        return unreviewed.if_else(_mistake_chance(F(f"{label_field}.confidence")), 0)
    labels = F(f"{label_field}.{list_field}").filter(F(REVIEW_ATTRIBUTE) == UNREVIEWED)
    return labels.map(_mistake_chance(F("confidence"))).sum()


def review_queue(
    samples: fo.core.collections.SampleCollection, label_field: str,
) -> fo.core.collections.SampleCollection:
    """The samples of ``samples`` not yet reviewed, the most expected mistakes first.

    Ties keep the samples' id order, so the queue is the same every time.
    """
    expression = expected_mistakes(samples, label_field)
    flag = reviewed_field(label_field)
    pending = samples.match(F(flag) != True) if samples._dataset.has_field(flag) else samples  # noqa: E712
    return pending.sort_by([(expression, -1), ("id", 1)])
