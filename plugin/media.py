"""Images as Gemini should see them: upright, RGB, a sane size, encoded once.

Gemini's coordinates are relative to the image *as sent*, and FiftyOne draws
relative coordinates over the image *as displayed*. Sending the displayed
orientation, and only ever scaling the whole image, keeps the two identical, so
no label moves when an image is resized.

"As displayed" is what the App's browser shows, measured in Chromium (the App
draws an ``<img>`` element): the EXIF orientation of JPEG and PNG files is
applied, that of WebP files is not. HEIC/HEIF files are turned upright by
pillow-heif when read. FiftyOne's ``compute_metadata`` swaps width and height
for rotated JPEGs only, so :func:`image_metadata` (the dimensions as displayed)
is what this package writes for samples without metadata.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from .model_profiles import model_profile

try:  # HEIC/HEIF (iPhone photos) are read through pillow-heif
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a dependency
    pass

# Decompression bombs are refused below with a clear reason instead of a warning.
Image.MAX_IMAGE_PIXELS = None

MAX_PIXELS = 200_000_000
"""Images with more pixels than this are refused rather than decoded."""

MAX_PASSTHROUGH_BYTES = 7 * 1024 * 1024
"""Files up to this size may be sent as they are, without re-encoding."""

JPEG_QUALITY = 90

_SENDABLE_AS_IS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_EXIF_ORIENTATION = 0x0112
_SIDEWAYS_ORIENTATIONS = (5, 6, 7, 8)
"""EXIF orientations that turn an image a quarter turn, swapping its width and height."""

BROWSER_IGNORES_ORIENTATION = frozenset({"WEBP"})
"""Formats whose EXIF orientation the App's browser does not apply (Chromium
turns JPEG and PNG files by their EXIF orientation, but not WebP files)."""

_JPEG_DRAFT_REDUCTIONS = (8, 4, 2)

TOKENS_PER_TILE = 258
SMALL_IMAGE_SIDE = 384


class ImageError(Exception):
    """An image that cannot be prepared; the message says why, for one sample."""


@dataclass(frozen=True)
class PreparedImage:
    """Encoded image bytes ready for a request, with their geometry.

    Attributes:
        data: the encoded image.
        mime_type: its MIME type.
        width: width of the image as sent, in pixels.
        height: height of the image as sent, in pixels.
        display_width: width as the App shows it (see the module notes on
            EXIF orientation), before resizing.
        display_height: height as the App shows it, before resizing.
        source_mime_type: the MIME type of the file read.
        source_size_bytes: the size of the file read.
        source_channels: the channels of the file's pixel format.
    """

    data: bytes
    mime_type: str
    width: int
    height: int
    display_width: int
    display_height: int
    source_mime_type: Optional[str] = None
    source_size_bytes: Optional[int] = None
    source_channels: Optional[int] = None


def fit_within(width: int, height: int, max_side: Optional[int]) -> tuple[int, int]:
    """The size an image is sent at: scaled down uniformly so its longer side is at most ``max_side``.

    >>> fit_within(4000, 3000, 1536)
    (1536, 1152)
    """
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def estimate_image_tokens(
    width: int,
    height: int,
    *,
    max_side: Optional[int] = None,
    media_resolution: Optional[str] = None,
    model: Optional[str] = None,
) -> int:
    """Gemini's documented input-token estimate for one image.

    258 tokens when both sides are at most 384 px; otherwise the image is cut
    into crop units of ``floor(min(w, h) / 1.5)`` px, 258 tokens each. With
    ``max_side`` the size is first reduced as :func:`prepare_image` would send
    it; with ``media_resolution`` (``low``/``medium``/``high``) the count is
    capped at the model family's per-image budget for that level.

    >>> estimate_image_tokens(960, 540)  # unit 360 -> 3 x 2 tiles
    1548
    >>> estimate_image_tokens(960, 540, media_resolution="low", model="gemini-3-flash-preview")
    280
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    width, height = fit_within(width, height, max_side)
    if width <= SMALL_IMAGE_SIDE and height <= SMALL_IMAGE_SIDE:
        tokens = TOKENS_PER_TILE
    else:
        unit = max(1, math.floor(min(width, height) / 1.5))
        tokens = math.ceil(width / unit) * math.ceil(height / unit) * TOKENS_PER_TILE
    if media_resolution:
        tokens = min(tokens, model_profile(model or "").media_resolution_tokens(media_resolution))
    return tokens


