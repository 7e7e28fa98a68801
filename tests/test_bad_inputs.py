"""Bad and odd input, all in one run against the emulator.

Every bad sample gets a clear recorded reason; every odd-but-valid one (each
pixel format, turned by EXIF, huge, with a non-ASCII path, ...) is labeled
like the COCO image it was made from; the good samples in the same run are
labeled; and nothing already in the dataset changes.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import zlib

import cv2
import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

import gemini_annotate

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "coco_val_tiny", "images", "000000547503.jpg")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _source() -> Image.Image:
    return Image.open(SOURCE).convert("RGB")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_with_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0"))
            + _png_chunk(b"IEND", b""))


def _save(path, img: Image.Image, fmt: str, **options) -> str:
    img.save(path, fmt, **options)
    return str(path)


def _with_orientation(path, fmt: str, orientation: int, inverse) -> str:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(path, _source().transpose(inverse), fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))


def _heic(path) -> str:
    from pillow_heif import register_heif_opener

    register_heif_opener()
    return _save(path, _source(), "HEIF", quality=90)


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _truncated(path, fmt: str, keep: float) -> str:
    full = path.with_suffix(".full")
    _save(full, _source(), fmt)
    data = full.read_bytes()
    return _write(path, data[: int(len(data) * keep)])


def _unreadable(path) -> str:
    shutil.copy(SOURCE, path)
    os.chmod(path, 0)
    return str(path)


def _symlink(path, target) -> str:
    os.symlink(target, path)
    return str(path)


def _array(path, array: np.ndarray) -> str:
    cv2.imwrite(str(path), array)
    return str(path)


SAME = "same"  # labeled like the COCO image the file was made from

# (id, file name, builder(path) -> filepath, expected status, reason pattern or label count)
CASES = [
    ("missing_file", "gone.jpg", lambda p: str(p), "failed", "image file not found"),
    ("empty_file", "empty.jpg", lambda p: _write(p, b""), "failed", "image file is empty"),
    ("truncated_jpeg", "cut.jpg", lambda p: _truncated(p, "JPEG", 0.4), "failed", "truncated or corrupt"),
    ("truncated_png", "cut.png", lambda p: _truncated(p, "PNG", 0.5), "failed", "truncated or corrupt|cannot decode"),
    ("text_named_jpg", "notes.jpg", lambda p: _write(p, b"just some text, not a picture\n"), "failed", "not a readable image"),
    ("html_named_png", "page.png", lambda p: _write(p, b"<!doctype html><html></html>"), "failed", "not a readable image"),
    ("svg", "drawing.svg", lambda p: _write(p, b'<svg xmlns="http://www.w3.org/2000/svg"/>'), "failed", "not a readable image"),
    ("zip_named_jpg", "archive.jpg", lambda p: _write(p, b"PK\x03\x04" + bytes(64)), "failed", "not a readable image"),
    ("mp4_named_jpg", "clip.jpg", lambda p: _write(p, b"\x00\x00\x00\x18ftypmp42" + bytes(64)), "failed", "not a readable image"),
    ("directory", "folder.jpg", lambda p: (p.mkdir(), str(p))[1], "failed", "found a directory"),
    ("dangling_symlink", "link.jpg", lambda p: _symlink(p, p.parent / "nowhere.jpg"), "failed", "image file not found"),
    ("symlink_loop", "loop.jpg", lambda p: _symlink(p, p), "failed", "cannot read image file"),
    ("path_through_a_file", "file.jpg", lambda p: (shutil.copy(SOURCE, p), str(p / "inner.jpg"))[1], "failed",
     "cannot read image file"),
    ("decompression_bomb", "bomb.png", lambda p: _write(p, _png_with_header(60000, 60000)), "failed", "too large"),
    ("zero_width_png", "zero.png", lambda p: _write(p, _png_with_header(0, 10)), "failed", "not a readable image|no pixels"),
    ("corrupt_png_data", "noise.png", lambda p: _write(p, _png_with_header(64, 64)[:33] + _png_chunk(b"IDAT", os.urandom(200))
                                                     + _png_chunk(b"IEND", b"")), "failed", "truncated or corrupt|cannot decode"),
    # valid but odd: sent, and labeled like their source
    ("one_pixel", "dot.png", lambda p: _save(p, Image.new("RGB", (1, 1), "red"), "PNG"), "ok", 0),
    ("thin_strip", "strip.png", lambda p: _save(p, Image.new("RGB", (3000, 2), "blue"), "PNG"), "ok", 0),
    ("fully_transparent", "clear.png", lambda p: _save(p, Image.new("RGBA", (50, 40), (0, 0, 0, 0)), "PNG"), "ok", 0),
    ("huge_jpeg", "huge.jpg", lambda p: _save(p, _source().resize((6000, 4500)), "JPEG", quality=80), "ok", SAME),
    ("grey_jpeg", "grey.jpg", lambda p: _save(p, _source().convert("L"), "JPEG"), "ok", SAME),
    ("grey_16_bit_png", "grey16.png", lambda p: _array(p, np.asarray(_source().convert("L"), np.uint16) * 257), "ok", SAME),
    ("rgb_16_bit_png", "rgb48.png", lambda p: _array(p, np.asarray(_source(), np.uint16)[..., ::-1] * 257), "ok", SAME),
    ("rgba_png", "rgba.png", lambda p: _save(p, _source().convert("RGBA"), "PNG"), "ok", SAME),
    ("palette_png", "palette.png", lambda p: _save(p, _source().quantize(64), "PNG"), "ok", SAME),
    ("cmyk_jpeg", "cmyk.jpg", lambda p: _save(p, _source().convert("CMYK"), "JPEG", quality=95), "ok", SAME),
    ("cmyk_tiff", "cmyk.tif", lambda p: _save(p, _source().convert("CMYK"), "TIFF"), "ok", SAME),
    ("float_tiff", "float.tif", lambda p: _save(p, Image.fromarray(np.asarray(_source().convert("L"), np.float32) / 255, "F"),
                                                "TIFF"), "ok", SAME),
    ("bmp", "bitmap.bmp", lambda p: _save(p, _source(), "BMP"), "ok", SAME),
    ("animated_gif", "anim.gif", lambda p: _save(p, _source().quantize(128), "GIF", save_all=True,
                                                 append_images=[Image.new("P", _source().size)]), "ok", SAME),
    ("webp", "photo.webp", lambda p: _save(p, _source(), "WEBP", quality=90), "ok", SAME),
    ("heic", "photo.heic", _heic, "ok", SAME),
    ("jpeg_named_png", "really-a-jpeg.png", lambda p: (shutil.copy(SOURCE, p), str(p))[1], "ok", SAME),
    ("exif_rotated_jpeg", "turned.jpg", lambda p: _with_orientation(p, "JPEG", 6, Image.Transpose.ROTATE_90), "ok", SAME),
    ("exif_mirrored_png", "mirrored.png", lambda p: _with_orientation(p, "PNG", 2, Image.Transpose.FLIP_LEFT_RIGHT), "ok", SAME),
    ("exif_orientation_out_of_range", "odd-tag.jpg", lambda p: _save(p, _source(), "JPEG", exif=_exif(9), quality=95),
     "ok", SAME),
    ("non_ascii_path", "фото 猫 ü.jpg", lambda p: (shutil.copy(SOURCE, p), str(p))[1], "ok", SAME),
    ("odd_characters_in_path", "a #1 100% [x] (y).jpg", lambda p: (shutil.copy(SOURCE, p), str(p))[1], "ok", SAME),
    ("unreadable_file", "locked.jpg", _unreadable, *(("ok", SAME) if IS_ROOT else ("failed", "Permission denied"))),
]


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _snapshot(dataset, ignore=("gemini", "gemini_status", "gemini_reason", "last_modified_at", "metadata")):
    rows = {}
    for sample in dataset:
        doc = sample.to_dict()
        rows[sample.id] = {k: v for k, v in doc.items() if k not in ignore}
    return rows


def test_bad_input_suite_records_a_reason_per_sample_and_labels_the_rest(coco_dataset, emulator, oracle_for, tmp_path):
    assert len(CASES) >= 30
    emulator(oracle_for(coco_dataset))
    expected_same = len(coco_dataset.match(fo.ViewField("filepath") == SOURCE).first().ground_truth.detections)
    # a sample a person labeled already, which the run must leave alone
    person = coco_dataset.skip(1).first()
    person["gemini"] = fo.Detections(detections=[fo.Detection(label="mine", bounding_box=[0.1, 0.1, 0.2, 0.2])])
    person.save()
    case_dir = tmp_path / "cases"
    case_dir.mkdir()
    samples = {}
    for case, name, build, _, _ in CASES:
        path = build(case_dir / name)
        samples[case] = fo.Sample(filepath=path, case=case, tags=["bad-input"], notes=f"kept {case}")
    coco_dataset.add_samples(list(samples.values()))
    before = _snapshot(coco_dataset)
    metadata_before = dict(zip(*coco_dataset.values(["id", "metadata"])))

    try:
        summary = gemini_annotate.annotate(coco_dataset, task="detect", label_field="gemini")
    finally:
        os.chmod(case_dir / "locked.jpg", 0o600)

    # every case: its status and its reason or labels
    for case, _, _, status, expected in CASES:
        sample = coco_dataset[samples[case].id]
        assert sample.gemini_status == status, f"{case}: {sample.gemini_reason}"
        if status == "failed":
            assert sample.gemini is None
            assert sample.gemini_reason and re.search(expected, sample.gemini_reason), \
                f"{case}: {sample.gemini_reason}"
            assert sample.filepath.split("/")[-1] in sample.gemini_reason or case in ("decompression_bomb",), case
        else:
            count = expected_same if expected == SAME else expected
            assert len(sample.gemini.detections) == count, f"{case}: {sample.gemini_reason}"
            assert sample.metadata is not None and sample.metadata.width > 0, case
    # the good samples of the same run are labeled
    for sample in coco_dataset.match_tags("bad-input", bool=False):
        if sample.id == person.id:
            continue
        assert sample.gemini_status == "ok"
        assert len(sample.gemini.detections) == len(sample.ground_truth.detections)
    # nothing that was already there changed
    assert _snapshot(coco_dataset) == before
    assert [d.label for d in coco_dataset[person.id].gemini.detections] == ["mine"]
    assert coco_dataset[person.id].gemini_status is None
    for sample_id, metadata in metadata_before.items():
        if metadata is not None:
            assert coco_dataset[sample_id].metadata == metadata
    failed = sum(1 for c in CASES if c[3] == "failed")
    assert summary.failed == failed and summary.skipped == 1
    assert summary.done == len(coco_dataset) - failed - 1


def test_metadata_written_for_new_samples_is_the_size_the_app_shows(make_dataset, emulator, oracle_for, tmp_path):
    dataset = make_dataset()
    path = _with_orientation(tmp_path / "turned.png", "PNG", 6, Image.Transpose.ROTATE_90)
    dataset.add_sample(fo.Sample(filepath=path))
    emulator(oracle_for(dataset, field=None))

    gemini_annotate.annotate(dataset, label_field="gemini")

    width, height = _source().size
    metadata = dataset.first().metadata
    assert (metadata.width, metadata.height) == (width, height)
    assert metadata.mime_type == "image/png" and metadata.size_bytes == os.path.getsize(path)


def test_video_sample_in_a_mixed_view_fails_alone(make_dataset, emulator, oracle_for, tmp_path):
    dataset = make_dataset()
    dataset.add_group_field("group", default="image")
    group = fo.Group()
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    dataset.add_samples([fo.Sample(filepath=SOURCE, group=group.element("image")),
                         fo.Sample(filepath=str(video), group=group.element("video"))])
    mixed = dataset.select_group_slices(_allow_mixed=True)
    server = emulator(oracle_for(dataset.select_group_slices("image"), field=None))

    summary = gemini_annotate.annotate(mixed, label_field="gemini")

    assert (summary.done, summary.failed) == (1, 1) and server.count() == 1
    statuses = dict(zip(*mixed.values(["filepath", "gemini_status"])))
    reasons = dict(zip(*mixed.values(["filepath", "gemini_reason"])))
    assert statuses == {SOURCE: "ok", str(video): "failed"}
    assert "video samples are not supported" in reasons[str(video)]


@pytest.mark.skipif(not IS_ROOT or shutil.which("setpriv") is None,
                    reason="as a user, the locked file of the run above already meets the permission error")
def test_a_file_the_run_may_not_read_fails_with_permission_denied_also_as_root(make_dataset, emulator,
                                                                                 oracle_for, tmp_path):
    """Root reads any file, so the run goes to a process without the capabilities that let it
    (util-linux's setpriv drops them): the kernel then refuses the file as it would a user."""
    locked = tmp_path / "locked.jpg"
    shutil.copy(SOURCE, locked)
    os.chmod(locked, 0)
    dataset = make_dataset()
    dataset.persistent = True  # visible to the run's process; deleted by the fixture
    dataset.add_samples([fo.Sample(filepath=SOURCE), fo.Sample(filepath=str(locked))])
    server = emulator(oracle_for(dataset.select_by("filepath", [SOURCE]), field=None))
    command = [sys.executable, "-m", "gemini_annotate.cli", "annotate", dataset.name, "--quiet"]

    try:
        done = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *command],
                              capture_output=True, text=True, timeout=300)
    finally:
        os.chmod(locked, 0o600)

    assert done.returncode == 0, done.stderr
    dataset.reload()
    statuses = dict(zip(*dataset.values(["filepath", "gemini_status"])))
    reasons = dict(zip(*dataset.values(["filepath", "gemini_reason"])))
    assert statuses == {SOURCE: "ok", str(locked): "failed"}
    assert "Permission denied" in reasons[str(locked)] and "locked.jpg" in reasons[str(locked)]
    assert server.count() == 1
