"""Images turned the way the FiftyOne App shows them, worked out by the emulator itself.

Known labels are relative to the image as the App shows it, so the oracle
indexes each known image turned that way. The App shows images in a browser,
which turns JPEG and PNG files by their EXIF orientation tag; Chromium leaves
WebP files as stored (measured), so their tag is ignored here too.

The client turns images before sending them with its own code; this module
shares none of it (it leaves the turning to Pillow's ``ImageOps.exif_transpose``),
so the oracle never checks the client's turning with the client's turning.
"""

from __future__ import annotations

from PIL import ExifTags, Image, ImageOps

_QUARTER_TURNS = frozenset({5, 6, 7, 8})
"""EXIF orientations that turn an image a quarter turn (its width and height swap)."""


def shown_with_orientation(img: Image.Image) -> bool:
    """Whether the App applies this image file's EXIF orientation.

    Chromium, the App's browser, ignores the orientation tag of WebP files.
    """
    return img.format != "WEBP"


def shown_orientation(img: Image.Image) -> int:
    """The EXIF orientation (1–8) the App applies to an opened image; 1 when none applies."""
    if not shown_with_orientation(img):
        return 1
    try:
        value = int(img.getexif().get(ExifTags.Base.Orientation, 1))
    except (TypeError, ValueError):
        return 1
    return value if 1 <= value <= 8 else 1


def shown_size(img: Image.Image) -> tuple[int, int]:
    """An opened image's ``(width, height)`` as the App shows it, from its header."""
    width, height = img.size
    return (height, width) if shown_orientation(img) in _QUARTER_TURNS else (width, height)


def shown_upright(img: Image.Image) -> Image.Image:
    """The image's pixels turned the way the App shows them."""
    return ImageOps.exif_transpose(img) if shown_with_orientation(img) else img
