"""Whether people kept Gemini's proposals: the outcomes a precision is measured on.

A proposal a person reviewed was right when it was kept: ``accepted``, or
``edited`` into a label of the same class that still overlaps Gemini's version
(IoU at least :data:`KEPT_IOU`: a nudged box, not a different object).
``rejected`` is wrong. Gemini's version of an edited label is the one kept in
``<field>_proposed``; an edited label whose proposal was not kept counts as
wrong, the cautious reading.
"""

from __future__ import annotations

from typing import Optional

import fiftyone as fo
import fiftyone.core.labels as fol
import fiftyone.utils.iou as foui
import numpy as np
from fiftyone import ViewField as F

from ..labels import labels_in
from ..precision import Outcome
from ..review_rules import SAME_POINT_DISTANCE, is_pre_annotation, label_attribute, review_status
from ..vocabulary import ACCEPTED, EDITED, RAW_CONFIDENCE_ATTRIBUTE, REJECTED, proposed_field, reviewed_field
from .status import label_path

KEPT_IOU = 0.5
"""An edited proposal overlapping its edit this much (same class) was right, only touched up."""


def label_confidence(label: fol.Label) -> Optional[float]:
    """The confidence the run gave a label: ``raw_confidence`` once a calibration rewrote
    ``confidence``, else ``confidence``; a keypoint's (one per point) is their mean. ``None``
    without one.

    Auto-accept's thresholds come from reviewed proposals (whose copies in
    ``<field>_proposed`` keep the run's own values) and are applied to labels a
    calibration may have rewritten since: both sides are read on the run's own
    scale, which a calibration maps monotonically, so per class nothing is lost.
    """
    value = label_attribute(label, RAW_CONFIDENCE_ATTRIBUTE, label_attribute(label, "confidence"))
    if isinstance(value, (list, tuple)):
        known = [v for v in value if v is not None]
        return float(np.mean(known)) if known else None
    return None if value is None else float(value)


def edit_kept_proposal(edited: fol.Label, proposal: fol.Label) -> bool:
    """Whether an edit kept Gemini's proposal: same class and the same object (IoU ≥ :data:`KEPT_IOU`).

    A classification has no geometry: only its class counts. A keypoint has
    no extent: its points must stay within :data:`SAME_POINT_DISTANCE`.
    """
    if type(edited) is not type(proposal) or edited.label != proposal.label:
        return False
    if isinstance(edited, fol.Classification):
        return True
    if isinstance(edited, fol.Keypoint):
        a, b = np.asarray(edited.points, float), np.asarray(proposal.points, float)
        return a.shape == b.shape and bool(np.nanmax(np.linalg.norm(a - b, axis=1)) < SAME_POINT_DISTANCE)
    # boxes for every other type, as review_rules compares objects (polygon IoUs need shapely)
    return bool(foui.compute_ious([edited], [proposal], use_boxes=True, error_level=2)[0][0] >= KEPT_IOU)


def was_kept(label: fol.Label, proposal: Optional[fol.Label]) -> Optional[bool]:
    """Whether a person kept a proposal; ``None`` when no person has decided (or a person drew it)."""
    status = review_status(label)
    if status == ACCEPTED:
        return True
    if status == REJECTED:
        return False
    if status == EDITED:
        return proposal is not None and edit_kept_proposal(label, proposal)
    return None


def label_outcomes(
    samples: fo.core.collections.SampleCollection, label_field: str,
) -> list[tuple[fol.Label, Outcome]]:
    """Each pre-annotation of ``samples`` a person decided on, with its :class:`Outcome`.

    The confidence is the one Gemini proposed the label with (its kept
    proposal's, when there is one).
    """
    label_path(samples, label_field)  # a label field, or a clear error
    proposals_field = proposed_field(label_field)
    has_proposals = samples._dataset.has_field(proposals_field)
    values = samples.values(label_field)
    proposed = samples.values(proposals_field) if has_proposals else [None] * len(values)
    found = []
    for value, kept in zip(values, proposed):
        proposals = {p.id: p for p in labels_in(kept)}
        for label in labels_in(value):
            if not is_pre_annotation(label):
                continue
            proposal = proposals.get(label.id)
            correct = was_kept(label, proposal)
            if correct is not None:
                confidence = label_confidence(proposal if proposal is not None else label)
                found.append((label, Outcome(str(label.label), confidence, correct)))
    return found


def reviewed_outcomes(samples: fo.core.collections.SampleCollection, label_field: str) -> list[Outcome]:
    """The outcomes of the proposals on the samples of ``samples`` a person reviewed as a whole."""
    flag = reviewed_field(label_field)
    if not samples._dataset.has_field(flag):
        return []
    return [outcome for _, outcome in label_outcomes(samples.match(F(flag) == True), label_field)]  # noqa: E712
