"""The oracle: Gemini replies made from labels already known for an image.

The emulator recognises the image it receives (a 32×32 fingerprint, robust to
resizing and re-encoding, compared with the known images in the orientation a
viewer shows them) and answers with that image's known labels, written in the
shape the request's schema asks for: boxes, polygon masks over the image
(Gemini 3), PNG masks inside the box (Gemini 2.5), or points. Converting such a
reply back must give the known labels again, up to the 0–1000 quantisation:
that is what makes round trips measurable exactly. Given noise (:mod:`.noise`:
named profiles from ``perfect`` to ``lite``), it is wrong instead the way real
models are: it misses small objects, boxes them loosely, hallucinates and mixes
up look-alike classes, afresh in every answer.

Like the real model, the emulator sees raw pixels: EXIF orientation in the file
it receives is ignored, so an image sent without being turned upright is not
recognised (and the mistake shows). Known images are indexed the way the App
shows them (:mod:`.orientation`).

The oracle's geometry, image turning and class-name matching are its own
(:mod:`.geometry`, :mod:`.orientation`, :mod:`.class_names`), sharing no code
with the client: tests grade the client's conversion by reading the oracle's
answers back, and a mistake both shared would pass unseen.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from PIL import Image

from .class_names import names_class
from .geometry import (
    box_2d_from_relative,
    box_corners,
    instance_mask_on_frame,
    outline_area,
    outline_in_box,
    outline_of_mask,
    png_mask_over_box,
    point_1000,
    polygon_1000,
    polygon_on_frame,
)
from .noise import (
    OracleNoise,
    answer_rng,
    confused_label,
    hallucinated_box,
    hallucinated_label,
    jittered_box,
    jittered_point,
    miss_chance,
    object_side,
    self_confidence,
)
from .orientation import shown_size, shown_upright

FINGERPRINT_SIDE = 32
MATCH_THRESHOLD = 0.9
ASPECT_TOLERANCE = 0.03
POLYGON_TOLERANCE = 0.5
"""Pixels the oracle's polygons may deviate from a known mask's outline."""
KNOWN_CONFIDENCE = 0.9
"""The confidence the oracle gives an object it knows, when none is recorded."""


@dataclass(frozen=True)
class KnownObject:
    """One known object, in relative coordinates of the displayed image.

    Attributes:
        label: its class.
        bounding_box: ``[x, y, w, h]`` in 0–1.
        mask: an instance mask over the box (FiftyOne's convention), if known.
        polygon: its outline as relative ``(x, y)`` points, if known.
        point: a relative ``(x, y)`` point on it (defaults to the box centre).
        confidence: the confidence to answer with, when one is asked for
            (default :data:`KNOWN_CONFIDENCE`).
    """

    label: str
    bounding_box: tuple[float, float, float, float]
    mask: Optional[np.ndarray] = None
    polygon: Optional[tuple[tuple[float, float], ...]] = None
    point: Optional[tuple[float, float]] = None
    confidence: Optional[float] = None


@dataclass(frozen=True)
class KnownImage:
    """An image the oracle can recognise, and what is known about it."""

    key: str
    width: int
    height: int
    objects: tuple[KnownObject, ...] = ()
    caption: Optional[str] = None
    classification: Optional[str] = None
    classifications: tuple[str, ...] = ()
    fingerprint: np.ndarray = field(default=None, repr=False, compare=False)  # type: ignore[assignment]


def fingerprint(img: Image.Image) -> np.ndarray:
    """A unit-norm, zero-mean 32×32 greyscale thumbnail of an image."""
    img.draft("L", (FINGERPRINT_SIDE * 4, FINGERPRINT_SIDE * 4))
    grey = img.convert("L").resize((FINGERPRINT_SIDE, FINGERPRINT_SIDE), Image.Resampling.BOX)
    vector = np.asarray(grey, dtype=np.float32).ravel()
    vector = vector - vector.mean()
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


class LabelIndex:
    """Known images and their labels, searchable by image content. Thread-safe."""

    def __init__(self) -> None:
        self._images: list[KnownImage] = []
        self._matrix: Optional[np.ndarray] = None
        self._classes: Optional[tuple[str, ...]] = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._images)

    @property
    def images(self) -> tuple[KnownImage, ...]:
        """The known images, in the order they were added."""
        with self._lock:
            return tuple(self._images)

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes of all known objects, sorted: what a noisy oracle may hallucinate."""
        with self._lock:
            if self._classes is None:
                self._classes = tuple(sorted({o.label for k in self._images for o in k.objects}))
            return self._classes

    def add(self, key: str, image: Image.Image, objects: Iterable[KnownObject] = (),
            *, caption: Optional[str] = None, classification: Optional[str] = None,
            classifications: Iterable[str] = (),
            size: Optional[tuple[int, int]] = None) -> KnownImage:
        """Adds an image (as displayed) with its known labels.

        ``size`` is the displayed ``(width, height)`` when ``image`` is a reduced copy.
        ``classifications`` are the classes that apply (multi-label); by default
        the classes of its objects.
        """
        width, height = size or image.size
        known = KnownImage(
            key=key, width=width, height=height, objects=tuple(objects),
            caption=caption, classification=classification,
            classifications=tuple(classifications), fingerprint=fingerprint(image.copy()),
        )
        with self._lock:
            self._images.append(known)
            self._matrix = None
            self._classes = None
        return known

    def add_file(self, key: str, path: str, objects: Iterable[KnownObject] = (), **known: Any) -> KnownImage:
        """Adds an image file, turned the way the App shows it first."""
        with Image.open(path) as img:
            size = shown_size(img)
            img.draft("RGB", (FINGERPRINT_SIDE * 8, FINGERPRINT_SIDE * 8))
            upright = shown_upright(img)
            return self.add(key, upright, objects, size=size, **known)

    @classmethod
    def from_samples(cls, samples, label_field: Optional[str] = None, *,
                     caption_field: Optional[str] = None,
                     classification_field: Optional[str] = None) -> "LabelIndex":
        """An index of a FiftyOne collection's images and the labels in its fields.

        ``label_field`` may hold ``Detections`` (instance masks included),
        ``Polylines`` or ``Keypoints``; ``caption_field`` strings;
        ``classification_field`` a ``Classification`` or ``Classifications``.
        Images are keyed by file path, so noisy answers are the same for the
        same file in any dataset.
        """
        index = cls()
        fields = ["filepath"] + [f for f in (label_field, caption_field, classification_field) if f]
        rows = zip(*samples.values(fields))
        for row in rows:
            values = dict(zip(fields, row))
            objects = objects_from_label(values.get(label_field)) if label_field else []
            classification = values.get(classification_field) if classification_field else None
            several = getattr(classification, "classifications", None)
            index.add_file(
                values["filepath"], values["filepath"], objects,
                caption=values.get(caption_field) if caption_field else None,
                classification=None if several is not None else getattr(classification, "label", classification),
                classifications=[c.label for c in several or []],
            )
        return index

    def find(self, image_bytes: bytes) -> Optional["Match"]:
        """The known image these bytes show (as sent, EXIF ignored), or ``None``."""
        try:
            with Image.open(io.BytesIO(image_bytes)) as img:
                sent_size = img.size
                aspect = img.width / img.height
                probe = fingerprint(img)
        except Exception:
            return None
        with self._lock:
            if not self._images:
                return None
            if self._matrix is None:
                self._matrix = np.stack([k.fingerprint for k in self._images])
            matrix, images = self._matrix, list(self._images)
        scores = matrix @ probe
        for i in np.argsort(-scores):
            if scores[i] < MATCH_THRESHOLD:
                return None
            known = images[i]
            if abs(known.width / known.height - aspect) <= ASPECT_TOLERANCE * aspect:
                return Match(known, sent_size)
        return None


@dataclass(frozen=True)
class Match:
    """A received image recognised as a known one, and its size as received."""

    known: KnownImage
    sent_size: tuple[int, int]


def objects_from_label(label: Any) -> list[KnownObject]:
    """Known objects from a FiftyOne label (Detections, Polylines, Keypoints)."""
    import fiftyone as fo  # lazy: the emulator server runs without FiftyOne; only indexing a dataset needs it

    if label is None:
        return []
    objects = []
    if isinstance(label, fo.Detections):
        for det in label.detections:
            objects.append(KnownObject(det.label, tuple(det.bounding_box), mask=det.get_mask(),
                                       confidence=det.confidence))
    elif isinstance(label, fo.Polylines):
        for poly in label.polylines:
            points = [p for shape in poly.points for p in shape]
            if not points:
                continue
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            box = (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
            outline = max(poly.points, key=outline_area)
            objects.append(KnownObject(poly.label, box, polygon=tuple(map(tuple, outline)),
                                       confidence=poly.confidence))
    elif isinstance(label, fo.Keypoints):
        for kp in label.keypoints:
            confidences = [*(kp.confidence or ()), *[None] * len(kp.points)]  # FiftyOne's: one per point
            for (x, y), confidence in zip(kp.points, confidences):
                objects.append(KnownObject(kp.label, (x, y, 0.0, 0.0), point=(x, y), confidence=confidence))
    return objects


# what the request asks for


@dataclass(frozen=True)
class AnswerForm:
    """The reply shape a request asks for, read from its schema (or prompt).

    Attributes:
        kind: ``boxes``, ``polygon``, ``png``, ``points``, ``caption``, ``vqa``,
            ``classify`` or ``classify_multi``.
        wrapper: the key wrapping the item list (``boxes``), or ``None`` for a bare list.
        classes: the allowed labels when the schema has an enum.
        fenced: whether to wrap the JSON in a Markdown fence (replies without a schema).
        text_key: for caption/classify schemas, the property holding the answer.
        confidence: whether each item carries a ``confidence``.
    """

    kind: str
    wrapper: Optional[str] = "boxes"
    classes: Optional[tuple[str, ...]] = None
    fenced: bool = False
    text_key: Optional[str] = None
    confidence: bool = False


def _resolve(schema: dict, node: Any) -> dict:
    seen = 0
    while isinstance(node, dict) and "$ref" in node and seen < 20:
        path = node["$ref"].lstrip("#/").split("/")
        target: Any = schema
        for part in path:
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node = target
        seen += 1
    if isinstance(node, dict) and "anyOf" in node:
        options = [_resolve(schema, o) for o in node["anyOf"] if o.get("type") != "null"]
        return options[0] if options else {}
    return node if isinstance(node, dict) else {}


def answer_form(schema: Optional[dict], prompt: str) -> AnswerForm:
    """Reads the answer shape from a structured-output schema, else from the prompt."""
    if not schema:
        lowered = prompt.lower()
        if "segmentation mask" in lowered:
            return AnswerForm("png", wrapper=None, fenced=True)
        if "point" in lowered and "box_2d" not in lowered:
            return AnswerForm("points", wrapper=None, fenced=True)
        return AnswerForm("boxes", wrapper=None, fenced=True)

    top = _resolve(schema, schema)
    wrapper: Optional[str] = None
    if top.get("type") == "array":
        item = _resolve(schema, top.get("items", {}))
    else:
        props = top.get("properties", {})
        item = {}
        for name, prop in props.items():
            prop = _resolve(schema, prop)
            if prop.get("type") == "array" and _resolve(schema, prop.get("items", {})).get("type") == "object":
                wrapper, item = name, _resolve(schema, prop["items"])
                break
        if not item:
            for name, prop in props.items():
                prop = _resolve(schema, prop)
                if prop.get("enum"):
                    return AnswerForm("classify", wrapper=None, classes=tuple(prop["enum"]), text_key=name)
                items = _resolve(schema, prop.get("items", {})) if prop.get("type") == "array" else {}
                if items.get("enum"):
                    return AnswerForm("classify_multi", wrapper=None, classes=tuple(items["enum"]),
                                      text_key=name)
            text_key = next(iter(props), "text")
            return AnswerForm("vqa" if text_key == "answer" else "caption", wrapper=None, text_key=text_key)

    item_props = {k: _resolve(schema, v) for k, v in item.get("properties", {}).items()}
    label = item_props.get("label", {})
    classes = tuple(label["enum"]) if label.get("enum") else (
        (label["const"],) if "const" in label else None)
    mask = item_props.get("mask")
    if "point" in item_props and "box_2d" not in item_props:
        kind = "points"
    elif mask is not None and mask.get("type") == "string":
        kind = "png"
    elif mask is not None:
        kind = "polygon"
    else:
        kind = "boxes"
    return AnswerForm(kind, wrapper=wrapper, classes=classes, confidence="confidence" in item_props)


# writing the answer


def oracle_answer(known: KnownImage, form: AnswerForm, sent_size: tuple[int, int],
                  noise: Optional[OracleNoise] = None, prompt: str = "", *, draw: int = 0,
                  dataset_classes: Sequence[str] = ()) -> str:
    """The reply text a perfect (or, with ``noise``, a plausible) model would give.

    Args:
        known: the recognised image.
        form: the answer shape asked for.
        sent_size: ``(width, height)`` of the image as received.
        noise: imperfections to add, if any (see :mod:`.noise`).
        prompt: the request's text (the question, for ``vqa``).
        draw: which answer about this image this is (0 for the first): each
            draws its noise afresh.
        dataset_classes: the classes a noisy answer may name when the request
            lists none.
    """
    # drawn by the file's name, not its path: the same image gets the same answers wherever
    # the dataset (or a checkout of the tests) lives
    rng = answer_rng(noise, os.path.basename(known.key), draw) if noise is not None else None
    if form.kind == "caption":
        return json.dumps({form.text_key: known.caption or ""})
    if form.kind == "classify":
        label = known.classification or (form.classes or [""])[0]
        if noise is not None:
            label = confused_label(label, noise, form.classes or (), rng)
        return json.dumps({form.text_key: label})
    if form.kind == "classify_multi":
        applying = known.classifications or tuple(dict.fromkeys(o.label for o in known.objects))
        allowed = {c.casefold(): c for c in form.classes or ()}
        chosen = [allowed[c.casefold()] for c in applying if c.casefold() in allowed]
        if noise is not None:
            chosen = noisy_class_set(chosen, noise, form.classes or (), rng)
        return json.dumps({form.text_key: list(dict.fromkeys(chosen))})
    if form.kind == "vqa":
        return json.dumps({form.text_key: answer_question(known, prompt)})

    objects = list(known.objects)
    if form.classes:
        allowed = {c.casefold(): c for c in form.classes}
        objects = [replace(o, label=allowed[o.label.casefold()]) for o in objects
                   if o.label.casefold() in allowed]
    if noise is not None:
        objects = noisy_objects(objects, noise, rng, form.classes or dataset_classes)

    items = []
    for obj in objects:
        item: dict[str, Any]
        if form.kind == "points":
            x, y = obj.point if obj.point else (obj.bounding_box[0] + obj.bounding_box[2] / 2,
                                                obj.bounding_box[1] + obj.bounding_box[3] / 2)
            item = {"point": point_1000((x, y)), "label": obj.label}
        else:
            box_2d = box_2d_from_relative(obj.bounding_box)
            if box_2d[2] <= box_2d[0] or box_2d[3] <= box_2d[1]:
                continue
            item = {"box_2d": box_2d, "label": obj.label}
            if form.kind == "polygon":
                polygon = _polygon_1000(obj)
                if polygon is None:
                    continue
                item["mask"] = polygon
            elif form.kind == "png":
                png = _png_mask(obj, box_2d, sent_size)
                if png is None:
                    continue
                item["mask"] = png
        if form.confidence:
            item["confidence"] = round(KNOWN_CONFIDENCE if obj.confidence is None else obj.confidence, 4)
        items.append(item)

    payload: Any = {form.wrapper: items} if form.wrapper else items
    text = json.dumps(payload)
    return f"```json\n{json.dumps(payload, indent=2)}\n```" if form.fenced else text


_HOW_MANY = re.compile(r"how many (?P<thing>[\w\s-]+?)(?: are| is| can|\?|$)", re.IGNORECASE)
_PRESENCE = re.compile(r"^\s*(?:is|are) there (?:an? |any )?(?P<thing>[\w\s-]+?)(?: in| on|\?|$)",
                       re.IGNORECASE | re.MULTILINE)


def answer_question(known: KnownImage, prompt: str) -> str:
    """A truthful answer to a simple question, from what is known about the image.

    Answers "how many X" by counting known objects of class X, "is/are there X"
    by their presence, questions about the image's class or kind by its
    classification, and anything else with its caption.
    """
    question = prompt.rsplit("Question:", 1)[-1].strip()
    labels = [o.label for o in known.objects]

    def matching(thing: str) -> int:
        return sum(1 for label in labels if names_class(thing, label))

    if m := _HOW_MANY.search(question):
        return str(matching(m["thing"]))
    if m := _PRESENCE.search(question):
        return "yes" if matching(m["thing"]) else "no"
    lowered = question.casefold()
    if known.classification and any(w in lowered for w in ("class", "category", "kind", "type")):
        return known.classification
    return known.caption or "I cannot tell from the image."


def noisy_objects(objects: Sequence[KnownObject], noise: OracleNoise, rng: np.random.Generator,
                  vocabulary: Sequence[str] = ()) -> list[KnownObject]:
    """The objects a model with this noise reports, for an image whose known objects are ``objects``.

    Each object may be missed, moved, confused and given a drawn confidence, and
    hallucinations are added (:mod:`.noise` says how). ``vocabulary`` is the
    classes the model may name (the request's, else the dataset's; by default
    the image's).
    """
    image_classes = sorted({o.label for o in objects})
    vocabulary = tuple(vocabulary) or tuple(image_classes)
    reported = []
    for obj in objects:
        if rng.random() < miss_chance(noise, object_side(obj.bounding_box), len(objects)):
            continue
        obj = _jittered(obj, noise, rng)
        obj = replace(obj, label=confused_label(obj.label, noise, vocabulary, rng))
        if noise.confidence_spread:
            centre = KNOWN_CONFIDENCE if obj.confidence is None else obj.confidence
            obj = replace(obj, confidence=self_confidence(centre, noise.confidence_spread, rng))
        reported.append(obj)
    sizes = [(o.bounding_box[2], o.bounding_box[3]) for o in objects if object_side(o.bounding_box)]
    for _ in range(int(rng.poisson(noise.false_positive_rate * max(len(objects), 1)))):
        box = hallucinated_box(sizes, rng)
        reported.append(KnownObject(
            hallucinated_label(image_classes, vocabulary, rng), box,
            confidence=self_confidence(noise.false_positive_confidence, noise.confidence_spread, rng)))
    return reported


def noisy_class_set(classes: Sequence[str], noise: OracleNoise, vocabulary: Sequence[str],
                    rng: np.random.Generator) -> list[str]:
    """The classes a noisy model says apply: each may be missed or confused, and others added."""
    kept = [confused_label(c, noise, vocabulary, rng) for c in classes if rng.random() >= noise.miss_rate]
    extra = int(rng.poisson(noise.false_positive_rate * max(len(classes), 1))) if vocabulary else 0
    kept += [str(vocabulary[int(rng.integers(len(vocabulary)))]) for _ in range(extra)]
    return list(dict.fromkeys(kept))


def _jittered(obj: KnownObject, noise: OracleNoise, rng: np.random.Generator) -> KnownObject:
    """The object where a model would place it: box edges moved, its outline or mask carried
    with the box, its point moved (an object known only by a point counts as ``small_side``)."""
    if not (noise.jitter or noise.edge_jitter):
        return obj
    _, _, w, h = obj.bounding_box
    sized = object_side(obj.bounding_box) is not None
    point = obj.point
    if point is not None:
        point = jittered_point(point, (w, h) if sized else (noise.small_side,) * 2, noise, rng)
    if not sized:
        return replace(obj, point=point, bounding_box=(*point, 0.0, 0.0) if point else obj.bounding_box)
    box = jittered_box(obj.bounding_box, noise, rng)
    polygon = tuple(outline_in_box(obj.polygon, obj.bounding_box, box)) if obj.polygon else None
    return replace(obj, bounding_box=box, polygon=polygon, point=point)


def _full_mask(obj: KnownObject, width: int, height: int) -> np.ndarray:
    """The object's mask over the whole image at ``width``×``height``, as the App draws it.

    An object known only by its box fills its box.
    """
    if obj.mask is not None:
        return instance_mask_on_frame(obj.mask, obj.bounding_box, (width, height))
    outline = obj.polygon if obj.polygon is not None else box_corners(obj.bounding_box)
    return polygon_on_frame(outline, (width, height))


def _polygon_1000(obj: KnownObject) -> Optional[list[list[int]]]:
    """The object's outline as a Gemini 3-style polygon: one shape, ``[x, y]`` in 0–1000.

    A mask of several parts gives the outline of its largest part, as a
    single polygon can hold no more.
    """
    if obj.polygon is not None:
        outline: Optional[Sequence[tuple[float, float]]] = obj.polygon
    elif obj.mask is not None:
        outline = outline_of_mask(obj.mask, obj.bounding_box, POLYGON_TOLERANCE)
    else:
        outline = box_corners(obj.bounding_box)
    if outline is None or len(outline) < 3:
        return None
    return polygon_1000(outline)


def _png_mask(obj: KnownObject, box_2d: list[int], sent_size: tuple[int, int]) -> Optional[str]:
    """A Gemini 2.5-style mask: a 256×256 grey PNG over the box, base64 with a data URI prefix."""
    return png_mask_over_box(_full_mask(obj, *sent_size), box_2d)
