"""Gemini's 0–1000 geometry → FiftyOne labels. Pure functions: no SDK, no database.

Gemini boxes are ``[ymin, xmin, ymax, xmax]`` normalised to 0–1000 over the
image as sent; FiftyOne boxes are ``[x, y, width, height]`` relative to 0–1::

    [ymin, xmin, ymax, xmax] -> [xmin/1000, ymin/1000, (xmax-xmin)/1000, (ymax-ymin)/1000]

Every repair (reordered corners, clipping) and every dropped item is counted in
a :class:`ConversionReport`, so a reviewer can see what the reply really held.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Optional, Sequence

import fiftyone as fo

from .classes import ClassMatcher

SCALE = 1000.0
REVIEW_ATTRIBUTE = "review"
UNREVIEWED = "unreviewed"

BOX_KEYS = ("box_2d", "bbox_2d")
LABEL_KEYS = ("label", "class", "name", "category")
# keys that are geometry or bookkeeping, never copied onto a label as attributes
_CONSUMED_KEYS = frozenset({*BOX_KEYS, *LABEL_KEYS, "mask", "point", "points", "polygon"})
_RESERVED_ATTRIBUTES = frozenset(
    {"id", "_id", "_cls", "tags", "attributes", "bounding_box", "mask", "mask_path",
     "confidence", "index", "points", "closed", "filled", "label", "logits"}
)
_ATTRIBUTE_NAME = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True)
class Provenance:
    """Who made a label: written onto every pre-annotation for its reviewer."""

    model: str
    run_key: str

    def attributes(self) -> dict[str, str]:
        return {"gemini_model": self.model, "gemini_run": self.run_key,
                REVIEW_ATTRIBUTE: UNREVIEWED}


@dataclass
class ConversionReport:
    """What conversion kept, repaired and dropped, counted by reason."""

    kept: int = 0
    repaired: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)

    def warnings(self) -> list[str]:
        notes = [f"dropped {n} item(s): {reason}" for reason, n in sorted(self.dropped.items())]
        notes += [f"repaired {n} item(s): {reason}" for reason, n in sorted(self.repaired.items())]
        return notes


@dataclass(frozen=True)
class LabelPolicy:
    """How item labels are matched to the requested classes.

    Attributes:
        matcher: the class matcher, or ``None`` when no classes were given.
        unknown_labels: ``drop`` items whose label matches no class, or ``keep``
            them with the label as written.
    """

    matcher: Optional[ClassMatcher] = None
    unknown_labels: Literal["drop", "keep"] = "drop"

    @classmethod
    def for_classes(cls, classes: Optional[Sequence[str]], unknown_labels: str = "drop") -> "LabelPolicy":
        return cls(ClassMatcher(classes) if classes else None, unknown_labels)  # type: ignore[arg-type]

    def resolve(self, raw_label: Any, report: ConversionReport) -> Optional[str]:
        """The label to write for an item's raw label, or ``None`` to drop the item."""
        label = str(raw_label).strip() if raw_label is not None else ""
        if self.matcher is None:
            if not label:
                report.repaired["missing label, named 'object'"] += 1
                return "object"
            return label
        matched = self.matcher.match(label) if label else None
        if matched is not None:
            if matched != label:
                report.repaired["label normalised to a class name"] += 1
            return matched
        if self.unknown_labels == "keep" and label:
            return label
        report.dropped["label is not one of the classes"] += 1
        return None


def box_2d_to_relative(box: Sequence[float]) -> list[float]:
    """Converts an ordered, in-range ``[ymin, xmin, ymax, xmax]`` (0–1000) box.

    >>> box_2d_to_relative([100, 200, 300, 600])
    [0.2, 0.1, 0.4, 0.2]
    """
    ymin, xmin, ymax, xmax = box
    return [xmin / SCALE, ymin / SCALE, (xmax - xmin) / SCALE, (ymax - ymin) / SCALE]


