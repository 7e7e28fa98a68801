"""Which samples a cascade sends on to the stronger model: a pure rule over one sample's answer.

A cascade (:mod:`gemini_annotate.cascade`) first labels every sample with a
cheap model, usually with ``consensus`` (N answers fused by
:mod:`gemini_annotate.fuse`), then sends on the samples the first answer was
unsure about. A sample escalates when:

- its reply was ``failed`` or ``partial``;
- a label its fused answer *keeps* has a ``confidence`` below
  ``escalate_below``;
- or the share of the objects its answers proposed that a majority of the
  answers support is below ``escalate_support``.

A label is *kept* when more than half of the N answers proposed it (``votes``
> N / 2); a label without ``votes`` (a single answer) is its own majority.
Fusion keeps the minority labels too, with their few votes and low
confidence, for a reviewer to judge; the rule treats them as noise: they do
not escalate a sample by their confidence, only by their share of the
proposals. A stray hallucination, or flicker on one tiny object, would
otherwise send nearly every image on; an image where most proposals flicker
is one the cheap model did not see clearly.

Only pre-annotations count: labels a person made or reviewed are kept by the
second pass whatever it says. No database, no SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import fiftyone.core.labels as fol

from .labels import labels_in
from .review_rules import is_pre_annotation, label_attribute
from .vocabulary import ANSWERS_ATTRIBUTE, STATUS_FAILED, STATUS_PARTIAL, VOTES_ATTRIBUTE

FAILED = "failed"
PARTIAL = "partial"
LOW_CONFIDENCE = "low confidence"
WEAK_SUPPORT = "weak support"
REASONS = (FAILED, PARTIAL, LOW_CONFIDENCE, WEAK_SUPPORT)
"""The kinds of reason a sample escalates for, in the order the rule checks them."""


@dataclass(frozen=True)
class EscalationRule:
    """When a first answer is not good enough.

    Attributes:
        below: a kept label with a ``confidence`` under this escalates its
            sample (``None``: confidence does not escalate).
        support: a sample escalates when the share of its proposed objects
            that most answers support is under this (``None``: it does not).
    """

    below: Optional[float] = None
    support: Optional[float] = None


def has_majority(label: fol.Label) -> bool:
    """Whether more than half of its image's answers proposed the label (a single answer: yes).

    >>> has_majority(fol.Detection(votes=2, answers=3)), has_majority(fol.Detection(votes=1, answers=3))
    (True, False)
    """
    votes, answers = label_attribute(label, VOTES_ATTRIBUTE), label_attribute(label, ANSWERS_ATTRIBUTE)
    if votes is None or not answers:
        return True
    return 2 * votes > answers


def escalation_reason(status: Optional[str], value: Any, rule: EscalationRule) -> Optional[str]:
    """Why a sample's first answer escalates, or ``None`` when it stands.

    Args:
        status: the sample's status after the first pass (``ok``, ``partial``, ``failed``).
        value: its label field's value (``fo.Detections``, ``fo.Classification``, ...).
        rule: the thresholds.

    Returns:
        ``"<kind>: <details>"`` with a kind of :data:`REASONS`, or ``None``.

    >>> rule = EscalationRule(below=0.5, support=0.6)
    >>> escalation_reason("ok", fol.Detections(detections=[fol.Detection(label="cat", confidence=0.4,
    ...     votes=3, answers=3, gemini_run="r")]), rule)
    'low confidence: cat at 0.40 < 0.5'
    """
    if status == STATUS_FAILED:
        return f"{FAILED}: the first answer failed"
    if status == STATUS_PARTIAL:
        return f"{PARTIAL}: the first answer was partial"
    proposed = [label for label in labels_in(value) if is_pre_annotation(label)]
    kept = [label for label in proposed if has_majority(label)]
    if rule.below is not None:
        unsure = _least_confident(kept)
        if unsure is not None and unsure.confidence < rule.below:
            return f"{LOW_CONFIDENCE}: {unsure.label} at {unsure.confidence:.2f} < {rule.below:g}"
    if rule.support is not None and proposed and len(kept) < rule.support * len(proposed):
        return f"{WEAK_SUPPORT}: {len(kept)} of {len(proposed)} proposed objects have a majority (< {rule.support:g})"
    return None


def reason_kind(reason: str) -> str:
    """The kind of an escalation reason, without its details (for counting)."""
    return reason.split(":", 1)[0]


def _least_confident(labels: Sequence[fol.Label]) -> Optional[fol.Label]:
    scored = [label for label in labels if label.confidence is not None]
    return min(scored, key=lambda label: label.confidence) if scored else None
