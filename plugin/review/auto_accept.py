"""Auto-accepting the labels Gemini is surest of, at a precision the reviews so far can show.

The reviewed samples of the dataset say how often Gemini was right at each
confidence; :func:`gemini_annotate.precision.choose_thresholds` picks the
lowest threshold (per class where a class has enough reviews) whose
Clopper–Pearson lower bound on precision meets the target, and the still
unreviewed labels at or above it become ``auto_accepted``. Nothing a person
decided is changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import fiftyone as fo

from ..labels import labels_in
from ..precision import NONE, OVERALL, OWN, Outcome, ThresholdPlan, choose_thresholds, precision_lower_bound, shortfall
from ..review_rules import is_pre_annotation, review_status
from ..vocabulary import AUTO_ACCEPT_TARGET_ATTRIBUTE, AUTO_ACCEPTED, REVIEW_ATTRIBUTE, UNREVIEWED
from .outcomes import label_confidence, reviewed_outcomes
from .status import ReviewError, field_classes, label_path


@dataclass
class AutoAcceptReport:
    """What :func:`auto_accept` did (or, with ``dry_run``, would do).

    Attributes:
        label_field: the pre-annotation field.
        target_precision, confidence_level: what the thresholds were chosen for.
        plan: the thresholds, per class and over all classes, with their evidence.
        thresholds: each class of the field → the confidence its labels needed
            (``None``: not auto-accepted).
        reviewed_labels: reviewed proposals with a confidence the choice used.
        supporting, supporting_correct: those at or above their class's
            threshold, and how many of them people kept.
        precision, lower_bound: ``supporting_correct / supporting`` and its
            one-sided Clopper–Pearson lower bound at ``confidence_level`` (the
            interval ``[lower_bound, 1]``).
        auto_accepted: unreviewed labels now ``auto_accepted``.
        labels: all labels of the field in the samples.
        dry_run: nothing was written.
    """

    label_field: str
    target_precision: float
    confidence_level: float
    plan: ThresholdPlan
    thresholds: dict[str, Optional[float]]
    reviewed_labels: int
    supporting: int
    supporting_correct: int
    auto_accepted: int
    labels: int
    dry_run: bool = False

    @property
    def global_threshold(self) -> Optional[float]:
        """The threshold over all reviewed labels (classes with too few reviews of their own use it)."""
        return None if self.plan.overall is None else self.plan.overall.threshold

    @property
    def precision(self) -> float:
        return self.supporting_correct / self.supporting if self.supporting else 0.0

    @property
    def lower_bound(self) -> float:
        return precision_lower_bound(self.supporting_correct, self.supporting, self.confidence_level)

    @property
    def share(self) -> float:
        """The share of all the field's labels auto-accepted."""
        return self.auto_accepted / self.labels if self.labels else 0.0

    def describe(self) -> str:
        verb = "would auto-accept" if self.dry_run else "auto-accepted"
        level = f"{self.confidence_level:.0%} confidence"
        overall = "–" if self.global_threshold is None else f"{self.global_threshold:.3f}"
        lines = [
            f"{self.label_field}: {verb} {self.auto_accepted} of {self.labels} label(s) ({self.share:.1%}) "
            f"for a precision of {self.target_precision:.3g} at {level}",
            f"{self.reviewed_labels} reviewed label(s) used; {self.supporting} at or above their threshold, "
            f"{self.supporting_correct} kept: precision {self.precision:.3f}, at least {self.lower_bound:.3f} "
            f"at {level}",
            f"threshold over all classes: {overall}",
            f"{'class':<24}{'threshold':>10}  from",
        ]
        for name, threshold in self.thresholds.items():
            entry = self.plan.classes.get(name)
            reviewed = entry.reviewed if entry else 0
            source = {OWN: f"its {reviewed} reviews", OVERALL: f"all classes (it has {reviewed} reviews)",
                      NONE: f"none: its {reviewed} reviews cannot show the target"}
            how = source[entry.source] if entry else ("all classes (no reviews of its own)" if threshold is not None
                                                      else "none: no reviews show the target")
            lines.append(f"{name:<24}{'–' if threshold is None else f'{threshold:.3f}':>10}  {how}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "label_field": self.label_field, "target_precision": self.target_precision,
            "confidence_level": self.confidence_level, "thresholds": self.thresholds,
            "global_threshold": self.global_threshold, "reviewed_labels": self.reviewed_labels,
            "supporting": self.supporting, "precision": self.precision, "lower_bound": self.lower_bound,
            "auto_accepted": self.auto_accepted, "labels": self.labels, "share": self.share,
            "dry_run": self.dry_run,
        }


