"""Gemini's 0–1000 geometry → FiftyOne labels. Pure functions: no SDK, no database.

Gemini boxes are ``[ymin, xmin, ymax, xmax]`` normalised to 0–1000 over the
image as sent; FiftyOne boxes are ``[x, y, width, height]`` relative to 0–1::

    [ymin, xmin, ymax, xmax] -> [xmin/1000, ymin/1000, (xmax-xmin)/1000, (ymax-ymin)/1000]

Masks come in two forms, and both are read whatever was asked for:

- polygons ``[[x, y], ...]`` in 0–1000 over the whole image (Gemini 3), and
- base64 PNG probability maps covering the box only (Gemini 2.5).

Segmentation writes both an instance mask on each ``fo.Detection`` (what
``evaluate_detections(..., use_masks=True)`` reads) and the outline as an
``fo.Polyline`` (what annotation tools edit), the two linked by a shared
``instance`` and ``index``.

Pixel geometry follows FiftyOne's area convention: relative ``0`` is the left
edge of the first pixel and ``1`` the right edge of the last, so pixel ``i``
covers ``[i, i + 1)``. Polygons are rasterised with pycocotools (the
rasteriser FiftyOne's COCO importer uses) and traced back along pixel edges,
so a mask → polygon → mask round trip is exact.

Every repair (reordered corners, clipping) and every dropped item is counted in
a :class:`ConversionReport`, so a reviewer can see what the reply really held.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Literal, NamedTuple, Optional, Sequence

import cv2
import fiftyone as fo
import numpy as np
from pycocotools import mask as coco_mask
from skimage import measure

from .classes import ClassMatcher

SCALE = 1000.0
REVIEW_ATTRIBUTE = "review"
UNREVIEWED = "unreviewed"

BOX_KEYS = ("box_2d", "bbox_2d")
LABEL_KEYS = ("label", "class", "name", "category")
MASK_KEYS = ("mask", "polygon", "segmentation")
POINT_KEYS = ("point", "point_2d")
# keys that are geometry or bookkeeping, never copied onto a label as attributes
_CONSUMED_KEYS = frozenset({*BOX_KEYS, *LABEL_KEYS, *MASK_KEYS, *POINT_KEYS, "points"})

DEFAULT_MASK_THRESHOLD = 127
"""PNG probabilities above this value are inside the object (Google's own
threshold; a > 0 threshold grows masks by a few percent)."""

POLYGON_TOLERANCE = 1.0
"""Pixels a traced outline may deviate from its mask: fewer vertices to edit,
and a round trip IoU above 0.96 even for 32-pixel objects."""

MAX_MASK_SIDE = 4096
"""Instance masks are stored at the box's size in pixels, up to this side
(FiftyOne stretches a mask over its box when drawing and evaluating)."""

MAX_MASK_PIXELS = 4096 * 4096
"""Largest PNG mask decoded (Gemini's are about 256×256)."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MASK_TOKEN = re.compile(r"<(?:start_of_mask|end_of_mask|seg_\d+)>")
_DATA_URI = re.compile(r"^data:[^,;]*(?:;[^,;]*)*;base64,", re.IGNORECASE)
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


class Box2d(NamedTuple):
    """A usable ``box_2d``: ordered and clipped to 0–1000, and as the model wrote it.

    ``extent`` is the ordered box before clipping: a PNG mask covers that
    whole box, so a mask whose box was clipped is cropped in proportion.
    """

    box: list[float]
    extent: list[float]


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
    clipped = [_clip(v) for v in extent]
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
    if (_clip(y), _clip(x)) != (y, x):
        report.repaired["point clipped to the image"] += 1
    return _clip(x) / SCALE, _clip(y) / SCALE


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


def _clip(value: float) -> float:
    return min(max(value, 0.0), SCALE)


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


CONFIDENCE_ATTRIBUTE = "gemini_confidence"
"""Where an item's ``confidence`` is kept when it was not asked for (see :func:`extra_attributes`)."""


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


def adopt_confidence(labels: Iterable[fo.Label], report: ConversionReport) -> None:
    """Makes the confidence a run asked Gemini for each label's ``confidence``.

    Conversion keeps an item's ``confidence`` as ``gemini_confidence`` (an
    unrequested number must not pass for a score); a run that asked for it
    moves it into ``confidence``, where FiftyOne ranks labels by it (a
    keypoint's is one per point). A label without a usable value keeps
    ``confidence`` empty and is counted.
    """
    for label in labels:
        raw = label[CONFIDENCE_ATTRIBUTE] if label.has_field(CONFIDENCE_ATTRIBUTE) else None
        value = read_confidence(raw)
        if value is None:
            report.lacking["a usable confidence"] += 1
            continue
        label.confidence = [value] * len(label.points) if isinstance(label, fo.Keypoint) else value
        label.clear_field(CONFIDENCE_ATTRIBUTE)


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


def items_to_detections(
    items: Iterable[dict],
    *,
    policy: LabelPolicy,
    provenance: Provenance,
) -> tuple[fo.Detections, ConversionReport]:
    """Converts parsed items with ``box_2d`` into ``fo.Detections``.

    Args:
        items: item dicts from :func:`gemini_annotate.parse.parse_items`.
        policy: how labels are matched to classes.
        provenance: model and run written onto each label.

    Returns:
        the detections and a :class:`ConversionReport` (see :func:`usable_items`).
    """
    report = ConversionReport()
    detections = [
        fo.Detection(label=label, bounding_box=box_2d_to_relative(box),
                     **extra_attributes(item), **provenance.attributes())
        for item, label, box in usable_items(items, _item_box_2d, policy, report)
    ]
    report.kept = len(detections)
    return fo.Detections(detections=detections), report


def _item_box_2d(item: dict, report: ConversionReport) -> Optional[list[float]]:
    raw_box = item_box(item)
    if raw_box is None:
        report.dropped["item has no box_2d"] += 1
        return None
    return read_box_2d(raw_box, report)


# points


def items_to_keypoints(
    items: Iterable[dict],
    *,
    policy: LabelPolicy,
    provenance: Provenance,
) -> tuple[fo.Keypoints, ConversionReport]:
    """Converts parsed items with ``point`` ``[y, x]`` (0–1000) into ``fo.Keypoints``.

    Each item becomes one ``fo.Keypoint`` holding one point, so every point
    keeps its own label and review state. An item that has a ``box_2d`` but no
    point is pointed at the box's centre.
    """
    report = ConversionReport()
    keypoints = [
        fo.Keypoint(label=label, points=[point], index=number,
                    **extra_attributes(item), **provenance.attributes())
        for number, (item, label, point) in enumerate(
            usable_items(items, _item_point_or_box_centre, policy, report), start=1)
    ]
    report.kept = len(keypoints)
    return fo.Keypoints(keypoints=keypoints), report


def _item_point_or_box_centre(item: dict, report: ConversionReport) -> Optional[tuple[float, float]]:
    raw_point = item_point(item)
    if raw_point is not None:
        return read_point(raw_point, report)
    raw_box = item_box(item)
    if raw_box is None:
        report.dropped["item has no point"] += 1
        return None
    box = read_box_2d(raw_box, report)
    if box is None:
        return None
    report.repaired["point taken from the centre of a box_2d"] += 1
    ymin, xmin, ymax, xmax = box
    return (xmin + xmax) / 2 / SCALE, (ymin + ymax) / 2 / SCALE


# masks


class MaskError(ValueError):
    """A mask that cannot be read; the message says why."""


def is_mask_token_text(value: Any) -> bool:
    """Whether a value holds ``<start_of_mask><seg_N>``-style tokens instead of a mask.

    Models sometimes return their raw segmentation tokens, which only Google's
    server can turn into a PNG: such a reply holds no usable mask at all.

    >>> is_mask_token_text("<start_of_mask><seg_12><seg_80>")
    True
    """
    return isinstance(value, str) and _MASK_TOKEN.search(value) is not None


def decode_png_mask(value: str) -> np.ndarray:
    """Decodes a base64 PNG probability mask to a 2-D ``uint8`` array (0–255).

    The ``data:image/png;base64,`` prefix, whitespace and missing padding are
    tolerated; colour or 16-bit PNGs are read as 8-bit grey.

    Raises:
        MaskError: the value is not a base64-encoded image.
    """
    if not isinstance(value, str) or not value.strip():
        raise MaskError("the mask is empty")
    if is_mask_token_text(value):
        raise MaskError("the mask is <seg_N> tokens, not a PNG")
    text = _DATA_URI.sub("", value.strip())
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MaskError("the mask is not valid base64") from None
    if raw.startswith(_PNG_SIGNATURE) and len(raw) >= 24:
        width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
        if width * height > MAX_MASK_PIXELS:
            raise MaskError(f"the mask is {width}x{height} pixels, more than any box needs")
    grey = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_GRAYSCALE) if raw else None
    if grey is None or grey.size == 0:
        raise MaskError("the mask's base64 does not hold a PNG image")
    return grey


