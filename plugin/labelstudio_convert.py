"""FiftyOne labels ↔ Label Studio results, for every label type a run writes.

One *kind* per label field, each shown with the Label Studio control people
correct it with:

========== ====================================== =====================================
kind       field                                  Label Studio
========== ====================================== =====================================
boxes      ``Detections`` without masks           ``RectangleLabels`` (percent x, y, w, h)
masks      ``Detections`` with instance masks     ``BrushLabels`` (the full-frame mask as brush RLE)
polygons   ``Polylines`` (``segment`` outlines)   ``PolygonLabels``, one region per ring (percent)
points     ``Keypoints``                          ``KeyPointLabels``, one region per point (percent)
class      ``Classification``                     ``Choices`` (one, radio)
classes    ``Classifications`` (multi-label)      one ``Choices`` drop-down per class slot
text       a string (caption, answer)             ``TextArea``
========== ====================================== =====================================

Every region's Label Studio id is the id of the label it shows (with ``_<n>``
for the second and later ring or point of one label), so a region a person
kept or changed comes back as the same label, and one they drew gets a new id.
Brush RLE is lossless: an unchanged mask decodes to the very pixels it was
sent as. Multi-label classes get one drop-down per class (``<field>_1``,
``<field>_2``, ...) rather than one set of check boxes, so that changing one
class is an edit of that label, not a removal and an addition.

Pure: no database, no network. The brush RLE codec is Label Studio's own
(``label_studio_sdk.converter.brush``), imported when masks are converted.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional
from xml.sax.saxutils import quoteattr

import fiftyone.core.labels as fol
import numpy as np

from .labels import labels_in
from .masks import instance_mask_to_frame

KINDS = ("boxes", "masks", "polygons", "points", "class", "classes", "text")
IMAGE = "image"
"""The name of the image in the labeling config (``to_name`` of every result)."""

SPARE_CLASS_SLOTS = 2
"""Empty class drop-downs offered beyond the most classes a sample has, for classes a person adds."""

POINT_WIDTH = 0.5
"""The size Label Studio draws a point with, in percent of the image width."""

_CONTROLS = {
    "boxes": ("RectangleLabels", "rectanglelabels"),
    "masks": ("BrushLabels", "brushlabels"),
    "polygons": ("PolygonLabels", "polygonlabels"),
    "points": ("KeyPointLabels", "keypointlabels"),
}
_REGION_ID = re.compile(r"^([0-9a-f]{24})(?:_(\d+))?$")


def label_kind(label_type: type, has_masks: bool = False) -> str:
    """The kind of a field holding ``label_type`` (``str`` for text); ``has_masks`` for masks.

    Raises:
        ValueError: a label type Label Studio rounds do not carry.
    """
    if label_type is str:
        return "text"
    kinds = {fol.Polylines: "polygons", fol.Keypoints: "points",
             fol.Classification: "class", fol.Classifications: "classes"}
    if issubclass(label_type, fol.Detections):
        return "masks" if has_masks else "boxes"
    for kind_type, kind in kinds.items():
        if issubclass(label_type, kind_type):
            return kind
    raise ValueError(f"a Label Studio round carries Detections, Polylines, Keypoints, Classification(s) "
                     f"and text, not {label_type.__name__}")


def class_slots(values: Iterable[Any]) -> int:
    """How many class drop-downs a ``classes`` round shows: the most a sample has, plus spares."""
    most = max((len(v.classifications or []) for v in values if v is not None), default=0)
    return most + SPARE_CLASS_SLOTS


def slot_names(name: str, slots: int) -> list[str]:
    """The control names of a ``classes`` round's drop-downs."""
    return [f"{name}_{k}" for k in range(1, slots + 1)]


def labeling_config(kind: str, name: str, classes: Iterable[str] = (), *, slots: int = 0,
                    header: Optional[str] = None) -> str:
    """The Label Studio labeling config (XML) of a round of ``kind`` over the field ``name``.

    Args:
        classes: the classes people may choose.
        slots: the number of class drop-downs (``classes`` kind only).
        header: a line shown above the controls (the question of a ``vqa`` run).
    """
    lines = ["<View>", f'  <Image name="{IMAGE}" value="$image"/>']
    if header:
        lines.append(f"  <Header value={quoteattr(header)}/>")
    options = "".join(f"<Choice value={quoteattr(c)}/>" for c in classes)
    if kind in _CONTROLS:
        tag = _CONTROLS[kind][0]
        labels = "".join(f"<Label value={quoteattr(c)}/>" for c in classes)
        lines.append(f'  <{tag} name={quoteattr(name)} toName="{IMAGE}">{labels}</{tag}>')
    elif kind == "class":
        lines.append(f'  <Choices name={quoteattr(name)} toName="{IMAGE}" choice="single-radio">{options}</Choices>')
    elif kind == "classes":
        for slot in slot_names(name, slots):
            lines.append(f'  <Choices name={quoteattr(slot)} toName="{IMAGE}" choice="single" layout="select">'
                         f"{options}</Choices>")
    elif kind == "text":
        lines.append(f'  <TextArea name={quoteattr(name)} toName="{IMAGE}" maxSubmissions="1" editable="true"/>')
    else:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    lines.append("</View>")
    return "\n".join(lines)