def auto_accept(
    samples: fo.core.collections.SampleCollection,
    label_field: str,
    target_precision: float = 0.95,
    confidence_level: float = 0.95,
    *,
    per_class: bool = True,
    min_reviews: Optional[int] = None,
    dry_run: bool = False,
) -> AutoAcceptReport:
    """Marks the unreviewed labels Gemini is surest of ``auto_accepted``, at a precision reviews show.

    The evidence is every proposal of ``label_field`` on the dataset's reviewed
    samples (``<field>_reviewed``): kept (``accepted``, or ``edited`` without
    changing the class or moving the object: see
    :mod:`~gemini_annotate.review.outcomes`) or not (``rejected``). For each
    class with at least ``min_reviews`` reviews (with ``per_class``), else over
    all classes, the threshold is the lowest confidence whose reviewed labels
    at or above it show, by a one-sided Clopper–Pearson bound at
    ``confidence_level``, a precision of at least ``target_precision``. The
    labels of ``samples`` still ``unreviewed`` at or above their class's
    threshold become ``auto_accepted`` and remember the target in
    ``auto_accept_target``. Labels without a confidence are never
    auto-accepted, and no ``accepted``, ``rejected``, ``edited`` or ``added``
    label is touched.

    Choosing the lowest of many thresholds makes the bound slightly
    optimistic; :func:`~gemini_annotate.review.audit` checks it.

    Args:
        samples: the samples whose labels to auto-accept.
        label_field: the pre-annotation field.
        target_precision: the precision auto-accepted labels must have.
        confidence_level: how sure the reviews must make that precision.
        per_class: a threshold per class where a class has enough reviews.
        min_reviews: the reviews a class needs for a threshold of its own; by
            default the fewest that can show the target (59 for 95 % at 95 %).
        dry_run: compute the report, write nothing.

    Raises:
        ReviewError: the reviews cannot show the target for any class (the
            message says about how many more are needed), or no reviewed label
            has a confidence.
    """
    path = label_path(samples, label_field)
    outcomes = reviewed_outcomes(samples._dataset, label_field)
    ranked = [o for o in outcomes if o.confidence is not None]
    if outcomes and not ranked:
        raise ReviewError(f"none of the {len(outcomes)} reviewed label(s) of {label_field!r} has a confidence, so "
                          "they cannot be ranked: annotate with confidence=True (--confidence)")
    plan = choose_thresholds(ranked, target_precision, confidence_level, per_class=per_class,
                             min_reviews=min_reviews)
    classes = sorted(set(field_classes(samples, label_field)) | set(plan.classes))
    if not plan.supports(classes):
        raise ReviewError(f"cannot auto-accept {label_field!r}: {_shortfalls(plan, ranked)}. Review more samples "
                          "(least sure first: review.review_queue) and mark them reviewed")
    changes = _labels_to_accept(samples, label_field, plan)
    if changes and not dry_run:
        dataset = samples._dataset
        # the memory first: a label must never be auto_accepted without it
        dataset.set_label_values(f"{path}.{AUTO_ACCEPT_TARGET_ATTRIBUTE}",
                                 [{**c, "value": target_precision} for c in changes], dynamic=True)
        dataset.set_label_values(f"{path}.{REVIEW_ATTRIBUTE}",
                                 [{**c, "value": AUTO_ACCEPTED} for c in changes], dynamic=True)
    correct, supporting = plan.passing(ranked)
    return AutoAcceptReport(
        label_field, target_precision, confidence_level, plan,
        thresholds={name: plan.threshold_for(name) for name in classes},
        reviewed_labels=len(ranked), supporting=supporting, supporting_correct=correct,
        auto_accepted=len(changes), labels=samples.count(path), dry_run=dry_run,
    )


def _shortfalls(plan: ThresholdPlan, ranked: list[Outcome]) -> str:
    """Why no label can be auto-accepted: the reviews over all classes fall short, or else each
    class's own reviews do."""
    target, level = plan.target, plan.confidence_level
    if plan.overall is None:
        return shortfall(ranked, target, level, plan.min_reviews).describe()
    return "; ".join(
        f"{name}: {shortfall([o for o in ranked if o.label == name], target, level, plan.min_reviews).describe()}"
        for name in plan.classes)


def _labels_to_accept(samples, label_field: str, plan: ThresholdPlan) -> list[dict]:
    """``{"sample_id", "label_id"}`` of the unreviewed proposals at or above their class's threshold."""
    changes = []
    for sample_id, value in zip(*samples.values(["id", label_field])):
        for label in labels_in(value):
            if not is_pre_annotation(label) or review_status(label) != UNREVIEWED:
                continue
            threshold = plan.threshold_for(str(label.label))
            confidence = label_confidence(label)
            if threshold is not None and confidence is not None and confidence >= threshold:
                changes.append({"sample_id": sample_id, "label_id": label.id})
    return changes
