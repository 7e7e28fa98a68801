"""Gemini's 0–1000 boxes and FiftyOne's relative ones. Pure functions of numbers.

Gemini boxes are ``[ymin, xmin, ymax, xmax]`` normalised to 0–1000 over the
image as sent; FiftyOne boxes are ``[x, y, width, height]`` relative to 0–1::

    [ymin, xmin, ymax, xmax] -> [xmin/1000, ymin/1000, (xmax-xmin)/1000, (ymax-ymin)/1000]

Pixel geometry follows FiftyOne's area convention: relative ``0`` is the left
edge of the first pixel and ``1`` the right edge of the last, so pixel ``i``
covers ``[i, i + 1)``.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

SCALE = 1000.0
"""Gemini's coordinates run from 0 to this value over each side of the image."""


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

def clip_to_scale(value: float) -> float:
    """A 0–1000 coordinate clipped to the image."""
    return min(max(value, 0.0), SCALE)


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

