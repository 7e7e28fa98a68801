"""Auditing auto-accepted labels: draw a stratified sample for people to check, then measure it.

:func:`audit` tags a random sample of ``auto_accepted`` labels, stratified by
class and confidence band (:mod:`gemini_annotate.audit_sampling`), with a
**label tag** (``audit`` by default). A label tag, not a sample tag: the audit
is of those labels only; a sample also holds labels that were not drawn (other
auto-accepted ones, unreviewed ones), and judging those too would measure a
different, unplanned sample. The tag is not a review status (``review`` stays
the one source of truth); it only says which labels the audit drew.

People then accept, edit or reject the tagged labels as usual.
:func:`audit_report` finds them by their tag and the ``auto_accept_target``
:func:`~gemini_annotate.review.auto_accept` left on them (their status no
longer says they were auto-accepted) and measures the precision of the
auto-accepted labels per class, with Clopper–Pearson intervals.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional

import fiftyone as fo
from fiftyone import ViewField as F

from ..audit_sampling import DEFAULT_BANDS, AuditCandidate, stratified_draw
from ..labels import labels_in
from ..precision import FLAGGED_VERDICTS, audit_verdict, precision_interval
from ..review_rules import label_attribute, review_status
from ..vocabulary import AUTO_ACCEPT_TARGET_ATTRIBUTE, AUTO_ACCEPTED, REVIEW_ATTRIBUTE, proposed_field
from .outcomes import label_confidence, was_kept
from .status import ReviewError, label_path

AUDIT_TAG = "audit"
"""The label tag of the labels an audit drew."""


@dataclass
class AuditDraw:
    """The labels an audit drew and the view people check them in.

    Attributes:
        view: the samples with audited labels still ``auto_accepted``, showing only those.
        drawn: labels tagged by this draw.
        candidates: auto-accepted labels not audited before, drawn from.
        per_class: class → labels drawn.
        seed: the seed of the draw (the same labels and seed draw the same sample).
    """

    label_field: str
    tag: str
    seed: int
    drawn: int
    candidates: int
    per_class: dict[str, int]
    view: fo.core.collections.SampleCollection

    def describe(self) -> str:
        classes = ", ".join(f"{n} {name}" for name, n in self.per_class.items()) or "none"
        return (f"{self.label_field}: {self.drawn} of {self.candidates} auto-accepted label(s) drawn for audit "
                f"(seed {self.seed}; {classes}), tagged {self.tag!r}: accept, edit or reject them, "
                f"then run audit_report")


def audit(
    samples: fo.core.collections.SampleCollection,
    label_field: str,
    n: int,
    *,
    seed: int = 0,
    tag: str = AUDIT_TAG,
    bands: int = DEFAULT_BANDS,
) -> AuditDraw:
    """Tags a random sample of auto-accepted labels for people to check.

    Draws ``n`` of the labels :func:`~gemini_annotate.review.auto_accept`
    accepted that no audit drew yet, stratified by class and confidence band
    (each stratum in proportion to its size), and adds the label tag ``tag``
    to them. Repeating it draws further labels; the tags accumulate into one
    audit.

    Returns:
        the :class:`AuditDraw`, whose ``view`` shows the labels to check.

    Raises:
        ReviewError: no auto-accepted label is left to audit.
    """
    label_path(samples, label_field)  # a label field, or a clear error
    candidates = []
    for value in samples.values(label_field):
        for label in labels_in(value):
            if (review_status(label) == AUTO_ACCEPTED and label.has_field(AUTO_ACCEPT_TARGET_ATTRIBUTE)
                    and tag not in (label.tags or [])):
                candidates.append(AuditCandidate(label.id, str(label.label), label_confidence(label)))
    if not candidates:
        raise ReviewError(f"no auto-accepted label of {label_field!r} is left to audit: run auto_accept first")
    drawn = stratified_draw(candidates, n, seed=seed, bands=bands)
    if drawn:
        samples.select_labels(ids=drawn, fields=label_field).tag_labels(tag, label_fields=label_field)
    classes = {c.label_id: c.label for c in candidates}
    per_class: dict[str, int] = defaultdict(int)
    for label_id in drawn:
        per_class[classes[label_id]] += 1
    view = samples.select_labels(tags=tag, fields=label_field).filter_labels(
        label_field, F(REVIEW_ATTRIBUTE) == AUTO_ACCEPTED)
    return AuditDraw(label_field, tag, seed, len(drawn), len(candidates), dict(sorted(per_class.items())), view)


@dataclass
class AuditClass:
    """The audit of one class (or of all: ``label`` is ``None``).

    Attributes:
        audited: audited labels a person decided on.
        correct: those people kept.
        pending: audited labels nobody checked yet.
        interval: the two-sided Clopper–Pearson interval of the precision.
        verdict: what it says about the target (:func:`gemini_annotate.precision.audit_verdict`).
    """

    label: Optional[str]
    audited: int
    correct: int
    pending: int
    interval: tuple[float, float]
    verdict: str

    @property
    def precision(self) -> Optional[float]:
        return self.correct / self.audited if self.audited else None

    @property
    def flagged(self) -> bool:
        return self.verdict in FLAGGED_VERDICTS


@dataclass
class AuditReport:
    """The measured precision of auto-accepted labels, per class and over all.

    Attributes:
        target_precision: the precision the labels were auto-accepted for.
        confidence_level: the level of the intervals.
        overall: all audited labels.
        per_class: class → :class:`AuditClass`.
    """

    label_field: str
    target_precision: float
    confidence_level: float
    overall: AuditClass
    per_class: dict[str, AuditClass] = field(default_factory=dict)

    @property
    def flagged(self) -> list[str]:
        """Classes whose audit falls under the target."""
        return [name for name, row in self.per_class.items() if row.flagged]

    def describe(self) -> str:
        level = f"{self.confidence_level:.0%}"
        lines = [f"{self.label_field}: audit of auto-accepted labels against a precision of "
                 f"{self.target_precision:.3g} ({level} Clopper–Pearson intervals)",
                 f"{'class':<24}{'checked':>8}{'kept':>6}{'pending':>8}{'precision':>10}  {'interval':<15}verdict"]
        for name, row in [*self.per_class.items(), ("all classes", self.overall)]:
            precision = "–" if row.precision is None else f"{row.precision:.3f}"
            interval = f"[{row.interval[0]:.3f}, {row.interval[1]:.3f}]"
            lines.append(f"{name:<24}{row.audited:>8}{row.correct:>6}{row.pending:>8}{precision:>10}  "
                         f"{interval:<15}{row.verdict}")
        if self.flagged:
            lines.append(f"flagged: {', '.join(self.flagged)}: raise their threshold (auto-accept with a higher "
                         "target, or review more of them) or review their auto-accepted labels")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        def row(r: AuditClass) -> dict:
            return {"audited": r.audited, "correct": r.correct, "pending": r.pending, "precision": r.precision,
                    "interval": list(r.interval), "verdict": r.verdict}

        return {"label_field": self.label_field, "target_precision": self.target_precision,
                "confidence_level": self.confidence_level, "overall": row(self.overall),
                "per_class": {name: row(r) for name, r in self.per_class.items()}, "flagged": self.flagged}


def audit_report(
    samples: fo.core.collections.SampleCollection,
    label_field: str,
    *,
    target_precision: Optional[float] = None,
    confidence_level: float = 0.95,
    tag: str = AUDIT_TAG,
) -> AuditReport:
    """Measures the precision of the auto-accepted labels people checked in an audit.

    An audited label (tagged ``tag``, auto-accepted by ``auto_accept``) was
    right when people kept it: ``accepted``, or ``edited`` without changing its
    class or moving it (:mod:`~gemini_annotate.review.outcomes`); ``rejected``
    is wrong; still ``auto_accepted`` is pending.

    Args:
        target_precision: the precision to judge against; by default the one
            the labels were auto-accepted for (the highest, if several).
        confidence_level: the level of the two-sided intervals.

    Raises:
        ReviewError: no label of ``label_field`` was drawn for audit.
    """
    label_path(samples, label_field)
    has_proposals = samples._dataset.has_field(proposed_field(label_field))
    audited = samples.select_labels(tags=tag, fields=label_field)
    values = audited.values(label_field)
    proposed = audited.values(proposed_field(label_field)) if has_proposals else [None] * len(values)
    tallies: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # checked, kept, pending
    targets = []
    for value, kept in zip(values, proposed):
        proposals = {p.id: p for p in labels_in(kept)}
        for label in labels_in(value):
            target = label_attribute(label, AUTO_ACCEPT_TARGET_ATTRIBUTE)
            if tag not in (label.tags or []) or target is None:
                continue
            targets.append(target)
            tally = tallies[str(label.label)]
            right = was_kept(label, proposals.get(label.id))
            if right is None:
                tally[2] += 1
            else:
                tally[0] += 1
                tally[1] += int(right)
    if not targets:
        raise ReviewError(f"no auto-accepted label of {label_field!r} is tagged {tag!r}: draw an audit first "
                          "(review.audit)")
    target = target_precision if target_precision is not None else max(targets)

    def row(name: Optional[str], checked: int, correct: int, pending: int) -> AuditClass:
        return AuditClass(name, checked, correct, pending, precision_interval(correct, checked, confidence_level),
                          audit_verdict(correct, checked, target, confidence_level))

    per_class = {name: row(name, *tallies[name]) for name in sorted(tallies)}
    total = [sum(t[i] for t in tallies.values()) for i in range(3)]
    return AuditReport(label_field, target, confidence_level, row(None, *total), per_class)