class PixelRegion(NamedTuple):
    """A box in pixels of a frame: columns ``left:right``, rows ``top:bottom``."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


def box_pixel_region(box: Sequence[float], frame_size: tuple[int, int]) -> PixelRegion:
    """The pixels a ``[ymin, xmin, ymax, xmax]`` (0–1000) box covers in a frame.

    Edges are rounded to the nearest pixel edge, as FiftyOne's COCO importer
    crops instance masks; a box thinner than a pixel still covers one. Boxes
    reaching outside the frame (``extent`` boxes) give regions outside it.

    >>> box_pixel_region([0, 500, 500, 1000], (640, 480))
    PixelRegion(left=320, top=0, right=640, bottom=240)
    """
    width, height = frame_size
    ymin, xmin, ymax, xmax = box
    left, right = round(xmin / SCALE * width), round(xmax / SCALE * width)
    top, bottom = round(ymin / SCALE * height), round(ymax / SCALE * height)
    return PixelRegion(left, top, max(right, left + 1), max(bottom, top + 1))


def mask_size_for(region: PixelRegion) -> tuple[int, int]:
    """The ``(width, height)`` of the instance mask stored for a box region."""
    scale = min(1.0, MAX_MASK_SIDE / max(region.width, region.height))
    return max(1, round(region.width * scale)), max(1, round(region.height * scale))


def png_mask_to_instance_mask(
    probability: np.ndarray,
    box: Box2d,
    frame_size: tuple[int, int],
    threshold: int = DEFAULT_MASK_THRESHOLD,
) -> np.ndarray:
    """Places a PNG probability map (covering the box as written) as a boolean instance mask.

    The map is resized to the box's pixel size, cropped to the part of the box
    inside the image when the box was clipped, and thresholded
    (``probability > threshold``).

    Args:
        probability: the decoded PNG, any size.
        box: the item's box, clipped and as written.
        frame_size: ``(width, height)`` of the image the labels are drawn on.
        threshold: 0–254; pixels above it are inside.

    Returns:
        a boolean mask of the clipped box's pixel size (see :func:`mask_size_for`).
    """
    extent = box_pixel_region(box.extent, frame_size)
    inside = box_pixel_region(box.box, frame_size)
    mask_width, mask_height = mask_size_for(inside)
    # bilinear resampling of the map stretched over the extent, read only where
    # the mask's pixel centres fall (as cv2.resize would, without first
    # building the whole extent, which a wild box can make huge)
    scale_x = probability.shape[1] / extent.width
    scale_y = probability.shape[0] / extent.height
    step_x = inside.width / mask_width * scale_x
    step_y = inside.height / mask_height * scale_y
    to_source = np.array([
        [step_x, 0.0, 0.5 * step_x + (inside.left - extent.left) * scale_x - 0.5],
        [0.0, step_y, 0.5 * step_y + (inside.top - extent.top) * scale_y - 0.5],
    ])
    resampled = cv2.warpAffine(probability, to_source, (mask_width, mask_height),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    return resampled > threshold


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
            clipped |= (_clip(x), _clip(y)) != (x, y)
            point = (_clip(x), _clip(y))
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


def polygon_bounds(shapes: Sequence[Sequence[tuple[float, float]]]) -> list[float]:
    """The ``[ymin, xmin, ymax, xmax]`` box (0–1000) around polygon shapes of ``(x, y)`` points."""
    xs = [x for shape in shapes for x, _ in shape]
    ys = [y for shape in shapes for _, y in shape]
    return [min(ys), min(xs), max(ys), max(xs)]


def box_iou_2d(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``[ymin, xmin, ymax, xmax]`` boxes."""
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


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


