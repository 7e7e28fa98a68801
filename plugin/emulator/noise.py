"""How the oracle gets things wrong: seeded noise shaped like a real model's mistakes.

Real vision-language models are not wrong uniformly. They miss small objects
far more often than large ones, and miss more in crowded scenes; a few pixels
off is a large share of a small box, so small objects are boxed loosely; they
list objects that are not there, different ones each time they are asked; they
mix up classes that look alike (cup and wine glass, fork and knife), not
arbitrary ones; and the confidence they report is only loosely tied to being
right (mostly 0.8–0.95, right or wrong). :class:`OracleNoise` gives each of
these a number or two, and :data:`NOISE_PROFILES` names settings that behave
like model tiers.

Sizes. An object's *side* is the square root of its relative box area,
``sqrt(w·h)`` (about 0.06 for a 32×32 px object in a 640×480 image). Its *smallness*
``1 / (1 + (side / small_side)²)`` is 1 for a dot, 0.5 at ``small_side`` and
near 0 for large objects; an object known only by a point counts as
``small_side``. An image holding ``n`` known objects is *crowded* by
``(n - 1) / (n - 1 + CROWD_OBJECTS)``: 0 for one object, 0.5 for eleven.

What each answer does, per known object (in this order):

- **miss**: left out with chance ``miss_rate + small_miss_rate · smallness +
  crowd_miss_rate · crowding`` (at most 1);
- **jitter**: each box edge moves by a normal shift of standard deviation
  ``jitter · extent + edge_jitter`` along its axis (``extent`` the box's width
  or height): relative to the object, ``jitter + edge_jitter / extent``, larger
  for small objects. A mask is stretched over the moved box and a polygon
  carried with it (a jittered shape); a point moves the same way;
- **confusion**: with chance ``confusion_rate``, an object whose class has a
  confusable class (:data:`CONFUSABLE_CLASSES` by default) among those it may
  name (the request's classes, else the dataset's) is given one of them;
  ``relabel_rate`` gives any of those classes, confusable or not;
- **confidence**: the self-reported confidence is drawn around the known one
  (:data:`~.oracle.KNOWN_CONFIDENCE` when none is recorded) as
  ``sigmoid(logit(centre) + N(0, confidence_spread))``, rounded to 0.01 (a
  confused object keeps a true object's confidence: models are sure of their
  mix-ups).

Then **hallucinations**: Poisson(``false_positive_rate · n``) boxes, each the
size of one of the image's objects scaled by up to ×/÷2 (5–30 % of each side
when it has none), anywhere in the image, labelled with one of the image's
classes (``HALLUCINATED_FROM_IMAGE`` of the time) or else one of the request's
(or the dataset's) classes; their confidence is drawn around
``false_positive_confidence``. Asked for masks, a hallucination's mask is its
box; asked for points, its centre. A classification is confused or relabelled
the same way; for a multi-label one each class may also be missed
(``miss_rate``) and hallucinated ones added.

Fresh draws, reproducible runs. The ``k``-th answer about an image (from 0)
is drawn from a generator seeded by ``(seed, image file name, k)``: asking
again gets a new answer (other misses, other hallucinations), and a run is
reproducible for a given seed when each image's requests arrive in the same
order. Concurrency reorders requests, but only requests for the same image
in flight at once can swap their answers.

The profiles (:data:`NOISE_PROFILES`; the other fields keep their defaults:
``relabel_rate`` 0, ``small_side`` 0.1, the default confusions):

======= ==== ===== ===== ====== ====== ====== ====== ===== ======
profile miss small crowd jitter edge   halluc confus conf  spread
======= ==== ===== ===== ====== ====== ====== ====== ===== ======
perfect 0    0     0     0      0      0      0      –     0
pro     0.02 0.2   0.05  0.03   0.0015 0.05   0.03   0.80  0.6
flash   0.03 0.4   0.1   0.05   0.003  0.1    0.06   0.82  0.7
lite    0.05 0.55  0.2   0.07   0.005  0.2    0.12   0.84  0.8
======= ==== ===== ===== ====== ====== ====== ====== ===== ======

(``miss``, ``small``, ``crowd``: ``miss_rate``, ``small_miss_rate``,
``crowd_miss_rate``; ``edge``: ``edge_jitter``; ``halluc``:
``false_positive_rate``; ``confus``: ``confusion_rate``; ``conf``:
``false_positive_confidence``; ``spread``: ``confidence_spread``.)

What they do to boxes, measured on the six COCO test images (135 objects;
small < 32² px of box area, large ≥ 96²; 100 answers per image, each graded
on its own at IoU ≥ 0.5 with the right class). "Crowded": the two images of
over 40 objects. "AUC": how often a right box says a higher confidence than
a wrong one.

======= ====== ===== ====== ===== ======= ========= ==== =====================
profile recall small medium large crowded precision AUC  edge error small/large
======= ====== ===== ====== ===== ======= ========= ==== =====================
perfect 1.00   1.00  1.00   1.00  1.00    1.00      –    0.007 / 0.001
pro     0.83   0.74  0.84   0.93  0.80    0.93      0.75 0.06 / 0.03
flash   0.66   0.48  0.69   0.86  0.61    0.82      0.68 0.10 / 0.04
lite    0.46   0.19  0.50   0.75  0.39    0.63      0.62 0.12 / 0.06
======= ====== ===== ====== ===== ======= ========= ==== =====================

(Edge error: the mean shift of a found box's edges, as a share of the object's side.)
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace
from typing import Mapping, Optional, Sequence

import numpy as np

from .class_names import names_class

CROWD_OBJECTS = 10
"""Other objects at which an image counts as half crowded."""
HALLUCINATED_FROM_IMAGE = 0.6
"""Share of hallucinations labelled with one of the image's own classes (models repeat what they see)."""
HALLUCINATED_SIDES = (0.05, 0.3)
"""Relative sides of a hallucinated box in an image with no known object."""
MIN_EXTENT = 0.002
"""The narrowest a moved box gets: two units of Gemini's 0–1000 grid, so it never rounds to an empty box."""

