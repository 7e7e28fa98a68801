"""The emulator's own geometry: known labels → the shapes Gemini writes.

The oracle answers with known labels, and round-trip tests and the fidelity
benchmark grade the client's conversion by reading those answers back. If
the oracle wrote them with the client's own conversion code, a mistake both
shared would cancel out and pass unseen; so this module shares no code with
the client and, where there is a choice, uses other algorithms and library
calls (bin search instead of division, a scanline fill instead of
pycocotools, OpenCV contours on a half-pixel lattice instead of marching
squares, Pillow instead of OpenCV for PNGs).

What it does share are the conventions, facts of the formats:

- a FiftyOne box is relative ``[x, y, w, h]`` in 0–1; Gemini's ``box_2d`` is
  ``[ymin, xmin, ymax, xmax]`` in 0–1000 integers, polygons ``[x, y]`` in 0–1000;
- FiftyOne's area convention: relative 0 is the left edge of the first
  pixel and 1 the right edge of the last, so pixel ``i`` covers ``[i, i + 1)``;
- an instance mask is stretched over its box;
- a PNG mask covers the box's pixels, its edges moved to the nearest pixel edge.
"""

from __future__ import annotations

import base64
import io
from typing import NamedTuple, Optional, Sequence

import cv2
import numpy as np
from PIL import Image

SCALE = 1000
"""Gemini's coordinates run from 0 to this, over each side of the image."""

PNG_MASK_SIDE = 256
"""The side of the PNG masks Gemini 2.5 writes."""

Point = tuple[float, float]


def box_2d_from_relative(bounding_box: Sequence[float]) -> list[int]:
    """Gemini's ``[ymin, xmin, ymax, xmax]`` (0–1000 integers) nearest a relative ``[x, y, w, h]`` box.

    Each edge is rounded on its own, so none moves by more than 0.0005 of its side.

    >>> box_2d_from_relative((0.1, 0.2, 0.3, 0.4))
    [200, 100, 600, 400]
    """
    x, y, w, h = bounding_box
    return [int(v) for v in np.rint(np.array([y, x, y + h, x + w]) * SCALE)]


def point_1000(point: Point) -> list[int]:
    """Gemini's ``[y, x]`` point (0–1000 integers) for a relative ``(x, y)`` point.

    >>> point_1000((0.25, 0.5))
    [500, 250]
    """
    x, y = point
    return [int(v) for v in np.rint(np.array([y, x]) * SCALE)]


def polygon_1000(outline: Sequence[Point]) -> list[list[int]]:
    """Gemini 3's polygon: a relative ``(x, y)`` outline as ``[x, y]`` points in 0–1000 integers.

    >>> polygon_1000([(0.1, 0.2), (0.3, 0.2), (0.3, 0.4)])
    [[100, 200], [300, 200], [300, 400]]
    """
    return np.rint(np.asarray(outline, dtype=np.float64) * SCALE).astype(int).tolist()


def box_corners(bounding_box: Sequence[float]) -> list[Point]:
    """The four corners of a relative ``[x, y, w, h]`` box, clockwise from the top left."""
    x, y, w, h = bounding_box
    return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]


def outline_in_box(outline: Sequence[Point], box: Sequence[float], new_box: Sequence[float]) -> list[Point]:
    """An outline carried from one relative ``[x, y, w, h]`` box to another, stretched as its box is.

    This is what a moved box does to an instance mask (stretched over its box),
    done to a polygon.

    >>> outline_in_box([(0.25, 0.25), (0.75, 0.5)], (0.25, 0.25, 0.5, 0.25), (0.5, 0.5, 0.25, 0.5))
    [(0.5, 0.5), (0.75, 1.0)]
    """
    x, y, w, h = box
    nx, ny, nw, nh = new_box
    sx, sy = (nw / w if w else 1.0), (nh / h if h else 1.0)
    return [(nx + (px - x) * sx, ny + (py - y) * sy) for px, py in outline]