def polygon_to_instance_mask(
    shapes: Sequence[Sequence[tuple[float, float]]],
    box: Sequence[float],
    frame_size: tuple[int, int],
) -> np.ndarray:
    """Rasterises polygon shapes (0–1000 ``(x, y)``) inside a box as a boolean instance mask.

    Uses pycocotools' rasteriser (a pixel is inside when its area is mostly
    covered), the one FiftyOne's COCO importer uses, so polygons and masks
    agree with COCO data. Parts of the polygon outside the box are cut off.

    Returns:
        a boolean mask of the box's pixel size (see :func:`mask_size_for`).
    """
    width, height = frame_size
    region = box_pixel_region(box, frame_size)
    mask_width, mask_height = mask_size_for(region)
    sx, sy = mask_width / region.width, mask_height / region.height
    polygons = [
        [coord for x, y in shape
         for coord in ((x / SCALE * width - region.left) * sx, (y / SCALE * height - region.top) * sy)]
        for shape in shapes
    ]
    rles = coco_mask.frPyObjects(polygons, mask_height, mask_width)
    return coco_mask.decode(coco_mask.merge(rles)).astype(bool)


def instance_mask_to_frame(mask: np.ndarray, bounding_box: Sequence[float],
                           frame_size: tuple[int, int]) -> np.ndarray:
    """Draws an instance mask on a frame the way the App does: stretched over its box.

    Each frame pixel takes the mask pixel under its centre (nearest
    neighbour). Unlike ``Detection.to_segmentation``, which floors the box to
    whole pixels, nothing moves by up to a pixel, so small objects keep their IoU.

    Args:
        mask: the instance mask.
        bounding_box: the relative ``[x, y, w, h]`` box the mask covers.
        frame_size: ``(width, height)`` of the frame, in pixels.

    Returns:
        a boolean ``(height, width)`` mask.
    """
    width, height = frame_size
    mask = np.asarray(mask, dtype=bool)
    frame = np.zeros((height, width), dtype=bool)
    x, y, box_width, box_height = bounding_box
    if box_width <= 0 or box_height <= 0 or mask.size == 0:
        return frame
    columns = _mask_indices(width, x, box_width, mask.shape[1])
    rows = _mask_indices(height, y, box_height, mask.shape[0])
    inside_columns, inside_rows = columns >= 0, rows >= 0
    frame[np.ix_(inside_rows, inside_columns)] = mask[np.ix_(rows[inside_rows], columns[inside_columns])]
    return frame


