"""The review loop: one label at a time, the least sure sample first, a key per decision.

The review panel of the App (:mod:`gemini_annotate.review_panel`) is a thin
layer over these functions, which anyone can drive from Python::

    from gemini_annotate import review_loop

    position = review_loop.start(dataset, "gemini")
    while position.sample_id is not None:
        position = review_loop.press(dataset, "gemini", position, "a").position   # accept everything

A :class:`Position` is a sample of the review queue
(:func:`gemini_annotate.review.review_queue`) and, on it, the label to decide:
the sample's labels still waiting for a person (``unreviewed`` or
``auto_accepted``) are taken least sure first. When the last of them is decided
the sample is marked reviewed (:func:`gemini_annotate.review.mark_reviewed`)
and the loop moves to the next sample of the queue. The keys (:data:`KEYS`):

``a``
    accept the label (``edited`` instead when a person changed it since
    Gemini proposed it: see ``e``). On a sample with nothing left to decide,
    ``a`` marks it reviewed.
``r``
    reject the label.
``e``
    edit: Gemini's version of the sample's labels is kept in
    ``<field>_proposed``; the App then opens the label in FiftyOne's own
    annotation mode. Edits are the App's; the label's status is settled when
    the reviewer comes back and presses ``a`` (``edited`` if it changed) or
    ``r``.
``n``
    next sample: leave this one for later (it stays unreviewed).
``A``
    accept the rest of the sample and mark it reviewed.

The progress (:class:`ReviewProgress`) is read with aggregations, so the
panel can recount after every key on a large dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import fiftyone as fo
import fiftyone.core.labels as fol
from fiftyone import ViewField as F

from . import review
from .labels import labels_in
from .precision import precision_interval
from .review.outcomes import label_confidence
from .review_rules import review_status, same_geometry
from .vocabulary import REVIEW_ATTRIBUTE, RUN_ATTRIBUTE

ACCEPT, REJECT, EDIT, NEXT, ACCEPT_REST = "a", "r", "e", "n", "A"
KEYS = {
    ACCEPT: "accept",
    REJECT: "reject",
    EDIT: "edit",
    NEXT: "next sample",
    ACCEPT_REST: "accept the rest",
}
"""The keys of the loop and what each does."""

WAITING = (review.UNREVIEWED, review.AUTO_ACCEPTED)
"""Statuses of labels no person has decided yet."""

PRECISION_CONFIDENCE = 0.95
"""The confidence level of the precision interval the progress reports."""


@dataclass(frozen=True)
class Position:
    """Where the loop is: a sample and the label on it to decide (``None`` when the sample has none left)."""

    sample_id: Optional[str] = None
    label_id: Optional[str] = None
    skipped: tuple[str, ...] = ()
    """Samples left for later with ``n`` during this session."""

    @property
    def done(self) -> bool:
        return self.sample_id is None


@dataclass(frozen=True)
class Step:
    """What a key did: where the loop went, and a line for the reviewer."""

    position: Position
    message: str
    edit: Optional[tuple[str, str]] = None
    """``(sample_id, label_id)`` to open for editing, after ``e``."""


def waiting_labels(samples: fo.core.collections.SampleCollection, label_field: str,
                   sample_id: str) -> list[fol.Label]:
    """The labels of a sample no person has decided yet, least sure first (no confidence counts as
    :data:`~gemini_annotate.review.UNKNOWN_CONFIDENCE`), ties in stored order."""
    (value,) = samples._dataset.select(sample_id).values(label_field)
    labels = [label for label in labels_in(value) if review_status(label) in WAITING]

    def sureness(label: fol.Label) -> float:
        confidence = label_confidence(label)
        return review.UNKNOWN_CONFIDENCE if confidence is None else confidence

    return sorted(labels, key=sureness)


def next_sample(samples: fo.core.collections.SampleCollection, label_field: str,
                skipped: Iterable[str] = ()) -> Optional[str]:
    """The first sample of the review queue not ``skipped``; ``None`` when none is left."""
    queue = review.review_queue(samples, label_field)
    skipped = list(skipped)
    if skipped:
        queue = queue.exclude(skipped)
    ids = queue.limit(1).values("id")
    return ids[0] if ids else None


def upcoming(samples: fo.core.collections.SampleCollection, label_field: str, position: Position,
             count: int = 5) -> list[tuple[str, float]]:
    """The next ``count`` samples of the queue after the current one, with their expected mistakes."""
    shown = [*position.skipped, *([position.sample_id] if position.sample_id else [])]
    queue = review.review_queue(samples, label_field).exclude(shown)
    ids, mistakes = queue.limit(count).values(["id", review.expected_mistakes(samples, label_field)])
    return list(zip(ids, (float(m or 0) for m in mistakes)))


def _at(samples, label_field: str, sample_id: Optional[str], skipped: tuple[str, ...]) -> Position:
    if sample_id is None:
        return Position(skipped=skipped)
    waiting = waiting_labels(samples, label_field, sample_id)
    return Position(sample_id, waiting[0].id if waiting else None, skipped)


def start(samples: fo.core.collections.SampleCollection, label_field: str,
          skipped: Iterable[str] = ()) -> Position:
    """The first position of a review of ``label_field`` in ``samples``."""
    skipped = tuple(skipped)
    return _at(samples, label_field, next_sample(samples, label_field, skipped), skipped)


def resume(samples: fo.core.collections.SampleCollection, label_field: str, position: Position) -> Position:
    """``position`` again, brought up to date: the next label still waiting on its sample (someone
    may have decided labels elsewhere), or the next sample when it was reviewed meanwhile."""
    if position.sample_id is None or len(review.review_queue(samples, label_field).select(position.sample_id)) == 0:
        return start(samples, label_field, position.skipped)
    return _at(samples, label_field, position.sample_id, position.skipped)


def _decided(samples, label_field: str, position: Position, message: str) -> Step:
    """After a decision: the sample's next waiting label, or (none left) the sample reviewed and the next."""
    after = _at(samples, label_field, position.sample_id, position.skipped)
    if after.label_id is not None:
        return Step(after, message)
    review.mark_reviewed(samples._dataset.select(position.sample_id), label_field)
    return Step(start(samples, label_field, position.skipped), f"{message}; sample reviewed")


