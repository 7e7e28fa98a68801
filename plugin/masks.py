"""Instance masks: PNG masks decoded, polygons rasterised, masks traced back to outlines.

Masks come in two forms:

- polygons ``[[x, y], ...]`` in 0–1000 over the whole image (Gemini 3), and
- base64 PNG probability maps covering the box only (Gemini 2.5).

Both become boolean instance masks at the box's pixel size, FiftyOne's
convention (the App stretches a mask over its box). Polygons are rasterised
with pycocotools (the rasteriser FiftyOne's COCO importer uses) and traced
back along pixel edges, so a mask → polygon → mask round trip is exact.
Pure functions of arrays and numbers: no FiftyOne, no SDK.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Sequence

import cv2
import numpy as np
from pycocotools import mask as coco_mask
from skimage import measure

from .boxes import SCALE, Box2d, PixelRegion, box_pixel_region

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