def _mask_indices(frame_side: int, start: float, extent: float, mask_side: int) -> np.ndarray:
    """For each frame pixel, the mask pixel under its centre, or -1 outside the box."""
    centres = (np.arange(frame_side) + 0.5) / frame_side
    index = np.floor((centres - start) / extent * mask_side).astype(np.int64)
    index[(index < 0) | (index >= mask_side)] = -1
    return index


def instance_mask_to_polygons(
    mask: np.ndarray,
    bounding_box: Sequence[float],
    tolerance: float = POLYGON_TOLERANCE,
) -> list[list[tuple[float, float]]]:
    """Traces an instance mask's outlines as relative ``(x, y)`` polygons.

    Outlines follow pixel edges (marching squares on the padded mask, as in
    FiftyOne's ``Polyline.from_mask``, but in FiftyOne's area convention, so
    the outline of pixel ``i`` runs along ``i`` and ``i + 1``), then are
    simplified to ``tolerance`` pixels. Holes are not traced.

    Args:
        mask: a boolean instance mask covering ``bounding_box``.
        bounding_box: the relative ``[x, y, w, h]`` box the mask covers.
        tolerance: the simplification tolerance, in mask pixels.

    Returns:
        the outer outlines, largest first.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return []
    height, width = mask.shape
    x0, y0, box_width, box_height = bounding_box
    outer = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
    filled = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(filled, outer, -1, 1, thickness=cv2.FILLED)
    shapes = []
    for contour in measure.find_contours(np.pad(filled, 1), 0.5):
        if tolerance:
            contour = measure.approximate_polygon(contour, tolerance)
        # padded row/column r ↔ the edge between pixels r - 1 and r, at r - 0.5
        points = [(x0 + (c - 0.5) / width * box_width, y0 + (r - 0.5) / height * box_height)
                  for r, c in contour[:-1]]
        if len(points) >= 3:
            shapes.append(points)
    return sorted(shapes, key=lambda s: -polygon_area(s))


def polygon_area(points: Sequence[tuple[float, float]]) -> float:
    """The area of a simple polygon (shoelace formula), in the units of its points squared."""
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 3:
        return 0.0
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


@dataclass(frozen=True)
class MaskOptions:
    """How masks become labels.

    Attributes:
        frame_size: ``(width, height)`` of the image the labels are drawn on,
            in pixels (as a viewer shows it): masks are stored at its scale.
        threshold: PNG probabilities above it are inside (0–254).
        tolerance: simplification of outlines traced from PNG masks, in pixels.
    """

    frame_size: tuple[int, int]
    threshold: int = DEFAULT_MASK_THRESHOLD
    tolerance: float = POLYGON_TOLERANCE


class Segment(NamedTuple):
    """One object's geometry: its ``box_2d`` (0–1000), instance mask, and polygon shapes if it came as one."""

    box: list[float]
    mask: np.ndarray
    shapes: Optional[list[list[tuple[float, float]]]]