def read_image_size(path: str) -> tuple[int, int]:
    """An image file's ``(width, height)`` as the App shows it, from its header only.

    Raises:
        ImageError: the file is missing or not a readable image.
    """
    try:
        with Image.open(path) as img:
            return display_size(img)
    except FileNotFoundError:
        raise ImageError(f"image file not found: {path}") from None
    except Exception as e:
        raise ImageError(f"not a readable image: {path} ({e})") from None


def prepare_image(path: str, max_side: int) -> PreparedImage:
    """Loads an image file and prepares it for Gemini.

    The file is sent unchanged when it already is an upright RGB/greyscale JPEG,
    PNG or WEBP within ``max_side``; otherwise it is EXIF-transposed, converted
    to RGB, downscaled so its longer side is at most ``max_side`` and encoded as
    JPEG.

    Args:
        path: the image file.
        max_side: the longest side allowed, in pixels.

    Returns:
        a :class:`PreparedImage`

    Raises:
        ImageError: the file is missing, unreadable, not an image, or too large.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ImageError(f"image file not found: {path}") from None
    except IsADirectoryError:
        raise ImageError(f"expected an image file, found a directory: {path}") from None
    except OSError as e:
        raise ImageError(f"cannot read image file {path}: {e.strerror or e}") from None
    if not raw:
        raise ImageError(f"image file is empty: {path}")
    return prepare_image_bytes(raw, max_side, name=path)


def prepare_image_bytes(raw: bytes, max_side: int, name: str = "image") -> PreparedImage:
    """Like :func:`prepare_image`, for bytes already in memory."""
    img = _open_checked(raw, max_side, name)
    try:  # Pillow decodes a PNG to find its EXIF, so a corrupt one fails here
        orientation = display_orientation(img)
    except Exception as e:
        raise ImageError(f"image file is truncated or corrupt: {name} ({e})") from None
    width, height = img.size
    display_width, display_height = _size_shown((width, height), orientation)
    source = dict(
        display_width=display_width,
        display_height=display_height,
        source_mime_type=Image.MIME.get(img.format or ""),
        source_size_bytes=len(raw),
        source_channels=len(img.getbands()),
    )
    if _sendable_as_is(img, raw, max_side):
        _verify_decodes(img, name, raw)
        return PreparedImage(data=raw, mime_type=_SENDABLE_AS_IS[img.format],
                             width=width, height=height, **source)

    rgb = _decode_upright_rgb(img, orientation, max_side, name)
    if max(rgb.size) > max_side:
        size = fit_within(rgb.width, rgb.height, max_side)
        rgb = rgb.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=JPEG_QUALITY)
    return PreparedImage(data=out.getvalue(), mime_type="image/jpeg",
                         width=rgb.width, height=rgb.height, **source)


def _open_checked(raw: bytes, max_side: int, name: str) -> Image.Image:
    """The image's header, opened; refused when it is no image, empty, or too large to decode."""
    try:
        img = Image.open(io.BytesIO(raw))
    except UnidentifiedImageError:
        raise ImageError(f"not a readable image: {name}") from None
    except Exception as e:  # PIL raises many types for corrupt headers
        raise ImageError(f"not a readable image: {name} ({e})") from None
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels: {name}")
    reduction = _jpeg_draft_reduction(img, max_side)
    if width * height / reduction**2 > MAX_PIXELS:
        raise ImageError(
            f"image too large to decode safely: {name} is {width}x{height} "
            f"(limit {MAX_PIXELS:,} pixels)"
        )
    return img


def _sendable_as_is(img: Image.Image, raw: bytes, max_side: int) -> bool:
    """Whether the file can go to Gemini unchanged: a plain, small, upright JPEG/PNG/WEBP."""
    return (
        img.format in _SENDABLE_AS_IS
        and _orientation(img) == 1  # no orientation tag the model might apply
        and img.mode in ("RGB", "L")
        and max(img.size) <= max_side
        and len(raw) <= MAX_PASSTHROUGH_BYTES
        and getattr(img, "n_frames", 1) == 1
    )