CONFUSABLE_CLASSES: tuple[tuple[str, ...], ...] = (
    ("car", "truck", "bus"), ("bicycle", "motorcycle"), ("boat", "airplane"),
    ("cat", "dog"), ("horse", "cow", "sheep"), ("zebra", "horse"), ("bear", "teddy bear"),
    ("cup", "wine glass", "bottle", "vase"), ("cup", "bowl"), ("fork", "knife", "spoon"),
    ("chair", "couch", "bench"), ("couch", "bed"), ("tv", "laptop"), ("remote", "cell phone", "mouse"),
    ("keyboard", "laptop"), ("orange", "apple"), ("donut", "cake"), ("sandwich", "hot dog", "pizza"),
    ("broccoli", "potted plant"), ("backpack", "handbag", "suitcase"), ("skis", "snowboard"),
    ("skateboard", "surfboard"), ("sports ball", "frisbee"), ("oven", "microwave", "toaster"),
    ("sink", "toilet"), ("book", "laptop"),
)
"""The default confusions: groups of COCO classes that look alike (any two of a group
are confusable). Classes of the same COCO supercategory that do not look alike
(airplane and train, cat and giraffe) are deliberately not grouped; build groups
from supercategories with :func:`confusion_groups` instead, or pass your own."""


@dataclass(frozen=True)
class OracleNoise:
    """Imperfections added to oracle answers, to make a dry run look like a real model.

    See the module docstring for how each number acts. With only the first six
    set, this is uniform noise (every object alike); :data:`NOISE_PROFILES`
    also sets the size, crowd and confusion terms.

    Attributes:
        miss_rate: chance any object is left out, whatever its size.
        jitter: standard deviation of each box edge's shift, as a fraction of the
            box's side.
        false_positive_rate: expected hallucinated objects per known object.
        relabel_rate: chance an object gets another class, any of those known.
        false_positive_confidence: the confidence of hallucinations, when
            confidences are asked for (the centre of their draw when
            ``confidence_spread`` is set).
        seed: the random seed.
        small_miss_rate: extra chance a small object is left out: in full for a
            dot, half of it at ``small_side``.
        small_side: the object side (relative) at which an object is half small.
        crowd_miss_rate: extra chance of leaving an object out of a crowded image.
        edge_jitter: standard deviation of each edge's shift as a fraction of the
            image, whatever the object's size (the localisation floor).
        confusion_rate: chance an object is given a class confusable with its own.
        confusions: the groups of confusable classes.
        confidence_spread: standard deviation of self-reported confidences, in
            logits (0: the confidence is fixed).
    """

    miss_rate: float = 0.0
    jitter: float = 0.0
    false_positive_rate: float = 0.0
    relabel_rate: float = 0.0
    false_positive_confidence: float = 0.3
    seed: int = 0
    small_miss_rate: float = 0.0
    small_side: float = 0.1
    crowd_miss_rate: float = 0.0
    edge_jitter: float = 0.0
    confusion_rate: float = 0.0
    confusions: tuple[tuple[str, ...], ...] = CONFUSABLE_CLASSES
    confidence_spread: float = 0.0


