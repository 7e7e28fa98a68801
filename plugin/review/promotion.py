"""From review to ground truth: keep Gemini's proposals, apply a person's corrections, promote.

See :mod:`gemini_annotate.review` for what each status means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import fiftyone as fo
import fiftyone.core.labels as fol

from ..labels import field_value, labels_in
from ..review_rules import is_pre_annotation, next_status, review_status, same_geometry
from ..vocabulary import (
    ACCEPTED,
    ADDED,
    AUTO_ACCEPTED,
    EDITED,
    KEPT_STATUSES,
    REJECTED,
    REVIEW_ATTRIBUTE,
    SOURCE_ATTRIBUTE,
    proposed_field,
    reviewed_field,
)
from .status import ReviewError, label_path


def promote(
    samples: fo.core.collections.SampleCollection,
    label_field: str,
    gt_field: str = "ground_truth",
    *,
    include_auto_accepted: bool = False,
) -> int:
    """Copies reviewed labels (accepted, edited, added) into a ground-truth field.

    The copies get new ids and remember their source in ``gemini_source_id``;
    promoting again replaces the earlier copies, so it is safe to repeat. Labels
    already in ``gt_field`` that did not come from this field are kept.
    Nothing is ever promoted without this explicit call.

    Args:
        include_auto_accepted: also promote ``auto_accepted`` labels, which no
            person checked (see :func:`~gemini_annotate.review.auto_accept`).

    Returns:
        the number of labels promoted.
    """
    if gt_field == label_field:
        raise ReviewError("promote into a different field than the pre-annotations")
    label_path(samples, label_field)  # a label field, or a clear error
    source_type = samples.get_field(label_field).document_type
    dataset = samples._dataset
    if dataset.has_field(gt_field) and dataset.get_field(gt_field).document_type is not source_type:
        raise ReviewError(
            f"{gt_field!r} holds {dataset.get_field(gt_field).document_type.__name__}, "
            f"{label_field!r} holds {source_type.__name__}: choose another ground-truth field"
        )
    view = samples.select_fields([label_field, gt_field] if dataset.has_field(gt_field) else [label_field])
    sample_ids = view.values("id")
    sources = view.values(label_field)
    targets = view.values(gt_field) if dataset.has_field(gt_field) else [None] * len(sample_ids)
    promoted_statuses = KEPT_STATUSES + (AUTO_ACCEPTED,) if include_auto_accepted else KEPT_STATUSES
    promoted, updates = 0, {}
    for sample_id, source, target in zip(sample_ids, sources, targets):
        kept = [label for label in labels_in(source) if review_status(label) in promoted_statuses]
        source_ids = {label.id for label in labels_in(source)}
        others = [label for label in labels_in(target)
                  if not (label.has_field(SOURCE_ATTRIBUTE) and label[SOURCE_ATTRIBUTE] in source_ids)]
        if not kept and len(others) == len(labels_in(target)):
            continue
        copies = [_promoted_copy(label) for label in kept]
        promoted += len(copies)
        updates[sample_id] = field_value(source_type, others + copies)
    if updates:
        dataset.set_values(gt_field, updates, key_field="id")
        dataset.add_dynamic_sample_fields(fields=[gt_field])
    return promoted


def _promoted_copy(label: fo.Label) -> fo.Label:
    copy = label.copy()  # a label's copy gets a new id
    copy[SOURCE_ATTRIBUTE] = label.id
    return copy


def keep_proposals(samples: fo.core.collections.SampleCollection, label_field: str) -> int:
    """Saves Gemini's labels into ``<field>_proposed`` for samples that have none saved.

    Called before a person's corrections are applied, so evaluation can still
    compare what Gemini proposed with what people kept.

    Returns:
        the number of samples whose proposals were saved.
    """
    dataset = samples._dataset
    target = proposed_field(label_field)
    if dataset.has_field(target):
        samples = samples.exists(target, False)
    label_type = samples.get_field(label_field).document_type
    updates = {}
    for sample_id, value in zip(*samples.values(["id", label_field])):
        proposals = [_same_id_copy(label) for label in labels_in(value) if is_pre_annotation(label)]
        updates[sample_id] = field_value(label_type, proposals)
    if updates:
        if not dataset.has_field(target):  # declared first: a single-label field may hold only None
            dataset.add_sample_field(target, fo.EmbeddedDocumentField, embedded_doc_type=label_type)
        dataset.set_values(target, updates, key_field="id")
        dataset.add_dynamic_sample_fields(fields=[target])
    return len(updates)


def _same_id_copy(label: fo.Label) -> fo.Label:
    # the proposal keeps the id of the label it records, to be found again
    copy = label.copy()
    copy.id = label.id
    return copy


@dataclass
class CorrectionCounts:
    """What a person's corrections did to a field's labels."""

    accepted: int = 0
    edited: int = 0
    rejected: int = 0
    added: int = 0
    reviewed_samples: int = 0

    def describe(self) -> str:
        return (f"{self.reviewed_samples} sample(s) reviewed: {self.accepted} label(s) accepted, "
                f"{self.edited} edited, {self.rejected} rejected, {self.added} added")


def apply_corrections(
    samples: fo.core.collections.SampleCollection,
    label_field: str,
    before: dict[str, list[fo.Label]],
    reviewed_sample_ids: Iterable[str],
) -> CorrectionCounts:
    """Turns the difference between labels before and after a correction pass into review statuses.

    For the samples a person submitted: a pre-annotation that is unchanged is
    ``accepted``, changed is ``edited``, gone is put back as ``rejected`` (so
    it still counts against Gemini and is never promoted), and a new label is
    ``added``. Masks the tool could not show (it edits boxes) are restored on
    labels whose box did not move. The samples become reviewed.

    Args:
        samples: the samples that went to the tool.
        label_field: the field the corrections were loaded into.
        before: sample id → the field's labels before loading the corrections,
            for every sample of the round.
        reviewed_sample_ids: samples a person submitted in the tool.

    Returns:
        the :class:`CorrectionCounts`.
    """
    reviewed = set(reviewed_sample_ids)
    dataset = samples._dataset
    label_type = samples.get_field(label_field).document_type
    counts = CorrectionCounts(reviewed_samples=len(reviewed))
    updates = {}
    for sample_id, value in zip(*samples.select(list(before)).values(["id", label_field])):
        old = {label.id: label for label in before.get(sample_id, [])}
        now = labels_in(value)
        restored = _restore_masks(now, old)
        if sample_id in reviewed:
            _record_review(now, old, counts)
        elif not restored:
            continue
        updates[sample_id] = field_value(label_type, now)
    if updates:
        dataset.set_values(label_field, updates, key_field="id")
        dataset.add_dynamic_sample_fields(fields=[label_field])
    if reviewed:
        dataset.set_values(reviewed_field(label_field), dict.fromkeys(reviewed, True), key_field="id")
    return counts


def _restore_masks(now: list[fo.Label], old: dict[str, fo.Label]) -> int:
    # tools that edit boxes return no masks; a box that did not move keeps its mask
    restored = 0
    for label in now:
        original = old.get(label.id)
        if (isinstance(label, fol.Detection) and label.mask is None and original is not None
                and original.mask is not None and same_geometry(label, original)):
            label.mask = original.mask
            restored += 1
    return restored


def _record_review(now: list[fo.Label], old: dict[str, fo.Label], counts: CorrectionCounts) -> None:
    """Sets the statuses of one submitted sample's labels (``now`` gains the rejected ones)."""
    present = {label.id for label in now}
    for label in now:
        original = old.get(label.id)
        if original is None:
            label[REVIEW_ATTRIBUTE] = ADDED
            counts.added += 1
        elif same_geometry(label, original):
            label[REVIEW_ATTRIBUTE] = next_status(review_status(original), ACCEPTED)
            counts.accepted += 1
        else:
            label[REVIEW_ATTRIBUTE] = EDITED
            counts.edited += 1
    for label_id, original in old.items():
        if label_id not in present and is_pre_annotation(original):
            original[REVIEW_ATTRIBUTE] = REJECTED
            now.append(original)
            counts.rejected += 1