def outline_area(outline: Sequence[Point]) -> float:
    """The area a closed outline encloses, in the units of its points squared."""
    if len(outline) < 3:
        return 0.0
    return float(cv2.contourArea(np.asarray(outline, dtype=np.float32)))


class PixelSpan(NamedTuple):
    """The frame pixels under a box: columns ``left:right``, rows ``top:bottom``."""

    left: int
    top: int
    right: int
    bottom: int


def box_2d_pixels(box_2d: Sequence[int], size: tuple[int, int]) -> PixelSpan:
    """The pixels of a ``width``×``height`` frame a 0–1000 ``box_2d`` covers.

    Edges move to the nearest pixel edge (a box thinner than a pixel keeps
    one); this is where a PNG mask over the box is laid.

    >>> box_2d_pixels([0, 500, 500, 1000], (640, 480))
    PixelSpan(left=320, top=0, right=640, bottom=240)
    """
    width, height = size
    # multiplied before dividing, so an edge exactly halfway between two pixel
    # edges is exactly halfway, and rounds the same way every time
    sides = np.array([height, width, height, width], dtype=np.float64)
    top, left, bottom, right = (int(v) for v in np.rint(np.asarray(box_2d, np.float64) * sides / SCALE))
    return PixelSpan(left, top, max(right, left + 1), max(bottom, top + 1))


def instance_mask_on_frame(mask: np.ndarray, bounding_box: Sequence[float],
                           size: tuple[int, int]) -> np.ndarray:
    """An instance mask drawn on a frame as FiftyOne draws it: stretched over its box.

    Each frame pixel takes the mask cell its centre falls in (nearest neighbour).

    Args:
        mask: the instance mask, covering ``bounding_box``.
        bounding_box: the relative ``[x, y, w, h]`` box.
        size: the frame's ``(width, height)`` in pixels.

    Returns:
        a boolean ``(height, width)`` mask.
    """
    width, height = size
    mask = np.asarray(mask, dtype=bool)
    frame = np.zeros((height, width), dtype=bool)
    x, y, w, h = bounding_box
    if w <= 0 or h <= 0 or mask.size == 0:
        return frame
    rows = _cells_under_centres(height, y, h, mask.shape[0])
    columns = _cells_under_centres(width, x, w, mask.shape[1])
    inside_rows, inside_columns = rows >= 0, columns >= 0
    frame[np.ix_(inside_rows, inside_columns)] = mask[np.ix_(rows[inside_rows], columns[inside_columns])]
    return frame


def _cells_under_centres(frame_side: int, start: float, extent: float, cells: int) -> np.ndarray:
    """For each frame pixel along one side, the mask cell holding its centre, or -1 outside the mask."""
    cell_edges = start + extent * np.arange(cells + 1) / cells
    centres = (np.arange(frame_side) + 0.5) / frame_side
    cell = np.searchsorted(cell_edges, centres, side="right") - 1
    cell[cell >= cells] = -1
    return cell


def polygon_on_frame(outline: Sequence[Point], size: tuple[int, int]) -> np.ndarray:
    """The pixels of a ``width``×``height`` frame whose centres lie inside a relative outline.

    A scanline fill with the even-odd rule: along each row's centre line the
    outline's crossings are sorted, and a centre is inside after an odd number
    of them (a centre on a left edge is inside, on a right edge outside, as
    pixel ``i`` covers ``[i, i + 1)``).

    Returns:
        a boolean ``(height, width)`` mask.
    """
    width, height = size
    frame = np.zeros((height, width), dtype=bool)
    corners = np.asarray(outline, dtype=np.float64) * (width, height)
    if len(corners) < 3:
        return frame
    start, end = corners, np.roll(corners, -1, axis=0)
    centres_x = np.arange(width) + 0.5
    first = max(0, int(np.floor(corners[:, 1].min())))
    last = min(height, int(np.ceil(corners[:, 1].max())))
    for row in range(first, last):
        centre_y = row + 0.5
        # an edge crosses when its ends lie on either side; counting an end on
        # the line as below it counts a vertex on the line once
        crossing = (start[:, 1] <= centre_y) != (end[:, 1] <= centre_y)
        if not crossing.any():
            continue
        a, b = start[crossing], end[crossing]
        xs = np.sort(a[:, 0] + (centre_y - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1]))
        frame[row] = np.searchsorted(xs, centres_x, side="right") % 2 == 1
    return frame