NOISE_PROFILES: dict[str, OracleNoise] = {
    "perfect": OracleNoise(),
    "pro": OracleNoise(miss_rate=0.02, small_miss_rate=0.2, crowd_miss_rate=0.05, jitter=0.03,
                       edge_jitter=0.0015, false_positive_rate=0.05, confusion_rate=0.03,
                       false_positive_confidence=0.8, confidence_spread=0.6),
    "flash": OracleNoise(miss_rate=0.03, small_miss_rate=0.4, crowd_miss_rate=0.1, jitter=0.05,
                         edge_jitter=0.003, false_positive_rate=0.1, confusion_rate=0.06,
                         false_positive_confidence=0.82, confidence_spread=0.7),
    "lite": OracleNoise(miss_rate=0.05, small_miss_rate=0.55, crowd_miss_rate=0.2, jitter=0.07,
                        edge_jitter=0.005, false_positive_rate=0.2, confusion_rate=0.12,
                        false_positive_confidence=0.84, confidence_spread=0.8),
}
"""Named noise settings, from none (``perfect``) to a model that misses small objects,
boxes them loosely and hallucinates (``lite``): ``lite`` is worse than ``flash``,
worse than ``pro``, on small objects and crowded images most."""


def noise_profile(name: str, seed: int = 0) -> OracleNoise:
    """The named profile of :data:`NOISE_PROFILES`, with a seed.

    >>> noise_profile("lite", seed=3).seed
    3

    Raises:
        ValueError: no profile has that name.
    """
    if name not in NOISE_PROFILES:
        raise ValueError(f"unknown noise profile {name!r}; choose one of {', '.join(NOISE_PROFILES)}")
    return replace(NOISE_PROFILES[name], seed=seed)


def confusion_groups(supercategories: Mapping[str, str]) -> tuple[tuple[str, ...], ...]:
    """Confusable groups from a class → supercategory map: classes sharing one are confusable.

    >>> confusion_groups({"cat": "animal", "dog": "animal", "car": "vehicle"})
    (('cat', 'dog'),)
    """
    groups: dict[str, list[str]] = {}
    for name, supercategory in supercategories.items():
        groups.setdefault(supercategory, []).append(name)
    return tuple(tuple(names) for names in groups.values() if len(names) > 1)


def answer_rng(noise: OracleNoise, image_key: str, draw: int) -> np.random.Generator:
    """The generator of the ``draw``-th answer about an image: one stream per (seed, image, draw)."""
    return np.random.default_rng([noise.seed, zlib.crc32(image_key.encode()), draw])


def object_side(bounding_box: Sequence[float]) -> Optional[float]:
    """The side of the square as large as a relative box, ``sqrt(w·h)``; ``None`` for a point."""
    _, _, w, h = bounding_box
    return math.sqrt(w * h) if w > 0 and h > 0 else None


def smallness(side: Optional[float], small_side: float) -> float:
    """How small an object is, from 1 (a dot) through 0.5 (at ``small_side``) towards 0.

    >>> smallness(0.1, 0.1), smallness(None, 0.1), round(smallness(0.3, 0.1), 2)
    (0.5, 0.5, 0.1)
    """
    if side is None:
        return 0.5
    return 1.0 / (1.0 + (side / small_side) ** 2)


def crowding(count: int) -> float:
    """How crowded an image of ``count`` objects is, from 0 (one object) towards 1.

    >>> crowding(1), crowding(11)
    (0.0, 0.5)
    """
    others = max(count - 1, 0)
    return others / (others + CROWD_OBJECTS)


def miss_chance(noise: OracleNoise, side: Optional[float], count: int) -> float:
    """The chance an object of this side, in an image of ``count`` objects, is left out."""
    chance = (noise.miss_rate + noise.small_miss_rate * smallness(side, noise.small_side)
              + noise.crowd_miss_rate * crowding(count))
    return min(chance, 1.0)


def edge_spread(noise: OracleNoise, extent: float) -> float:
    """The standard deviation of an edge's shift along an axis where the object spans ``extent``."""
    return noise.jitter * extent + noise.edge_jitter


def jittered_box(bounding_box: Sequence[float], noise: OracleNoise,
                 rng: np.random.Generator) -> tuple[float, float, float, float]:
    """The box with each edge moved (see :func:`edge_spread`), kept in the image and never collapsed."""
    x, y, w, h = bounding_box
    x0, x1 = _moved_span(x, w, edge_spread(noise, w), rng)
    y0, y1 = _moved_span(y, h, edge_spread(noise, h), rng)
    return x0, y0, x1 - x0, y1 - y0