# FiftyOne → Label Studio


def to_results(value: Any, kind: str, name: str, frame_size: tuple[int, int]) -> list[dict]:
    """The Label Studio results (regions) showing a field's value.

    Args:
        value: the field's value: a label list, a label, a string or ``None``.
        kind: one of :data:`KINDS`.
        name: the control's name (the field).
        frame_size: ``(width, height)`` of the image in pixels.
    """
    width, height = frame_size
    base = {"from_name": name, "to_name": IMAGE, "original_width": width, "original_height": height,
            "image_rotation": 0}
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if kind == "text":
        return [dict(base, id="text", type="textarea", value={"text": [value]})]
    if kind == "class":
        return [dict(base, id=value.id, type="choices", value={"choices": [value.label]})]
    if kind == "classes":
        return [dict(base, from_name=slot, id=label.id, type="choices", value={"choices": [label.label]})
                for slot, label in zip(slot_names(name, len(value.classifications)), value.classifications)]
    results = []
    for label in labels_in(value):
        for region_id, region in zip(_region_ids(label.id), _regions(label, kind, frame_size)):
            control = _CONTROLS[kind][1]
            region[control] = [label.label]
            results.append(dict(base, id=region_id, type=control, value=region))
    return results


def _region_ids(label_id: str) -> Iterable[str]:
    yield label_id
    n = 1
    while True:
        yield f"{label_id}_{n}"
        n += 1


def _regions(label: fol.Label, kind: str, frame_size: tuple[int, int]) -> list[dict]:
    if kind == "boxes":
        x, y, w, h = (100 * v for v in label.bounding_box)
        return [{"x": x, "y": y, "width": w, "height": h, "rotation": 0}]
    if kind == "masks":
        if label.mask is None:
            return []
        return [{"format": "rle", "rle": encode_mask(frame_mask(label, frame_size))}]
    if kind == "polygons":
        return [{"points": [[100 * x, 100 * y] for x, y in ring], "closed": True} for ring in label.points or []]
    if kind == "points":
        return [{"x": 100 * x, "y": 100 * y, "width": POINT_WIDTH} for x, y in label.points or []
                if not (np.isnan(x) or np.isnan(y))]
    raise ValueError(f"unknown kind {kind!r}")


def frame_mask(detection: fol.Detection, frame_size: tuple[int, int]) -> np.ndarray:
    """A detection's instance mask on the whole image, as the App draws it: bool ``(height, width)``."""
    return instance_mask_to_frame(detection.mask, detection.bounding_box, frame_size)


def detection_from_frame_mask(mask: np.ndarray, label: Optional[str]) -> Optional[fol.Detection]:
    """The detection a whole-image mask outlines: its box on the mask's pixel edges, the mask cropped to it.

    Exact: :func:`frame_mask` of the result gives back the very pixels
    (``Detection.from_mask`` and ``to_segmentation`` disagree by a pixel).
    ``None`` for an empty mask.
    """
    rows, columns = np.nonzero(mask)
    if rows.size == 0:
        return None
    height, width = mask.shape
    top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
    box = [left / width, top / height, (right - left) / width, (bottom - top) / height]
    return fol.Detection(label=label, bounding_box=box, mask=mask[top:bottom, left:right].copy())


def encode_mask(mask: np.ndarray) -> list[int]:
    """A bool ``(height, width)`` mask as Label Studio brush RLE."""
    from label_studio_sdk.converter import brush  # lazy: the optional Label Studio client brings the codec

    return brush.mask2rle(np.where(mask, 255, 0).astype(np.uint8))


def decode_mask(rle: list[int], frame_size: tuple[int, int]) -> np.ndarray:
    """Label Studio brush RLE back to a bool ``(height, width)`` mask (its alpha channel)."""
    from label_studio_sdk.converter import brush  # lazy: the optional Label Studio client brings the codec

    width, height = frame_size
    return brush.decode_rle(rle).reshape(height, width, 4)[:, :, 3] > 0