def outline_of_mask(mask: np.ndarray, bounding_box: Sequence[float],
                    tolerance: float) -> Optional[list[Point]]:
    """The outline of an instance mask's largest part, as relative ``(x, y)`` points.

    The outline runs along the pixels' outer edges, as FiftyOne's area
    convention puts them: the mask is laid on a half-pixel lattice (pixel
    centres, edge midpoints and corners), a lattice point set when it touches
    a set pixel, so the boundary OpenCV's contour tracer follows
    (``cv2.findContours``) is the pixels' edges, convex corners exact and
    concave ones cut by half a pixel's edge. It is then simplified by
    Douglas–Peucker (``cv2.approxPolyDP``). Holes are left out: a Gemini
    polygon is one outer ring.

    >>> mask = np.ones((3, 5), bool)
    >>> [(x * 5, y * 3) for x, y in outline_of_mask(mask, (0, 0, 1, 1), 0.5)]
    [(0.0, 0.0), (0.0, 3.0), (5.0, 3.0), (5.0, 0.0)]

    Args:
        mask: the instance mask, covering ``bounding_box``.
        bounding_box: the relative ``[x, y, w, h]`` box.
        tolerance: how far, in mask pixels, the outline may stray from the edges.

    Returns:
        the outline, or ``None`` for an empty mask.
    """
    mask = np.asarray(mask, dtype=np.uint8)
    if not mask.any():
        return None
    rows, columns = mask.shape
    # pixel (r, c) centred on lattice point (2r + 2, 2c + 2); a zero margin all
    # round keeps the tracer off the image border
    lattice = np.zeros((2 * rows + 3, 2 * columns + 3), dtype=np.uint8)
    lattice[2:-1:2, 2:-1:2] = mask
    lattice = cv2.dilate(lattice, np.ones((3, 3), np.uint8))
    contours = cv2.findContours(lattice, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0]
    largest = max(contours, key=cv2.contourArea)
    simplified = cv2.approxPolyDP(largest, 2 * tolerance, closed=True).reshape(-1, 2)
    if len(simplified) < 3:
        return None
    x, y, w, h = bounding_box
    # lattice point X lies on the pixel edge (X - 1) / 2
    return [(x + (px - 1) / 2 / columns * w, y + (py - 1) / 2 / rows * h) for px, py in simplified.tolist()]


def png_mask_over_box(frame_mask: np.ndarray, box_2d: Sequence[int]) -> Optional[str]:
    """Gemini 2.5's mask: a grey PNG of the frame mask under the box, as a base64 data URI.

    The pixels under the box (see :func:`box_2d_pixels`) are resized to
    :data:`PNG_MASK_SIDE` a side with Pillow's bilinear filter, 255 inside.

    Returns:
        ``data:image/png;base64,...``, or ``None`` when the box covers no pixel of the frame.
    """
    height, width = frame_mask.shape
    span = box_2d_pixels(box_2d, (width, height))
    left, top = max(span.left, 0), max(span.top, 0)
    right, bottom = min(span.right, width), min(span.bottom, height)
    if right <= left or bottom <= top:
        return None
    # a box reaching past the frame gets a PNG over all of it, empty outside the frame
    crop = np.zeros((span.bottom - span.top, span.right - span.left), dtype=np.uint8)
    crop[top - span.top:bottom - span.top, left - span.left:right - span.left] = frame_mask[top:bottom, left:right]
    grey = Image.fromarray(crop * 255).resize((PNG_MASK_SIDE, PNG_MASK_SIDE), Image.Resampling.BILINEAR)
    encoded = io.BytesIO()
    grey.save(encoded, format="PNG")
    return "data:image/png;base64," + base64.b64encode(encoded.getvalue()).decode("ascii")
