"""Reviewing pre-annotations: statuses, corrections and promotion, evaluation.

Every label a run writes carries a ``review`` attribute (see
:class:`gemini_annotate.vocabulary.Provenance`), the one source of truth for its
review state:

``unreviewed``
    as Gemini made it; nobody has looked at it yet.
``accepted``
    a person checked it and kept it unchanged.
``rejected``
    a person said it is wrong. It stays in the field (so evaluation can count
    it as a false positive) but is never promoted.
``edited``
    a person corrected it (class or geometry); Gemini's version is kept in
    ``<field>_proposed``.
``added``
    a person drew it during review (it has no ``gemini_run``).

A sample is *reviewed* when ``<field>_reviewed`` is ``True``: a person looked at
the whole image, so what Gemini missed there is known. Marking a sample
reviewed accepts its labels that are still unreviewed.

Label tags are not used for review: tags are free for a team's own use, and
one attribute per label cannot disagree with itself.

These are plain functions over FiftyOne collections, used alike by the App
operators, the Python API and the ``gemini-annotate`` command. This package's
namespace is the review API; its modules hold one concern each:
:mod:`~gemini_annotate.review.status` (statuses in the dataset),
:mod:`~gemini_annotate.review.promotion` (corrections and promotion),
:mod:`~gemini_annotate.review.evaluation` (scores),
:mod:`~gemini_annotate.review.calibration` (confidences fitted to what people
kept), :mod:`~gemini_annotate.review.reliability` (the reliability diagram);
the rules they apply to single labels are :mod:`gemini_annotate.review_rules`.
Listing and deleting runs is :mod:`gemini_annotate.runs`.
"""

from ..calibration import Calibration, ReliabilityBin
from ..labels import field_value, labels_in
from ..review_rules import review_status, same_geometry
from ..vocabulary import (
    ACCEPTED,
    ADDED,
    AUTO_ACCEPTED,
    EDITED,
    KEPT_STATUSES,
    REJECTED,
    REVIEW_STATUSES,
    UNREVIEWED,
    proposed_field,
    reviewed_field,
)
from .audit import AUDIT_TAG, AuditClass, AuditDraw, AuditReport, audit, audit_report
from .auto_accept import AUTO_ACCEPT_TARGET_ATTRIBUTE, AutoAcceptReport, auto_accept
from .calibration import apply_calibration, calibrate, calibrate_labels, load_calibration, save_calibration
from .evaluation import CLASSIFICATION_NOTE, MAP_NOTE, RANKED_NOTE, EvaluationReport, evaluate
from .outcomes import KEPT_IOU, edit_kept_proposal, label_confidence, reviewed_outcomes
from .promotion import CorrectionCounts, apply_corrections, keep_proposals, promote
from .queue import UNKNOWN_CONFIDENCE, expected_mistakes, review_queue
from .reliability import reliability_figure, save_reliability_png
from .status import (
    ReviewCounts,
    ReviewError,
    field_classes,
    label_path,
    mark_reviewed,
    only_classes,
    only_unreviewed,
    pre_annotation_fields,
    review_counts,
    set_review_status,
)

__all__ = [
    "Calibration", "ReliabilityBin", "apply_calibration", "calibrate", "calibrate_labels", "load_calibration",
    "reliability_figure", "save_calibration", "save_reliability_png",
    "AUDIT_TAG", "AUTO_ACCEPTED", "AUTO_ACCEPT_TARGET_ATTRIBUTE", "KEPT_IOU", "UNKNOWN_CONFIDENCE",
    "AuditClass", "AuditDraw", "AuditReport", "AutoAcceptReport",
    "audit", "audit_report", "auto_accept", "edit_kept_proposal", "expected_mistakes", "label_confidence",
    "review_queue", "reviewed_outcomes",
    "ACCEPTED", "ADDED", "EDITED", "KEPT_STATUSES", "REJECTED", "REVIEW_STATUSES", "UNREVIEWED",
    "CLASSIFICATION_NOTE", "MAP_NOTE", "RANKED_NOTE",
    "CorrectionCounts", "EvaluationReport", "ReviewCounts", "ReviewError",
    "apply_corrections", "evaluate", "field_classes", "field_value", "keep_proposals",
    "label_path", "labels_in", "mark_reviewed", "only_classes", "only_unreviewed",
    "pre_annotation_fields", "promote", "proposed_field", "review_counts", "review_status",
    "reviewed_field", "same_geometry", "set_review_status",
]