def items_to_segments(
    items: Iterable[dict],
    *,
    policy: LabelPolicy,
    provenance: Provenance,
    masks: MaskOptions,
) -> tuple[fo.Detections, fo.Polylines, ConversionReport]:
    """Converts segmentation items into linked instance masks and outlines.

    Each item's ``mask`` is read in whichever form it came: a PNG string
    (covering the box) or a polygon (over the image). Every kept item gives one
    ``fo.Detection`` with its instance mask and one closed, filled
    ``fo.Polyline`` with its outline, sharing an ``fo.Instance`` and ``index``
    (the item's number in the reply), so a reviewer can go from one to the other.
    An item without a usable mask is dropped and counted, never the reply.

    Args:
        items: item dicts from :func:`gemini_annotate.parse.parse_items`.
        policy: how labels are matched to classes.
        provenance: model and run written onto each label.
        masks: frame size and mask options.

    Returns:
        the detections, the polylines and a :class:`ConversionReport`.
    """
    report = ConversionReport()
    detections, polylines = [], []

    def read(item: dict, report: ConversionReport) -> Optional[Segment]:
        return _read_segment(item, masks, report)

    def identity(segment: Segment) -> tuple:
        return (*segment.box, segment.mask.shape, int(segment.mask.sum()))

    for number, (item, label, segment) in enumerate(
            usable_items(items, read, policy, report, key=identity), start=1):
        bounding_box = box_2d_to_relative(segment.box)
        if segment.shapes is None:
            shapes = instance_mask_to_polygons(segment.mask, bounding_box, masks.tolerance)
        else:
            shapes = [[(x / SCALE, y / SCALE) for x, y in shape] for shape in segment.shapes]
        shared = dict(label=label, index=number, instance=fo.Instance(),
                      **extra_attributes(item), **provenance.attributes())
        detections.append(fo.Detection(bounding_box=bounding_box, mask=segment.mask, **shared))
        polylines.append(fo.Polyline(points=shapes, closed=True, filled=True, **shared))
    report.kept = len(detections)
    return fo.Detections(detections=detections), fo.Polylines(polylines=polylines), report


def _read_segment(item: dict, masks: MaskOptions, report: ConversionReport) -> Optional[Segment]:
    """An item's box and mask, in whichever form its mask came, or ``None`` (counted)."""
    raw_mask = item_mask(item)
    raw_box = item_box(item)
    if raw_mask is None:
        report.dropped["item has no mask"] += 1
        return None
    box = read_box_2d_extent(raw_box, report) if raw_box is not None else None
    if raw_box is not None and box is None:
        return None
    if isinstance(raw_mask, str):
        if box is None:
            report.dropped["PNG mask without a box_2d to place it in"] += 1
            return None
        try:
            probability = decode_png_mask(raw_mask)
        except MaskError as e:
            report.dropped[f"mask could not be decoded ({e})"] += 1
            return None
        mask = png_mask_to_instance_mask(probability, box, masks.frame_size, masks.threshold)
        if not mask.any():
            report.dropped["PNG mask is empty at the threshold"] += 1
            return None
        return Segment(box.box, mask, None)

    shapes = read_polygon(raw_mask, report)
    if shapes is None:
        return None
    if box is None:
        bounds = polygon_bounds(shapes)
        if bounds[2] <= bounds[0] or bounds[3] <= bounds[1]:
            report.dropped["polygon has no area"] += 1
            return None
        report.repaired["box_2d taken from the polygon"] += 1
        box = Box2d(bounds, bounds)
    shapes = orient_polygon(shapes, box.box, report)
    mask = polygon_to_instance_mask(shapes, box.box, masks.frame_size)
    if not mask.any():
        report.dropped["polygon covers no pixel of its box"] += 1
        return None
    return Segment(box.box, mask, shapes)
