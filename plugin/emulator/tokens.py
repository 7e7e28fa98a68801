"""The input tokens the emulator reports for an image, by Gemini's documented rule.

Gemini's image guide: an image no side of which exceeds 384 px costs 258
tokens; a larger one is cut into square crop units of ``⌊shorter side / 1.5⌋``
px, 258 tokens each (960×540: units of 360 px, 3 × 2 of them, 1548 tokens).
Written here apart from the client's cost estimate, so a usage report from the
emulator checks that estimate instead of echoing it.
"""

from __future__ import annotations

import io
import math
from typing import Optional

from PIL import Image

from .wire import EmulatedImage, EmulatorRequest

TOKENS_PER_CROP = 258
SMALL_SIDE = 384


def image_tokens(width: int, height: int) -> int:
    """The input tokens one ``width``×``height`` image costs.

    >>> image_tokens(384, 200), image_tokens(960, 540)
    (258, 1548)
    """
    if max(width, height) <= SMALL_SIDE:
        return TOKENS_PER_CROP
    unit = max(1, int(min(width, height) // 1.5))
    crops_across, crops_down = -(-width // unit), -(-height // unit)
    return crops_across * crops_down * TOKENS_PER_CROP


def image_size(image: EmulatedImage) -> Optional[tuple[int, int]]:
    """An inline image's width and height, read from its header when that is enough; ``None`` if
    it is not an image. Remembered by the image's digest (a run sends the same images again)."""
    digest = image.digest
    if digest is not None and digest in _sizes:
        return _sizes[digest]
    size = None
    for read in (image.header, lambda: image.data):  # the whole image only if its header was not enough
        try:
            with Image.open(io.BytesIO(read())) as img:
                size = img.size
                break
        except Exception:
            continue
    if digest is not None:
        if len(_sizes) >= _SIZES_KEPT:
            _sizes.clear()
        _sizes[digest] = size
    return size


_SIZES_KEPT = 4096
_sizes: dict[str, Optional[tuple[int, int]]] = {}


def request_input_tokens(request: EmulatorRequest) -> int:
    """The input tokens a request costs, as the emulator's replies report them and its quota counts
    them: a quarter of the prompt's characters, and :func:`image_tokens` per inline image (an
    unreadable one costs what the smallest image costs)."""
    tokens = math.ceil(len(request.prompt) / 4)
    for image in request.images:
        if image.inline:
            size = image_size(image)
            tokens += TOKENS_PER_CROP if size is None else image_tokens(*size)
    return tokens
