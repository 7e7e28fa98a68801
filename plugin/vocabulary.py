"""The names gemini-annotate writes on labels and samples, in one place.

Every pre-annotation carries its provenance (:class:`Provenance`: model, run,
review status); every sample a run touched gets a status and a reason next to
its label field; review adds ``<field>_reviewed`` and ``<field>_proposed``.
Modules that read or write these names import them from here, so a name is
spelled once.
"""

from __future__ import annotations

from dataclasses import dataclass

RUN_METHOD = "gemini_annotate"
"""The method name of gemini-annotate's FiftyOne runs (``dataset.list_runs(method=...)``)."""

# label attributes

MODEL_ATTRIBUTE = "gemini_model"
"""On a pre-annotation: the model that made it."""

RUN_ATTRIBUTE = "gemini_run"
"""On a pre-annotation: the key of the run that made it. A label without it was made by a person."""

SOURCE_ATTRIBUTE = "gemini_source_id"
"""On a promoted label: the id of the pre-annotation it was copied from."""

CONFIDENCE_ATTRIBUTE = "gemini_confidence"
"""Where an item's ``confidence`` is kept when it was not asked for: an
unrequested number must not pass for a score."""

REVIEW_ATTRIBUTE = "review"
"""On a pre-annotation: its review status, one of :data:`REVIEW_STATUSES`."""

# the signals a label's confidence is made of (consensus runs, calibration)

VOTES_ATTRIBUTE = "votes"
"""On a fused label: how many of the run's answers for its image proposed it (k of N)."""

ANSWERS_ATTRIBUTE = "answers"
"""On a fused label: how many answers its image got (N)."""

SELF_CONFIDENCE_ATTRIBUTE = "self_confidence"
"""On a fused label: the mean of the confidences Gemini gave it itself, when asked."""

AGREEMENT_ATTRIBUTE = "agreement"
"""On a fused label: how well the answers that proposed it agree on where it is (0–1)."""

AUTO_ACCEPT_TARGET_ATTRIBUTE = "auto_accept_target"
"""On a label auto-accepted: the precision it was accepted for; it stays when a person
later checks the label (an audit finds the auto-accepted labels by it)."""

RAW_CONFIDENCE_ATTRIBUTE = "raw_confidence"
"""On a calibrated label: its confidence before calibration."""

# review statuses

UNREVIEWED = "unreviewed"
AUTO_ACCEPTED = "auto_accepted"
ACCEPTED = "accepted"
REJECTED = "rejected"
EDITED = "edited"
ADDED = "added"
REVIEW_STATUSES = (UNREVIEWED, AUTO_ACCEPTED, ACCEPTED, REJECTED, EDITED, ADDED)
KEPT_STATUSES = (ACCEPTED, EDITED, ADDED)
"""Statuses of labels a person made part of the reviewed truth (``auto_accepted`` is not:
no person looked at it; promotion takes it only when asked)."""
HUMAN_STATUSES = (ACCEPTED, REJECTED, EDITED, ADDED)
"""Statuses only a person sets; nothing automatic ever changes them."""

# sample statuses, in ``<label_field>_status``

STATUS_OK = "ok"
STATUS_PARTIAL = "partial"
STATUS_FAILED = "failed"


# the fields a run and its review write next to the label field


def status_field(label_field: str) -> str:
    """The per-sample field holding ``ok`` / ``partial`` / ``failed``."""
    return f"{label_field}_status"


def reason_field(label_field: str) -> str:
    """The per-sample field saying why a sample failed, is partial, or lost items."""
    return f"{label_field}_reason"


def polylines_field(label_field: str) -> str:
    """The field receiving the outlines of ``segment`` runs (``fo.Polylines``)."""
    return f"{label_field}_polylines"


def attempt_field(label_field: str) -> str:
    """The per-sample field holding the id of the run attempt that last wrote the sample
    (runs that resume by stamp: ``overwrite``, ``replace_unreviewed``)."""
    return f"{label_field}_attempt"


def reviewed_field(label_field: str) -> str:
    """The boolean sample field saying a person reviewed the whole sample."""
    return f"{label_field}_reviewed"


def proposed_field(label_field: str) -> str:
    """The field keeping Gemini's own labels of reviewed samples, for evaluation."""
    return f"{label_field}_proposed"


def written_fields(label_field: str) -> list[str]:
    """Every field a run into ``label_field`` and its review may write, the label field first."""
    return [label_field, polylines_field(label_field), status_field(label_field),
            reason_field(label_field), reviewed_field(label_field), proposed_field(label_field),
            attempt_field(label_field)]


@dataclass(frozen=True)
class Provenance:
    """Who made a label: written onto every pre-annotation for its reviewer."""

    model: str
    run_key: str

    def attributes(self) -> dict[str, str]:
        return {MODEL_ATTRIBUTE: self.model, RUN_ATTRIBUTE: self.run_key,
                REVIEW_ATTRIBUTE: UNREVIEWED}