def relative_to_box_2d(bounding_box: Sequence[float]) -> list[int]:
    """The 0–1000 ``[ymin, xmin, ymax, xmax]`` box nearest a relative FiftyOne box.

    The inverse of :func:`box_2d_to_relative` up to quantisation: each edge moves
    by at most 0.0005 of the image side.

    >>> relative_to_box_2d([0.2, 0.1, 0.4, 0.2])
    [100, 200, 300, 600]
    """
    x, y, w, h = bounding_box
    return [round(y * SCALE), round(x * SCALE), round((y + h) * SCALE), round((x + w) * SCALE)]


def read_box_2d(value: Any, report: ConversionReport) -> Optional[list[float]]:
    """Validates a raw ``box_2d``: four finite numbers, ordered, clipped to 0–1000.

    Returns ``None`` (and counts the reason) for a box that cannot be used.
    """
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        report.dropped["box_2d is not four numbers"] += 1
        return None
    try:
        ymin, xmin, ymax, xmax = (float(v) for v in value)
    except (TypeError, ValueError):
        report.dropped["box_2d is not four numbers"] += 1
        return None
    if not all(math.isfinite(v) for v in (ymin, xmin, ymax, xmax)):
        report.dropped["box_2d has a non-finite value"] += 1
        return None
    if ymin > ymax or xmin > xmax:
        report.repaired["box corners were swapped"] += 1
        ymin, ymax = sorted((ymin, ymax))
        xmin, xmax = sorted((xmin, xmax))
    clipped = [min(max(v, 0.0), SCALE) for v in (ymin, xmin, ymax, xmax)]
    if clipped != [ymin, xmin, ymax, xmax]:
        report.repaired["box clipped to the image"] += 1
    ymin, xmin, ymax, xmax = clipped
    if ymax - ymin <= 0 or xmax - xmin <= 0:
        report.dropped["box has no area"] += 1
        return None
    return [ymin, xmin, ymax, xmax]


def item_label(item: dict) -> Any:
    """The raw label of an item, under whichever key the model used."""
    for key in LABEL_KEYS:
        if key in item:
            return item[key]
    return None


def item_box(item: dict) -> Any:
    """The raw ``box_2d`` of an item (``bbox_2d`` accepted)."""
    for key in BOX_KEYS:
        if key in item:
            return item[key]
    return None


def extra_attributes(item: dict) -> dict[str, Any]:
    """An item's extra keys, kept as label attributes under safe names.

    Keys that clash with FiftyOne's own label fields (``id``, ``confidence``...)
    are prefixed with ``gemini_``: Gemini has no calibrated confidence, so a
    ``confidence`` it writes must not pass for one.
    """
    attributes = {}
    for key, value in item.items():
        if key in _CONSUMED_KEYS or not isinstance(value, (str, int, float, bool)):
            continue
        name = _ATTRIBUTE_NAME.sub("_", str(key)).strip("_") or "value"
        if name in _RESERVED_ATTRIBUTES or name[0].isdigit() or name.startswith("_"):
            name = f"gemini_{name.lstrip('_')}"
        attributes[name] = value
    return attributes


def items_to_detections(
    items: Iterable[dict],
    *,
    policy: LabelPolicy,
    provenance: Provenance,
) -> tuple[fo.Detections, ConversionReport]:
    """Converts parsed items with ``box_2d`` into ``fo.Detections``.

    Each item is validated on its own: a bad item is dropped and counted, never
    the whole reply. Exact duplicates (same label and box) are dropped; the same
    box under different labels is kept.

    Args:
        items: item dicts from :func:`gemini_annotate.parse.parse_items`.
        policy: how labels are matched to classes.
        provenance: model and run written onto each label.

    Returns:
        the detections and a :class:`ConversionReport`.
    """
    report = ConversionReport()
    detections = []
    seen: set[tuple] = set()
    for item in items:
        raw_box = item_box(item)
        if raw_box is None:
            report.dropped["item has no box_2d"] += 1
            continue
        box = read_box_2d(raw_box, report)
        if box is None:
            continue
        label = policy.resolve(item_label(item), report)
        if label is None:
            continue
        key = (label, *box)
        if key in seen:
            report.dropped["duplicate item"] += 1
            continue
        seen.add(key)
        detections.append(
            fo.Detection(
                label=label,
                bounding_box=box_2d_to_relative(box),
                **extra_attributes(item),
                **provenance.attributes(),
            )
        )
    report.kept = len(detections)
    return fo.Detections(detections=detections), report
