"""Negative hints drafted from what reviewers rejected: prompt candidates from the dataset itself.

Reviewers who reject many proposals of a class, or re-label Gemini's objects
as another class, say something a prompt can carry: "do not label a van as
car". :func:`draft_negative_hints` reads the reviewed samples of a run's field
and drafts those sentences; they go into a run (or a compare candidate) as its
``hints`` option, and :func:`gemini_annotate.compare.compare` measures whether
they helped.

Two kinds of hint are drafted:

- a class many of whose proposals were rejected: "N of the M 'car' labels
  proposed here were rejected by reviewers: label a car only when ...";
- a class Gemini gave to objects people re-labeled as another class: a
  proposal edited into another class, or rejected where a person drew an
  object of another class over it (IoU ≥ ``iou``): "Do not label a van as car".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional

import fiftyone as fo
import fiftyone.core.labels as fol
import fiftyone.utils.iou as foui
from fiftyone import ViewField as F

from ..labels import labels_in
from ..review_rules import is_pre_annotation, review_status
from ..vocabulary import ACCEPTED, ADDED, EDITED, REJECTED, proposed_field, reviewed_field
from .status import ReviewError, label_path


@dataclass(frozen=True)
class NegativeHint:
    """One drafted hint and the evidence behind it.

    Attributes:
        label_class: the class Gemini proposed.
        text: the sentence for the prompt.
        count: the rejections (or re-labelings) it rests on.
        proposed: the reviewed proposals of ``label_class``.
        instead: for a re-labeling hint, the class people gave those objects.
    """

    label_class: str
    text: str
    count: int
    proposed: int
    instead: Optional[str] = None


def hint_texts(proposed: Counter, rejected: Counter, relabeled: Counter, *, min_count: int = 3,
               min_share: float = 0.25) -> list[NegativeHint]:
    """The hints that reviewed counts support (pure).

    Args:
        proposed: reviewed proposals per class.
        rejected: rejected proposals per class.
        relabeled: ``(proposed class, class people gave)`` → objects.
        min_count: rejections (or re-labelings) a hint needs at least.
        min_share: the share of a class's proposals rejected that a rejection hint needs.

    Returns:
        re-labeling hints first (the more specific), then rejection hints, each
        group by count, most first.

    >>> [h.text for h in hint_texts(Counter(car=10), Counter(car=4), Counter({("car", "van"): 3}))][0]
    "Do not label a van as car: reviewers re-labeled 3 of the 10 'car' labels proposed here as 'van'."
    """
    hints = []
    for (wrong, right), count in sorted(relabeled.items(), key=lambda kv: (-kv[1], kv[0])):
        if count >= min_count:
            hints.append(NegativeHint(
                wrong, f"Do not label a {right} as {wrong}: reviewers re-labeled {count} of the "
                       f"{proposed[wrong]} '{wrong}' labels proposed here as '{right}'.",
                count, proposed[wrong], instead=right))
    for name, count in sorted(rejected.items(), key=lambda kv: (-kv[1], kv[0])):
        if count >= min_count and proposed[name] and count / proposed[name] >= min_share:
            hints.append(NegativeHint(
                name, f"{count} of the {proposed[name]} '{name}' labels proposed here were rejected by "
                      f"reviewers: label a {name} only when it clearly is one, and leave out doubtful ones.",
                count, proposed[name]))
    return hints


def draft_negative_hints(samples: fo.core.collections.SampleCollection, label_field: str, *,
                         min_count: int = 3, min_share: float = 0.25, iou: float = 0.5) -> list[NegativeHint]:
    """Negative hints from the reviewed samples of a pre-annotation field.

    Args:
        samples: the collection whose reviewed samples are read.
        label_field: the pre-annotation field people reviewed.
        min_count: rejections (or re-labelings) a hint needs at least.
        min_share: the share of a class's proposals rejected that a rejection hint needs.
        iou: how much a person's drawn object must overlap a rejected proposal to
            count as the same object re-labeled.

    Returns:
        the hints (see :func:`hint_texts`); their ``text`` goes into ``hints=``.

    Raises:
        ReviewError: no sample of ``samples`` is marked reviewed for ``label_field``.
    """
    label_path(samples, label_field)  # a label field, or a clear error
    flag = reviewed_field(label_field)
    reviewed = samples.match(F(flag) == True) if samples._dataset.has_field(flag) else samples.limit(0)  # noqa: E712
    if len(reviewed) == 0:
        raise ReviewError(f"no sample is marked reviewed for {label_field!r}: hints are drafted from "
                          "reviewed samples (mark some reviewed first)")
    has_proposals = samples._dataset.has_field(proposed_field(label_field))
    values = reviewed.values(label_field)
    kept = reviewed.values(proposed_field(label_field)) if has_proposals else [None] * len(values)
    proposed, rejected, relabeled = Counter(), Counter(), Counter()
    for value, proposals in zip(values, kept):
        originals = {p.id: p for p in labels_in(proposals)}
        labels = labels_in(value)
        drawn = [label for label in labels if not is_pre_annotation(label) or review_status(label) == ADDED]
        for label in labels:
            status = review_status(label)
            if not is_pre_annotation(label) or status not in (ACCEPTED, EDITED, REJECTED):
                continue
            original = originals.get(label.id, label)
            name = str(original.label)
            proposed[name] += 1
            if status == REJECTED:
                rejected[name] += 1
                instead = _drawn_over(label, drawn, iou)
                if instead is not None and instead != name:
                    relabeled[(name, instead)] += 1
            elif status == EDITED and label.label != original.label:
                relabeled[(name, str(label.label))] += 1
    return hint_texts(proposed, rejected, relabeled, min_count=min_count, min_share=min_share)


def _drawn_over(label: fol.Label, drawn: list[fol.Label], iou: float) -> Optional[str]:
    """The class of the drawn object best overlapping a rejected proposal (IoU ≥ ``iou``), if any."""
    if not drawn or getattr(label, "bounding_box", None) is None:
        return None
    boxes = [d for d in drawn if getattr(d, "bounding_box", None) is not None]
    if not boxes:
        return None
    overlaps = foui.compute_ious([label], boxes, use_boxes=True, error_level=2)[0]
    best = max(range(len(boxes)), key=lambda j: overlaps[j])
    return str(boxes[best].label) if overlaps[best] >= iou else None