def _moved_span(start: float, extent: float, spread: float, rng: np.random.Generator) -> tuple[float, float]:
    """Both ends of a span moved, kept in 0–1 and at least :data:`MIN_EXTENT` apart
    (a model never answers an empty box, however small the object)."""
    low, high = np.clip(np.array([start, start + extent]) + rng.normal(0.0, spread, 2), 0.0, 1.0)
    half = max(high - low, MIN_EXTENT) / 2
    centre = min(max((low + high) / 2, half), 1.0 - half)
    return float(centre - half), float(centre + half)


def jittered_point(point: tuple[float, float], extents: tuple[float, float], noise: OracleNoise,
                   rng: np.random.Generator) -> tuple[float, float]:
    """A point moved as a box edge of an object spanning ``extents`` (width, height) would be."""
    dx = rng.normal(0.0, edge_spread(noise, extents[0]))
    dy = rng.normal(0.0, edge_spread(noise, extents[1]))
    return float(np.clip(point[0] + dx, 0.0, 1.0)), float(np.clip(point[1] + dy, 0.0, 1.0))


def hallucinated_box(sizes: Sequence[tuple[float, float]],
                     rng: np.random.Generator) -> tuple[float, float, float, float]:
    """A plausible box for an object that is not there: the size of one of ``sizes``
    (``(w, h)`` of the image's objects), scaled by up to ×/÷2, anywhere in the image."""
    if sizes:
        w, h = sizes[int(rng.integers(len(sizes)))]
        scale = 2.0 ** rng.uniform(-1.0, 1.0)
        w, h = min(max(w * scale, 0.01), 1.0), min(max(h * scale, 0.01), 1.0)
    else:
        w, h = rng.uniform(*HALLUCINATED_SIDES, 2)
    x, y = rng.uniform(0.0, 1.0 - w), rng.uniform(0.0, 1.0 - h)
    return float(x), float(y), float(w), float(h)


def hallucinated_label(image_classes: Sequence[str], vocabulary: Sequence[str],
                       rng: np.random.Generator) -> str:
    """The class of a hallucination: mostly one seen in the image, else any the model may name."""
    if image_classes and (not vocabulary or rng.random() < HALLUCINATED_FROM_IMAGE):
        return str(image_classes[int(rng.integers(len(image_classes)))])
    if vocabulary:
        return str(vocabulary[int(rng.integers(len(vocabulary)))])
    return "object"


def confusable(label: str, groups: Sequence[Sequence[str]], vocabulary: Sequence[str] = ()) -> tuple[str, ...]:
    """The classes ``label`` may be confused with: its group mates, limited to ``vocabulary`` when given.

    Names match whatever their case, separators or plural (``Wine-Glasses`` is ``wine glass``);
    with a vocabulary, they are written as it spells them.

    >>> confusable("cup", CONFUSABLE_CLASSES, ["cup", "Wine Glass", "fork"])
    ('Wine Glass',)
    """
    mates = [name for group in groups if any(names_class(label, g) for g in group)
             for name in group if not names_class(label, name)]
    if vocabulary:
        mates = [v for v in vocabulary if not names_class(label, v) and any(names_class(v, m) for m in mates)]
    return tuple(dict.fromkeys(mates))


def confused_label(label: str, noise: OracleNoise, vocabulary: Sequence[str],
                   rng: np.random.Generator) -> str:
    """The class a noisy model gives: sometimes a confusable one, rarely (``relabel_rate``) any other."""
    if noise.confusion_rate and rng.random() < noise.confusion_rate:
        mates = confusable(label, noise.confusions, vocabulary)
        if mates:
            return mates[int(rng.integers(len(mates)))]
    if noise.relabel_rate and vocabulary and rng.random() < noise.relabel_rate:
        return str(vocabulary[int(rng.integers(len(vocabulary)))])
    return label


def self_confidence(centre: float, spread: float, rng: np.random.Generator) -> float:
    """A self-reported confidence drawn around ``centre`` with ``spread`` in logits, to 0.01.

    Drawn in logits so it stays inside (0, 1) and bunches under 1 as real models' do.
    """
    if not spread:
        return centre
    centre = min(max(centre, 1e-4), 1 - 1e-4)
    logit = math.log(centre / (1 - centre)) + rng.normal(0.0, spread)
    return round(min(max(1.0 / (1.0 + math.exp(-logit)), 0.01), 0.99), 2)