def _label(samples, label_field: str, position: Position) -> fol.Label:
    (value,) = samples._dataset.select(position.sample_id).values(label_field)
    return next(label for label in labels_in(value) if label.id == position.label_id)


def _changed_since_proposed(samples, label_field: str, position: Position, label: fol.Label) -> bool:
    proposals_field = review.proposed_field(label_field)
    if not samples._dataset.has_field(proposals_field):
        return False
    (kept,) = samples._dataset.select(position.sample_id).values(proposals_field)
    proposal = next((p for p in labels_in(kept) if p.id == label.id), None)
    return proposal is not None and not same_geometry(label, proposal)


def press(samples: fo.core.collections.SampleCollection, label_field: str, position: Position,
          key: str) -> Step:
    """Applies one key (see :data:`KEYS`) at ``position``; returns where the loop goes next.

    Raises:
        ValueError: ``key`` is not one of :data:`KEYS`.
    """
    if key not in KEYS:
        raise ValueError(f"unknown review key {key!r}; use one of {', '.join(KEYS)}")
    position = resume(samples, label_field, position)
    if position.done:
        return Step(position, "nothing left to review")
    one = samples._dataset.select(position.sample_id)
    if key == NEXT:
        skipped = (*position.skipped, position.sample_id)
        return Step(start(samples, label_field, skipped), "left for later")
    if key == ACCEPT_REST or position.label_id is None:
        if key == REJECT:
            return Step(position, "no label left to reject here: a marks the sample reviewed")
        if key == EDIT:
            return Step(position, "no label left to edit here")
        accepted = review.mark_reviewed(one, label_field)
        return Step(start(samples, label_field, position.skipped),
                    f"{accepted} label(s) accepted; sample reviewed")
    label = _label(samples, label_field, position)
    if key == EDIT:
        review.keep_proposals(one, label_field)
        return Step(position, f"editing {label.label}: press a when done (kept as edited if changed), "
                              f"or r", edit=(position.sample_id, position.label_id))
    if key == ACCEPT:
        status = review.EDITED if _changed_since_proposed(samples, label_field, position, label) else review.ACCEPTED
    else:
        status = review.REJECTED
    review.set_review_status(one, label_field, status, [position.label_id])
    return _decided(samples, label_field, position, f"{label.label} {status}")


def press_keys(samples: fo.core.collections.SampleCollection, label_field: str, position: Position,
               keys: str) -> tuple[Step, list[Step]]:
    """Applies several keys in order (characters not in :data:`KEYS` are ignored).

    Returns:
        the last step (or one staying at ``position`` when no key applied) and every step.
    """
    steps: list[Step] = []
    for key in keys:
        if key in KEYS:
            steps.append(press(samples, label_field, steps[-1].position if steps else position, key))
    return (steps[-1] if steps else Step(position, "")), steps


@dataclass
class ReviewProgress:
    """How far the review of a field has gone, for the panel.

    Attributes:
        samples, reviewed_samples: samples in the collection, and those marked reviewed.
        statuses: labels by review status.
        by_class: class → status → labels.
        precision: accepted / (accepted + rejected) so far, ``None`` before any decision;
            ``edited`` labels are left out (whether an edit kept Gemini's proposal is
            :func:`gemini_annotate.review.evaluate`'s to say).
        interval: the 95 % Clopper–Pearson interval of ``precision``.
    """

    samples: int
    reviewed_samples: int
    statuses: dict[str, int]
    by_class: dict[str, dict[str, int]] = field(default_factory=dict)
    precision: Optional[float] = None
    interval: Optional[tuple[float, float]] = None


def _class_and_status(prefix: str):
    # a label without a status is unreviewed if a run made it, else a person drew it
    status = F(prefix + REVIEW_ATTRIBUTE).if_null(
        F(prefix + RUN_ATTRIBUTE).exists().if_else(review.UNREVIEWED, review.ADDED))
    return F(prefix + "label").concat("\t", status)


def review_progress(samples: fo.core.collections.SampleCollection, label_field: str) -> ReviewProgress:
    """Counts by status and by class, review progress and the precision so far (aggregations only)."""
    counts = review.review_counts(samples, label_field)
    path = review.label_path(samples, label_field)
    if path != label_field:  # a list of labels: one "class<TAB>status" per label
        expression = F(path).map(_class_and_status(""))
    else:
        expression = _class_and_status(f"{label_field}.")
    by_class: dict[str, dict[str, int]] = {}
    for key, n in samples.count_values(expression).items():
        if key is None:
            continue
        name, label_status = key.split("\t", 1)
        by_class.setdefault(name, {})[label_status] = n
    accepted, rejected = counts.statuses.get(review.ACCEPTED, 0), counts.statuses.get(review.REJECTED, 0)
    decided = accepted + rejected
    return ReviewProgress(
        samples=counts.samples, reviewed_samples=counts.reviewed_samples, statuses=counts.statuses,
        by_class=dict(sorted(by_class.items())),
        precision=accepted / decided if decided else None,
        interval=precision_interval(accepted, decided, PRECISION_CONFIDENCE) if decided else None,
    )
