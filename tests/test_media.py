"""Images as Gemini should see them: the App's orientation, RGB, a sane size.

The orientation table was measured in Chromium 156 (the App draws images with
an ``<img>`` element): it turns JPEG and PNG files by their EXIF orientation and
shows WebP files as stored. ``test_browser_orientation.py`` measures it again
when Chromium is installed.
"""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

import gemini_annotate.media as media
from gemini_annotate.job import image_metadata
from gemini_annotate.media import ImageError, prepare_image, prepare_image_bytes

# Pillow's transpose turning each orientation's stored pixels upright
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
INVERSE = {**UPRIGHT, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def quadrants(width=64, height=40) -> Image.Image:
    """An image whose every turn and flip looks different: four coloured quadrants."""
    a = np.zeros((height, width, 3), np.uint8)
    a[: height // 2, : width // 2] = (0, 200, 0)
    a[: height // 2, width // 2:] = (200, 0, 0)
    a[height // 2:, : width // 2] = (0, 0, 200)
    a[height // 2:, width // 2:] = (200, 200, 200)
    return Image.fromarray(a)


def save_with_orientation(img: Image.Image, path, fmt: str, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    options = {"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    img.save(path, fmt, exif=exif, **options)


def sent_pixels(prepared) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(prepared.data)).convert("RGB"), dtype=np.int16)


def close(a: np.ndarray, b: np.ndarray, tolerance: float = 12) -> bool:
    return a.shape == b.shape and float(np.abs(a - np.asarray(b, np.int16)).mean()) < tolerance


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_image_is_sent_the_way_the_app_shows_it(tmp_path, fmt, orientation):
    upright = quadrants()
    path = tmp_path / f"o{orientation}.{fmt.lower()}"
    save_with_orientation(upright.transpose(INVERSE[orientation]) if orientation > 1 else upright, path, fmt, orientation)

    prepared = prepare_image(str(path), max_side=1536)

    if fmt == "WEBP":  # browsers show WebP as stored, whatever its EXIF says
        expected = np.asarray(Image.open(path).convert("RGB"))
    else:
        expected = np.asarray(upright)
    assert close(sent_pixels(prepared), expected)
    assert (prepared.display_width, prepared.display_height) == (expected.shape[1], expected.shape[0])
    if orientation != 1:  # never passed through with a tag the model's decoder might apply
        assert prepared.mime_type == "image/jpeg" and b"Exif" not in prepared.data[:64]


def test_heic_is_read_upright_through_pillow_heif(tmp_path):
    from pillow_heif import register_heif_opener

    register_heif_opener()
    upright = quadrants()
    plain, turned = tmp_path / "plain.heic", tmp_path / "turned.heif"
    upright.save(plain, "HEIF", quality=100)
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(INVERSE[6]).save(turned, "HEIF", quality=100, exif=exif.tobytes())

    for path in (plain, turned):
        prepared = prepare_image(str(path), max_side=1536)
        assert prepared.mime_type == "image/jpeg" and prepared.source_mime_type in ("image/heif", "image/heic")
        assert close(sent_pixels(prepared), np.asarray(upright), tolerance=16), path.name


def write_png_header(path, width: int, height: int) -> None:
    """A PNG claiming a size, with almost no pixel data (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))


def grey_ramp(width=48, height=32) -> np.ndarray:
    return np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))


def make_odd_format(tmp_path, kind: str):
    """A file in an odd pixel format and the RGB picture it must become."""
    ramp = grey_ramp()
    grey_rgb = np.repeat(ramp[..., None], 3, axis=2)
    colour = np.asarray(quadrants(48, 32))
    path = tmp_path / kind
    if kind == "grey.jpg":
        Image.fromarray(ramp, "L").save(path, quality=95)
        return path, grey_rgb
    if kind == "grey.png":
        Image.fromarray(ramp, "L").save(path)
        return path, grey_rgb
    if kind == "grey16.png":
        cv2.imwrite(str(path), ramp.astype(np.uint16) * 257)
        return path, grey_rgb
    if kind == "rgb48.png":
        cv2.imwrite(str(path), colour[..., ::-1].astype(np.uint16) * 257)
        return path, colour
    if kind == "rgba.png":
        rgba = np.dstack([colour, np.full(colour.shape[:2], 255, np.uint8)])
        rgba[:, :8, 3] = 0  # transparent strip: composited on white
        expected = colour.copy()
        expected[:, :8] = 255
        Image.fromarray(rgba, "RGBA").save(path)
        return path, expected
    if kind == "grey_alpha.png":
        Image.fromarray(np.dstack([ramp, np.full_like(ramp, 255)]), "LA").save(path)
        return path, grey_rgb
    if kind == "palette.png":
        Image.fromarray(colour).quantize(8).save(path)
        return path, colour
    if kind == "palette_transparent.gif":
        img = Image.fromarray(colour).quantize(8)
        img.info["transparency"] = 255
        img.save(path)
        return path, colour
    if kind == "bilevel.png":
        Image.fromarray(ramp > 127).save(path)
        return path, np.repeat(np.where(ramp > 127, 255, 0).astype(np.uint8)[..., None], 3, axis=2)
    if kind == "cmyk.jpg":
        Image.fromarray(colour).convert("CMYK").save(path, quality=95)
        return path, colour
    if kind == "cmyk.tif":
        Image.fromarray(colour).convert("CMYK").save(path)
        return path, colour
    if kind == "float.tif":
        Image.fromarray(ramp.astype(np.float32) / 255.0, "F").save(path)
        return path, grey_rgb
    if kind == "int32.tif":
        Image.fromarray(ramp.astype(np.int32) * 1000, "I").save(path)
        return path, grey_rgb
    if kind == "ycbcr.jpg":
        Image.fromarray(colour).convert("YCbCr").save(path, quality=95)
        return path, colour
    if kind == "bitmap.bmp":
        Image.fromarray(colour).save(path)
        return path, colour
    if kind == "animated.gif":
        frames = [Image.fromarray(colour).quantize(8), Image.fromarray(255 - colour).quantize(8)]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
        return path, colour
    if kind == "multipage.tif":
        Image.fromarray(colour).save(path, save_all=True, append_images=[Image.fromarray(255 - colour)])
        return path, colour
    if kind == "alpha.webp":
        Image.fromarray(np.dstack([colour, np.full(colour.shape[:2], 255, np.uint8)]), "RGBA").save(path, lossless=True)
        return path, colour
    raise ValueError(kind)


ODD_FORMATS = ["grey.jpg", "grey.png", "grey16.png", "rgb48.png", "rgba.png", "grey_alpha.png", "palette.png",
               "palette_transparent.gif", "bilevel.png", "cmyk.jpg", "cmyk.tif", "float.tif", "int32.tif",
               "ycbcr.jpg", "bitmap.bmp", "animated.gif", "multipage.tif", "alpha.webp"]


@pytest.mark.parametrize("kind", ODD_FORMATS)
def test_every_pixel_format_is_sent_as_the_picture_it_shows(tmp_path, kind):
    path, expected = make_odd_format(tmp_path, kind)

    prepared = prepare_image(str(path), max_side=1536)

    assert prepared.mime_type in ("image/jpeg", "image/png", "image/webp")
    assert (prepared.width, prepared.height) == (expected.shape[1], expected.shape[0])
    assert close(sent_pixels(prepared), expected, tolerance=14)


def test_upright_jpeg_within_size_is_sent_unchanged(tmp_path):
    path = tmp_path / "plain.jpg"
    quadrants().save(path, quality=90)

    prepared = prepare_image(str(path), max_side=1536)

    assert prepared.data == path.read_bytes() and prepared.mime_type == "image/jpeg"


@pytest.mark.parametrize("suffix, size", [("jpg", (6000, 4000)), ("png", (3000, 5000)), ("webp", (5000, 200))])
def test_large_images_are_downscaled_under_the_limit_keeping_their_shape(tmp_path, suffix, size):
    path = tmp_path / f"large.{suffix}"
    Image.fromarray(cv2.resize(np.asarray(quadrants()), size, interpolation=cv2.INTER_NEAREST)).save(path)

    prepared = prepare_image(str(path), max_side=1024)

    assert max(prepared.width, prepared.height) == 1024
    assert prepared.width / prepared.height == pytest.approx(size[0] / size[1], rel=0.01)
    assert (prepared.display_width, prepared.display_height) == size
    expected = cv2.resize(np.asarray(quadrants()), (prepared.width, prepared.height), interpolation=cv2.INTER_NEAREST)
    assert close(sent_pixels(prepared), expected, tolerance=20)


def test_jpeg_too_large_to_decode_whole_is_decoded_at_a_reduced_scale(tmp_path, monkeypatch):
    path = tmp_path / "huge.jpg"
    Image.fromarray(cv2.resize(np.asarray(quadrants()), (4000, 3000), interpolation=cv2.INTER_NEAREST)).save(path)
    monkeypatch.setattr(media, "MAX_PIXELS", 1_000_000)  # 12 MP is "too large"; 1/8 scale is not

    prepared = prepare_image(str(path), max_side=400)

    assert (prepared.width, prepared.height) == (400, 300)


def test_image_claiming_too_many_pixels_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    write_png_header(path, 60000, 60000)

    with pytest.raises(ImageError, match="too large to decode safely.*60000x60000"):
        prepare_image(str(path), max_side=1536)


def test_metadata_has_the_size_the_app_shows(tmp_path):
    upright = quadrants(64, 40)
    for fmt in ("JPEG", "PNG"):
        path = tmp_path / f"turned.{fmt.lower()}"
        save_with_orientation(upright.transpose(INVERSE[6]), path, fmt, 6)

        metadata = image_metadata(prepare_image(str(path), max_side=1536))

        assert (metadata.width, metadata.height) == (64, 40)
        assert metadata.size_bytes == path.stat().st_size and metadata.num_channels == 3
        assert metadata.mime_type == f"image/{fmt.lower()}"
        # FiftyOne's own compute_metadata turns JPEGs only (voxel51/fiftyone#5564)
        fiftyone_size = fo.ImageMetadata.build_for(str(path))
        assert (fiftyone_size.width, fiftyone_size.height) == ((64, 40) if fmt == "JPEG" else (40, 64))


def test_bytes_that_are_no_image_say_so():
    with pytest.raises(ImageError, match="not a readable image: upload"):
        prepare_image_bytes(b"<html>not an image</html>", 1536, name="upload")
