"""Review statuses in the dataset: set them, count them, find the labels to review.

See :mod:`gemini_annotate.review` for what each status means.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Optional, Union

import fiftyone as fo
import fiftyone.core.labels as fol
from fiftyone import ViewField as F

from ..labels import labels_in, list_field_of
from ..review_colors import save_rejected_hidden_view
from ..review_rules import next_status, review_status
from ..run_records import list_annotation_runs
from ..vocabulary import (
    ACCEPTED,
    ADDED,
    AUTO_ACCEPTED,
    HUMAN_STATUSES,
    REJECTED,
    REVIEW_ATTRIBUTE,
    REVIEW_STATUSES,
    RUN_ATTRIBUTE,
    UNREVIEWED,
    reviewed_field,
)


class ReviewError(ValueError):
    """A review step that cannot be done as asked; the message says what to do."""


def label_path(samples: fo.core.collections.SampleCollection, label_field: str) -> str:
    """The path of the labels in a field: ``gemini.detections`` or ``gemini``.

    Raises:
        ReviewError: the field does not exist or holds no labels.
    """
    schema_field = samples.get_field(label_field)
    label_type = getattr(schema_field, "document_type", None)
    if label_type is None or not issubclass(label_type, fol.Label):
        raise ReviewError(f"{label_field!r} is not a label field of {samples._dataset.name!r}")
    list_field = list_field_of(label_type)
    return f"{label_field}.{list_field}" if list_field else label_field


def field_classes(samples: fo.core.collections.SampleCollection, label_field: str) -> list[str]:
    """The class names of the labels in a field of ``samples``, sorted."""
    return sorted(str(v) for v in samples.distinct(f"{label_path(samples, label_field)}.label") if v)


def only_classes(
    samples: fo.core.collections.SampleCollection,
    label_field: str,
    classes: Union[str, Iterable[str], None],
) -> fo.core.collections.SampleCollection:
    """``samples`` with only the labels of ``classes`` left in ``label_field``.

    Every sample stays (a review step on the view still counts its samples);
    with no class named, ``samples`` is returned unchanged.

    Args:
        classes: class names, or one comma-separated string of them.
    """
    names = classes.split(",") if isinstance(classes, str) else list(classes or ())
    names = [name.strip() for name in names if name.strip()]
    if not names:
        return samples
    return samples.filter_labels(label_field, F("label").is_in(names), only_matches=False)


def pre_annotation_fields(samples: fo.core.collections.SampleCollection) -> list[str]:
    """The label fields that gemini-annotate runs wrote, in run order, without repeats."""
    fields = []
    for key in list_annotation_runs(samples):
        name = samples.get_run_info(key).config.label_field
        if name not in fields and samples._dataset.has_field(name):
            fields.append(name)
    return fields


def set_review_status(
    samples: fo.core.collections.SampleCollection,
    label_field: str,
    status: str,
    label_ids: Optional[Iterable[str]] = None,
) -> int:
    """Sets the review status of labels in a field.

    Accepting keeps ``edited`` and ``added`` labels as they are (they are
    already part of the reviewed truth); any other request sets the status.

    Args:
        samples: the samples whose labels to review.
        label_field: the pre-annotation field.
        status: one of :data:`REVIEW_STATUSES`.
        label_ids: only these labels; all labels of the field in ``samples``
            when ``None``.

    Returns:
        the number of labels whose status changed.
    """
    if status not in REVIEW_STATUSES:
        raise ReviewError(f"unknown review status {status!r}; use one of {', '.join(REVIEW_STATUSES)}")
    path = label_path(samples, label_field)
    view = samples if label_ids is None else samples.select_labels(ids=list(label_ids), fields=label_field)
    changes = []
    for sample_id, value in zip(*view.values(["id", label_field])):
        for label in labels_in(value):
            current = review_status(label)
            new = next_status(current, status)
            if new != current or not label.has_field(REVIEW_ATTRIBUTE):
                changes.append({"sample_id": sample_id, "label_id": label.id, "value": new})
    if changes:
        samples._dataset.set_label_values(f"{path}.{REVIEW_ATTRIBUTE}", changes, dynamic=True)
    if status == REJECTED and changes:
        save_rejected_hidden_view(samples._dataset, label_field)
    return len(changes)


def person_reviews_changed(
    samples: fo.core.collections.SampleCollection, label_field: str, status: str,
) -> dict[str, int]:
    """How many labels a person already reviewed :func:`set_review_status` would change, by
    their current status (``{"rejected": 1}``: accepting would undo one rejection)."""
    changed: Counter = Counter()
    for value in samples.values(label_field):
        for label in labels_in(value):
            current = review_status(label)
            if current in HUMAN_STATUSES and next_status(current, status) != current:
                changed[current] += 1
    return dict(changed)


def person_reviewed_labels(samples: fo.core.collections.SampleCollection, label_field: str) -> int:
    """How many labels of ``label_field`` a person reviewed (accepted, rejected, edited or drew)."""
    path = label_path(samples, label_field)
    counts = samples.count_values(f"{path}.{REVIEW_ATTRIBUTE}")
    return sum(n for status, n in counts.items() if status in HUMAN_STATUSES)


def without_person_reviews(
    samples: fo.core.collections.SampleCollection, label_field: str,
) -> fo.core.collections.SampleCollection:
    """``samples`` (every one kept) with only the labels of ``label_field`` no person reviewed yet."""
    return samples.filter_labels(label_field, ~F(REVIEW_ATTRIBUTE).is_in(list(HUMAN_STATUSES)), only_matches=False)


def only_unreviewed(
    samples: fo.core.collections.SampleCollection, label_field: str,
) -> fo.core.collections.SampleCollection:
    """The samples with labels still ``unreviewed`` in ``label_field``, showing only those labels."""
    return samples.filter_labels(label_field, F(REVIEW_ATTRIBUTE) == UNREVIEWED)


def mark_reviewed(samples: fo.core.collections.SampleCollection, label_field: str) -> int:
    """Marks samples as reviewed as a whole, accepting their labels still unreviewed or
    auto-accepted (a person has now looked at those too).

    Returns:
        the number of labels this accepted.
    """
    waiting = samples.filter_labels(label_field, F(REVIEW_ATTRIBUTE).is_in([UNREVIEWED, AUTO_ACCEPTED]))
    ids = waiting.values(f"{label_path(samples, label_field)}.id", unwind=True)
    accepted = set_review_status(samples, label_field, ACCEPTED, ids) if ids else 0
    sample_ids = samples.values("id")
    samples._dataset.set_values(reviewed_field(label_field), dict.fromkeys(sample_ids, True), key_field="id")
    return accepted


@dataclass
class ReviewCounts:
    """How far review of a field has gone: labels by status, reviewed samples."""

    label_field: str
    samples: int = 0
    reviewed_samples: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def proposed(self) -> int:
        """Labels Gemini proposed (every status but ``added``)."""
        return sum(n for s, n in self.statuses.items() if s != ADDED)

    def describe(self) -> str:
        parts = ", ".join(f"{self.statuses.get(s, 0)} {s}" for s in REVIEW_STATUSES)
        return (f"{self.label_field}: {self.reviewed_samples}/{self.samples} samples reviewed; "
                f"labels: {parts}")


def review_counts(samples: fo.core.collections.SampleCollection, label_field: str) -> ReviewCounts:
    """Counts labels by review status and the samples marked reviewed."""
    counts = ReviewCounts(label_field, samples=len(samples))
    flag = reviewed_field(label_field)
    if samples._dataset.has_field(flag):
        counts.reviewed_samples = samples.count_values(flag).get(True, 0)
    path = label_path(samples, label_field)
    # aggregations, not a pass over every label: forms recompute this as they change
    statuses = Counter(samples.count_values(f"{path}.{REVIEW_ATTRIBUTE}"))
    missing = statuses.pop(None, 0)
    if missing:
        by_people = samples.filter_labels(
            label_field, ~F(REVIEW_ATTRIBUTE).exists() & ~F(RUN_ATTRIBUTE).exists()).count(path)
        statuses[ADDED] += by_people
        statuses[UNREVIEWED] += missing - by_people
    counts.statuses = {s: statuses.get(s, 0) for s in REVIEW_STATUSES}
    return counts