def _decode_upright_rgb(img: Image.Image, orientation: int, max_side: int, name: str) -> Image.Image:
    """The pixels, decoded (at a reduced scale where a JPEG allows), turned upright, as RGB."""
    reduction = _jpeg_draft_reduction(img, max_side)
    try:
        if reduction > 1:
            # decode at a reduced scale straight from the DCT: far cheaper than
            # decoding full size and then shrinking
            width, height = img.size
            img.draft(img.mode, (math.ceil(width / reduction), math.ceil(height / reduction)))
        img.load()
        if orientation != 1:
            img = _transpose(img, orientation)
        return _to_rgb(img)
    except ImageError:
        raise
    except Exception as e:
        raise ImageError(f"cannot decode image {name}: {e}") from None


def display_orientation(img: Image.Image) -> int:
    """The EXIF orientation (1–8) the App applies when it shows this image.

    1 (as stored) for formats whose orientation browsers ignore, see
    :data:`BROWSER_IGNORES_ORIENTATION`.
    """
    if img.format in BROWSER_IGNORES_ORIENTATION:
        return 1
    return _orientation(img)


def display_size(img: Image.Image) -> tuple[int, int]:
    """An opened image's ``(width, height)`` as the App shows it (from its header)."""
    return _size_shown(img.size, display_orientation(img))


def _size_shown(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    width, height = size
    return (height, width) if orientation in _SIDEWAYS_ORIENTATIONS else (width, height)


def to_display_orientation(img: Image.Image) -> Image.Image:
    """The image turned the way the App shows it (a copy when it must be turned)."""
    orientation = display_orientation(img)
    return _transpose(img, orientation) if orientation != 1 else img


EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""The turn that shows an image with EXIF orientation 2–8 upright (1 is upright as stored)."""


def _transpose(img: Image.Image, orientation: int) -> Image.Image:
    return img.transpose(EXIF_TRANSPOSE[orientation])


def _jpeg_draft_reduction(img: Image.Image, max_side: int) -> int:
    """The DCT scale-down (1, 2, 4 or 8) a JPEG can be decoded at and still exceed ``max_side``."""
    if img.format != "JPEG":
        return 1
    longest = max(img.size)
    return next((r for r in _JPEG_DRAFT_REDUCTIONS if longest / r >= max_side), 1)


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 when absent or invalid); Pillow tolerates malformed EXIF."""
    try:
        value = int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except (TypeError, ValueError):
        return 1
    return value if 1 <= value <= 8 else 1


_JPEG_END = b"\xff\xd9"
"""The marker that ends a JPEG's compressed data (EOI)."""


def _ends_complete(img: Image.Image, raw: bytes) -> bool:
    """Whether a JPEG file ends with its end-of-image marker, as only a complete file does.

    A cut-off file loses it; files with data after the marker (some cameras
    append a trailer) are left to the decoding check.
    """
    return img.format == "JPEG" and raw.rstrip(b"\0\r\n ").endswith(_JPEG_END)


def _verify_decodes(img: Image.Image, name: str, raw: bytes = b"") -> None:
    # A truncated file still has a valid header: decoding it is the only proof
    # that Gemini will receive a real image, but for a JPEG whose last bytes
    # are its end marker, which a cut-off file lacks (decoding even at 1/8
    # scale costs 2 ms of a 1-MP JPEG's budget of 8). Other JPEGs decode in
    # draft mode at 1/8 scale, a fraction of a full decode.
    if _ends_complete(img, raw):
        return
    try:
        probe = img.copy() if img.format != "JPEG" else img
        if img.format == "JPEG":
            probe.draft(probe.mode, (max(1, img.width // 8), max(1, img.height // 8)))
        probe.load()
    except Exception as e:
        raise ImageError(f"image file is truncated or corrupt: {name} ({e})") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Converts any PIL mode to 8-bit RGB; transparency is composited on white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 257.0
        else:
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        grey = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("P", "PA"):
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")
