"""Reading the items of a parsed reply: each key under its synonyms, each value checked.

An item is one object of a reply, a dict such as ``{"box_2d": [...],
"label": "cat"}``. Models name keys in several ways (``bbox_2d``, ``class``,
``polygon``...) and write values loosely (swapped corners, numbers as text,
``[y, x]`` polygons); the readers here take what can be used, repair what
can be repaired and count every repair and every dropped item in a
:class:`ConversionReport`, so a reviewer can see what the reply really held.
Pure functions: no FiftyOne, no SDK.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Literal, Optional, Sequence

from .boxes import SCALE, Box2d, box_iou_2d, clip_to_scale, polygon_bounds
from .classes import ClassMatcher

BOX_KEYS = ("box_2d", "bbox_2d")
LABEL_KEYS = ("label", "class", "name", "category")
MASK_KEYS = ("mask", "polygon", "segmentation")
POINT_KEYS = ("point", "point_2d")
ITEM_KEYS = (*BOX_KEYS, *POINT_KEYS, *MASK_KEYS, "label")
"""Keys that make a dict of a reply an item: any geometry, or a ``label``
(``name`` and the other label synonyms alone also mark wrappers, so they do not)."""
# keys that are geometry or bookkeeping, never copied onto a label as attributes
_CONSUMED_KEYS = frozenset({*BOX_KEYS, *LABEL_KEYS, *MASK_KEYS, *POINT_KEYS, "points"})

_RESERVED_ATTRIBUTES = frozenset(
    {"id", "_id", "_cls", "tags", "attributes", "bounding_box", "mask", "mask_path",
     "confidence", "index", "points", "closed", "filled", "label", "logits"}
)


_ATTRIBUTE_NAME = re.compile(r"[^A-Za-z0-9_]")


@dataclass
class ConversionReport:
    """What conversion kept, repaired and dropped, counted by reason; ``lacking``
    counts kept items that miss something asked for."""

    kept: int = 0
    repaired: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    lacking: Counter = field(default_factory=Counter)

    def warnings(self) -> list[str]:
        notes = [f"dropped {n} item(s): {reason}" for reason, n in sorted(self.dropped.items())]
        notes += [f"repaired {n} item(s): {reason}" for reason, n in sorted(self.repaired.items())]
        notes += [f"{n} item(s) without {what}" for what, n in sorted(self.lacking.items())]
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


def read_box_2d(value: Any, report: ConversionReport) -> Optional[list[float]]:
    """Validates a raw ``box_2d``: four finite numbers, ordered, clipped to 0–1000.

    Returns ``None`` (and counts the reason) for a box that cannot be used.

    >>> read_box_2d([300, 600, 100, 200], ConversionReport())
    [100.0, 200.0, 300.0, 600.0]
    """
    read = read_box_2d_extent(value, report)
    return read.box if read is not None else None


def read_box_2d_extent(value: Any, report: ConversionReport) -> Optional[Box2d]:
    """Like :func:`read_box_2d`, also returning the ordered box before clipping."""
    numbers = _finite_numbers(value, 4, report, "box_2d")
    if numbers is None:
        return None
    ymin, xmin, ymax, xmax = numbers
    if ymin > ymax or xmin > xmax:
        report.repaired["box corners were swapped"] += 1
        ymin, ymax = sorted((ymin, ymax))
        xmin, xmax = sorted((xmin, xmax))
    extent = [ymin, xmin, ymax, xmax]
    clipped = [clip_to_scale(v) for v in extent]
    if clipped != extent:
        report.repaired["box clipped to the image"] += 1
    ymin, xmin, ymax, xmax = clipped
    if ymax - ymin <= 0 or xmax - xmin <= 0:
        report.dropped["box has no area"] += 1
        return None
    return Box2d(clipped, extent)


def read_point(value: Any, report: ConversionReport) -> Optional[tuple[float, float]]:
    """Validates a raw ``point`` ``[y, x]`` (0–1000) and returns it as relative ``(x, y)``.

    ``{"x": .., "y": ..}`` objects are read too; values outside the image are clipped.

    >>> read_point([250, 500], ConversionReport())
    (0.5, 0.25)
    """
    if isinstance(value, dict) and "x" in value and "y" in value:
        value = [value["y"], value["x"]]
    numbers = _finite_numbers(value, 2, report, "point")
    if numbers is None:
        return None
    y, x = numbers
    if (clip_to_scale(y), clip_to_scale(x)) != (y, x):
        report.repaired["point clipped to the image"] += 1
    return clip_to_scale(x) / SCALE, clip_to_scale(y) / SCALE


def _finite_numbers(value: Any, count: int, report: ConversionReport, name: str) -> Optional[list[float]]:
    if isinstance(value, str):  # "[1, 2, 3, 4]" written as a string
        try:
            value = [float(v) for v in value.strip().strip("[]()").split(",")]
        except ValueError:
            pass
    numbers = _as_floats(value, count)
    if numbers is None:
        report.dropped[f"{name} is not {count} numbers"] += 1
        return None
    if not all(math.isfinite(v) for v in numbers):
        report.dropped[f"{name} has a non-finite value"] += 1
        return None
    return numbers


def _as_floats(value: Any, count: int) -> Optional[list[float]]:
    """``value`` as ``count`` floats, or ``None`` when it is not a list of that many numbers."""
    if not isinstance(value, (list, tuple)) or len(value) != count:
        return None
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        return None


def item_label(item: dict) -> Any:
    """The raw label of an item, under whichever key the model used."""
    return _first_key(item, LABEL_KEYS)


def item_box(item: dict) -> Any:
    """The raw ``box_2d`` of an item (``bbox_2d`` accepted)."""
    return _first_key(item, BOX_KEYS)


def item_mask(item: dict) -> Any:
    """The raw mask of an item: a PNG string or a polygon, under ``mask`` or a synonym."""
    return _first_key(item, MASK_KEYS)


def item_point(item: dict) -> Any:
    """The raw ``point`` of an item."""
    return _first_key(item, POINT_KEYS)


def _first_key(item: dict, keys: Sequence[str]) -> Any:
    for key in keys:
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


def read_confidence(value: Any) -> Optional[float]:
    """A confidence as Gemini wrote it, as a fraction in 0–1, or ``None``.

    Numbers (or numeric text, ``"85%"`` too) in 0–1 are taken as they are,
    above 1 and up to 100 as percentages; anything else is no confidence.
    """
    if isinstance(value, str):
        text = value.strip()
        percent = text.endswith("%")
        try:
            number = float(text.rstrip("%").strip())
        except ValueError:
            return None
        if percent:
            number /= 100
            if not 0 <= number <= 1:
                return None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        return None
    if not math.isfinite(number) or number < 0 or number > 100:
        return None
    return number if number <= 1 else number / 100


def usable_items(
    items: Iterable[dict],
    read_geometry: Callable[[dict, ConversionReport], Optional[Any]],
    policy: LabelPolicy,
    report: ConversionReport,
    key: Callable[[Any], tuple] = tuple,
) -> Iterator[tuple[dict, str, Any]]:
    """The items whose geometry and label can be used, each once: ``(item, label, geometry)``.

    Every item is judged on its own; one that is dropped (no usable geometry,
    a label outside the classes, an exact duplicate of an earlier item) is
    counted in ``report`` and never takes the others with it. The same
    geometry under two labels is two items.
    """
    seen: set[tuple] = set()
    for item in items:
        geometry = read_geometry(item, report)
        if geometry is None:
            continue
        label = policy.resolve(item_label(item), report)
        if label is None:
            continue
        identity = (label, *key(geometry))
        if identity in seen:
            report.dropped["duplicate item"] += 1
            continue
        seen.add(identity)
        yield item, label, geometry


def read_polygon(value: Any, report: ConversionReport) -> Optional[list[list[tuple[float, float]]]]:
    """Validates a raw polygon mask and returns its shapes as 0–1000 ``(x, y)`` points.

    Read: ``[[x, y], ...]`` (the schema's form), several such polygons, a flat
    COCO-style ``[x1, y1, x2, y2, ...]`` list and ``{"x": .., "y": ..}`` points.
    Points that are not two finite numbers are skipped, the rest clipped to
    0–1000; shapes with fewer than three distinct points are dropped.

    Returns ``None`` (and counts why) when no shape is left.
    """
    shapes = _polygon_shapes(value)
    if shapes is None:
        report.dropped["mask is neither a PNG string nor a polygon"] += 1
        return None
    cleaned, clipped, skipped = [], False, False
    for shape in shapes:
        points = []
        for point in shape:
            numbers = _point_numbers(point)
            if numbers is None:
                skipped = True
                continue
            x, y = numbers
            clipped |= (clip_to_scale(x), clip_to_scale(y)) != (x, y)
            point = (clip_to_scale(x), clip_to_scale(y))
            if not points or points[-1] != point:
                points.append(point)
        if len(points) > 1 and points[0] == points[-1]:
            points.pop()
        if len(set(points)) >= 3:
            cleaned.append(points)
    if skipped:
        report.repaired["polygon points that are not two numbers were skipped"] += 1
    if clipped:
        report.repaired["polygon clipped to the image"] += 1
    if not cleaned:
        report.dropped["polygon has fewer than 3 points"] += 1
        return None
    return cleaned


def _polygon_shapes(value: Any) -> Optional[list[list[Any]]]:
    """The shapes of a raw polygon value (one or several), or ``None`` when it is not one."""
    if not isinstance(value, (list, tuple)) or not value:
        return None
    if _is_flat_coordinates(value):
        return [_pairs(value)]
    if any(_is_point_like(p) for p in value) and not any(_is_shape_like(p) for p in value):
        return [list(value)]  # one shape; entries that are not points are skipped later
    shapes = []
    for shape in value:
        if _is_shape_like(shape):
            shapes.append(list(shape))
        elif _is_flat_coordinates(shape):
            shapes.append(_pairs(shape))
        else:
            return None
    return shapes


def _is_shape_like(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(_is_point_like(p) for p in value)


def _is_flat_coordinates(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) >= 6 and len(value) % 2 == 0
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))


def _pairs(values: Sequence[float]) -> list[tuple[float, float]]:
    return [(values[i], values[i + 1]) for i in range(0, len(values), 2)]


def _is_point_like(value: Any) -> bool:
    if isinstance(value, dict):
        return "x" in value and "y" in value
    return isinstance(value, (list, tuple)) and len(value) == 2 and not any(
        isinstance(v, (list, tuple, dict)) for v in value
    )


def _point_numbers(point: Any) -> Optional[tuple[float, float]]:
    if isinstance(point, dict):
        point = (point.get("x"), point.get("y"))
    numbers = _as_floats(point, 2)
    if numbers is None or not all(math.isfinite(v) for v in numbers):
        return None
    x, y = numbers
    return x, y


SWAPPED_POLYGON_IOU = (0.3, 0.7)
"""A polygon whose bounds overlap its box less than the first value, but more
than the second once its coordinates are swapped, was written as ``[y, x]``."""


def orient_polygon(shapes: list[list[tuple[float, float]]], box: Optional[Sequence[float]],
                   report: ConversionReport) -> list[list[tuple[float, float]]]:
    """Swaps a polygon written as ``[y, x]`` points back, judged by its item's box.

    Boxes are ``[y, x]`` and polygons ``[x, y]`` in the same reply, and models
    mix them up; the box tells which order the polygon's points follow.
    """
    if box is None:
        return shapes
    as_written = box_iou_2d(polygon_bounds(shapes), box)
    swapped = [[(y, x) for x, y in shape] for shape in shapes]
    low, high = SWAPPED_POLYGON_IOU
    if as_written < low and box_iou_2d(polygon_bounds(swapped), box) > high:
        report.repaired["polygon points were [y, x]; swapped to [x, y]"] += 1
        return swapped
    return shapes