# Label Studio → FiftyOne


def from_results(
    results: Iterable[dict],
    kind: str,
    name: str,
    frame_size: tuple[int, int],
    originals: Iterable[fol.Label] = (),
) -> Any:
    """A field's value from the results a person submitted.

    A region with the id of an original label comes back as that label (its
    attributes kept) with the class and geometry the person left; a mask
    whose pixels are unchanged keeps the original mask as it is. Regions with
    other ids are new labels.

    Args:
        results: the annotation's results (any control's; others are skipped).
        originals: the labels the round sent for this image.

    Returns:
        a label list, a ``Classification``, a string, or ``None`` when the person left nothing.
    """
    results = [r for r in results if _control_of(r, kind, name)]
    if kind == "text":
        texts = [t for r in results for t in r.get("value", {}).get("text", []) if str(t).strip()]
        return "\n".join(str(t).strip() for t in texts) or None
    by_id = {label.id: label for label in originals}
    if kind in ("class", "classes"):
        labels = [_merged(by_id.get(r.get("id")), fol.Classification(label=choice))
                  for r in results for choice in r.get("value", {}).get("choices", [])[:1]]
        if kind == "class":
            return labels[-1] if labels else None
        return fol.Classifications(classifications=labels)
    groups: dict[str, list[dict]] = {}
    for result in results:
        match = _REGION_ID.match(str(result.get("id", "")))
        key = match.group(1) if match and match.group(1) in by_id else f"new:{len(groups)}"
        groups.setdefault(key, []).append(result)
    labels = [label for key, regions in groups.items()
              if (label := _label_from_regions(regions, kind, frame_size, by_id.get(key))) is not None]
    list_type, attribute = {"boxes": (fol.Detections, "detections"), "masks": (fol.Detections, "detections"),
                            "polygons": (fol.Polylines, "polylines"),
                            "points": (fol.Keypoints, "keypoints")}[kind]
    return list_type(**{attribute: labels})


def _control_of(result: dict, kind: str, name: str) -> bool:
    source = result.get("from_name")
    if kind == "classes":
        return bool(re.fullmatch(re.escape(name) + r"_\d+", str(source)))
    return source == name


def _label_from_regions(regions: list[dict], kind: str, frame_size: tuple[int, int],
                        original: Optional[fol.Label]) -> Optional[fol.Label]:
    control = _CONTROLS[kind][1]
    values = [r["value"] for r in regions]
    names = [v.get(control) or [] for v in values]
    label = names[0][0] if names[0] else (original.label if original is not None else None)
    if kind == "boxes":
        v = values[0]
        box = [v["x"] / 100, v["y"] / 100, v["width"] / 100, v["height"] / 100]
        return _merged(original, fol.Detection(label=label, bounding_box=box))
    if kind == "masks":
        mask = np.zeros(frame_size[::-1], bool)
        for v in values:
            mask |= decode_mask(v["rle"], frame_size)
        if not mask.any():
            return None  # erased: the person removed it
        if original is not None and original.mask is not None and np.array_equal(mask, frame_mask(original, frame_size)):
            return _merged(original, fol.Detection(label=label, bounding_box=original.bounding_box,
                                                   mask=original.mask))
        return _merged(original, detection_from_frame_mask(mask, label))
    if kind == "polygons":
        rings = [[[x / 100, y / 100] for x, y in v["points"]] for v in values]
        closed, filled = (original.closed, original.filled) if original is not None else (True, True)
        return _merged(original, fol.Polyline(label=label, points=rings, closed=closed, filled=filled))
    points = [[v["x"] / 100, v["y"] / 100] for v in values]
    return _merged(original, fol.Keypoint(label=label, points=points))


_GEOMETRY = ("label", "bounding_box", "mask", "points", "closed", "filled")


PERCENT_NOISE = 1e-9
"""Coordinates this close to the ones sent are the ones sent: percent and back is not exact in floating point."""


def _merged(original: Optional[fol.Label], new: fol.Label) -> fol.Label:
    """The original label (same id, attributes) with the class and geometry of ``new``; ``new`` if none.

    Coordinates a person left as they were keep their original values exactly,
    so an untouched label comes back bit for bit.
    """
    if original is None:
        return new
    merged = original.copy()
    merged.id = original.id
    for field in _GEOMETRY:
        if new.has_field(field) and new[field] is not None and not _same_numbers(new[field], original[field]):
            merged[field] = new[field]
    return merged


def _same_numbers(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_numbers(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b) <= PERCENT_NOISE
    return a == b
