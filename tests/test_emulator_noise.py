"""The oracle's noise is wrong the way real models are: by size, by crowding, afresh
on every answer yet reproducibly, with look-alike confusions and loose confidences.

Statistical, but deterministic: every draw is seeded. Answers are read on the
six COCO test images (boxes, masks) unless a behaviour needs a made-up image.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

from gemini_annotate.emulator import (
    CONFUSABLE_CLASSES,
    NOISE_PROFILES,
    LabelIndex,
    Oracle,
    OracleNoise,
    confusion_groups,
    noise_profile,
)
from gemini_annotate.emulator.geometry import box_2d_from_relative
from gemini_annotate.emulator.noise import confusable, miss_chance
from gemini_annotate.emulator.oracle import AnswerForm, KnownImage, KnownObject, oracle_answer
from gemini_annotate.emulator.wire import EmulatedImage, EmulatorRequest

BOXES = AnswerForm("boxes", confidence=True)
BOX_SCHEMA = {"type": "object", "properties": {"boxes": {"type": "array", "items": {
    "type": "object", "properties": {"box_2d": {"type": "array", "items": {"type": "integer"}},
                                     "label": {"type": "string"}, "confidence": {"type": "number"}}}}}}
SMALL_SIDE, LARGE_SIDE = 0.05, 0.2
"""Object sides (``sqrt(w·h)``, relative) below which an object counts as small, above which large."""


@pytest.fixture(scope="module")
def coco_index(coco_dataset_session) -> LabelIndex:
    return LabelIndex.from_samples(coco_dataset_session, "ground_truth")


def _answer(index: LabelIndex, known: KnownImage, noise: OracleNoise, draw: int = 0,
            form: AnswerForm = BOXES) -> list[dict]:
    text = oracle_answer(known, form, (known.width, known.height), noise, draw=draw,
                         dataset_classes=index.classes)
    return json.loads(text)["boxes" if form.wrapper == "boxes" else form.wrapper]


def _answers(index: LabelIndex, noise: OracleNoise, draws: int, form: AnswerForm = BOXES):
    """``(known image, answer items)`` for ``draws`` answers about each image."""
    return [(known, _answer(index, known, noise, draw, form)) for known in index.images for draw in range(draws)]


def _relative(box_2d: list[int]) -> tuple[float, float, float, float]:
    ymin, xmin, ymax, xmax = (v / 1000 for v in box_2d)
    return xmin, ymin, xmax - xmin, ymax - ymin


def _size(obj: KnownObject) -> str:
    side = math.sqrt(obj.bounding_box[2] * obj.bounding_box[3])
    return "small" if side < SMALL_SIDE else "large" if side > LARGE_SIDE else "medium"


def _exact(obj: KnownObject) -> tuple[int, ...]:
    return tuple(box_2d_from_relative(obj.bounding_box))


def _iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - ix * iy
    return ix * iy / union if union else 0.0


def _request(known: KnownImage) -> EmulatorRequest:
    with open(known.key, "rb") as f:
        data = f.read()
    return EmulatorRequest(api="generate_content", model="gemini-3-flash-preview", prompt="Detect.",
                           images=(EmulatedImage("image/jpeg", data=data),), schema=BOX_SCHEMA)


@pytest.mark.parametrize("noise, side, count, chance", [
    (OracleNoise(miss_rate=0.1, small_miss_rate=0.4), 0.1, 1, 0.3),      # half small at small_side
    (OracleNoise(miss_rate=0.1, small_miss_rate=0.4), 0.3, 1, 0.14),     # large: little extra
    (OracleNoise(miss_rate=0.1, small_miss_rate=0.4), 0.001, 1, 0.5),    # a dot: all of it
    (OracleNoise(miss_rate=0.1, small_miss_rate=0.4), None, 1, 0.3),     # a point: counted as small_side
    (OracleNoise(miss_rate=0.1, crowd_miss_rate=0.2), 0.3, 11, 0.2),     # half crowded
    (OracleNoise(miss_rate=0.9, small_miss_rate=0.4), 0.01, 50, 1.0),    # never above 1
    (OracleNoise(miss_rate=0.25), 0.01, 50, 0.25),                       # uniform noise ignores size
])
def test_the_chance_of_a_miss_falls_with_size_and_rises_with_crowding(noise, side, count, chance):
    assert miss_chance(noise, side, count) == pytest.approx(chance, abs=0.005)


def test_small_objects_are_missed_more_often_than_large_ones(coco_index):
    missed: dict[str, list[bool]] = {"small": [], "medium": [], "large": []}
    for known, items in _answers(coco_index, OracleNoise(small_miss_rate=0.8, seed=1), draws=20):
        answered = {tuple(item["box_2d"]) for item in items}
        for obj in known.objects:
            missed[_size(obj)].append(_exact(obj) not in answered)

    small, medium, large = (np.mean(missed[size]) for size in ("small", "medium", "large"))
    assert small > 0.55 and large < 0.15 and small > medium > large


def test_boxes_are_moved_relatively_more_for_small_objects(coco_index):
    shifts: dict[str, list[float]] = {"small": [], "medium": [], "large": []}
    for known, items in _answers(coco_index, OracleNoise(jitter=0.02, edge_jitter=0.004, seed=2), draws=10):
        assert len(items) == len(known.objects)  # jitter alone keeps every object, in order
        for obj, item in zip(known.objects, items):
            x, y, w, h = obj.bounding_box
            ax, ay, aw, ah = _relative(item["box_2d"])
            edges = [abs(ax - x) / w, abs(ax + aw - x - w) / w, abs(ay - y) / h, abs(ay + ah - y - h) / h]
            shifts[_size(obj)].append(float(np.mean(edges)))

    small, medium, large = (np.mean(shifts[size]) for size in ("small", "medium", "large"))
    assert small > medium > large and small > 3 * large


def test_asking_again_gets_other_mistakes_and_other_hallucinations(coco_index):
    known = max(coco_index.images, key=lambda k: len(k.objects))
    truth = {_exact(obj) for obj in known.objects}
    oracle = Oracle(coco_index, noise=OracleNoise(false_positive_rate=0.3, seed=4))

    first, second = ({tuple(i["box_2d"]) for i in json.loads(oracle.respond(_request(known)).text)["boxes"]}
                     for _ in range(2))

    assert first - truth and second - truth and first - truth != second - truth
    flash = Oracle(coco_index, noise=noise_profile("flash", seed=4))
    assert flash.respond(_request(known)).text != flash.respond(_request(known)).text


def test_the_same_seed_and_order_give_the_same_run(coco_index):
    requests = [_request(known) for known in coco_index.images for _ in range(2)]

    def run(seed: int) -> list[str]:
        oracle = Oracle(coco_index, noise=noise_profile("lite", seed=seed))
        return [oracle.respond(request).text for request in requests]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_confusions_go_only_to_look_alike_classes(coco_index):
    flipped = 0
    for known, items in _answers(coco_index, OracleNoise(confusion_rate=1.0, seed=5), draws=3):
        for obj, item in zip(known.objects, items):
            mates = confusable(obj.label, CONFUSABLE_CLASSES, coco_index.classes)
            assert item["label"] in mates if mates else item["label"] == obj.label
            flipped += item["label"] != obj.label
    assert flipped > 50


def test_confusions_can_come_from_shared_supercategories(coco_index):
    groups = confusion_groups({"cup": "drinkware", "wine glass": "drinkware", "fork": "cutlery",
                               "person": "person"})
    noise = OracleNoise(confusion_rate=1.0, confusions=groups, seed=5)
    swap = {"cup": "wine glass", "wine glass": "cup"}
    for known, items in _answers(coco_index, noise, draws=1):
        assert [i["label"] for i in items] == [swap.get(o.label, o.label) for o in known.objects]


def test_hallucinations_are_less_sure_on_average_but_overlap_the_true_objects(coco_index):
    noise = OracleNoise(false_positive_rate=1.0, false_positive_confidence=0.82, confidence_spread=0.7, seed=6)
    true, hallucinated = [], []
    for known, items in _answers(coco_index, noise, draws=5):
        truth = {_exact(obj) for obj in known.objects}
        for item in items:
            (true if tuple(item["box_2d"]) in truth else hallucinated).append(item["confidence"])
    t, h = np.array(true)[:, None], np.array(hallucinated)[None, :]
    ranked_right = np.mean(t > h) + 0.5 * np.mean(t == h)  # the ROC AUC of confidence as a detector of truth

    assert np.mean(true) > np.mean(hallucinated) + 0.03
    assert 0.6 < ranked_right < 0.85  # loosely tied: no threshold separates them
    assert 0.75 < np.median(true + hallucinated) < 0.95 and max(true + hallucinated) < 1


def test_a_hallucinated_object_is_outlined_by_its_box(coco_index):
    form = AnswerForm("polygon")
    for known, items in _answers(coco_index, OracleNoise(false_positive_rate=0.5, seed=8), draws=1, form=form):
        truth = {_exact(obj) for obj in known.objects}
        for item in items:
            if tuple(item["box_2d"]) not in truth:
                ymin, xmin, ymax, xmax = item["box_2d"]
                assert item["mask"] == [[xmin, ymin], [xmax, ymin], [xmax, ymax], [xmin, ymax]]


def test_a_moved_box_carries_its_outline_with_it(coco_index):
    form = AnswerForm("polygon")
    for known, items in _answers(coco_index, OracleNoise(jitter=0.1, seed=9), draws=1, form=form):
        for item in items:
            ymin, xmin, ymax, xmax = item["box_2d"]
            xs, ys = [p[0] for p in item["mask"]], [p[1] for p in item["mask"]]
            assert (xmin - 1 <= min(xs) and max(xs) <= xmax + 1 and ymin - 1 <= min(ys) and max(ys) <= ymax + 1)
            assert len(item["mask"]) > 4 or item["mask"] != [[xmin, ymin], [xmax, ymin], [xmax, ymax],
                                                               [xmin, ymax]]


def test_points_are_moved_missed_and_hallucinated():
    spots = [(0.05 + 0.045 * i, 0.1 + 0.04 * i) for i in range(20)]
    known = KnownImage("points", 640, 480, objects=tuple(KnownObject("person", (x, y, 0.0, 0.0), point=(x, y))
                                                         for x, y in spots))
    noise = OracleNoise(miss_rate=0.2, edge_jitter=0.005, false_positive_rate=0.2, seed=10)
    found, moved, extra = [], [], []
    for draw in range(30):
        text = oracle_answer(known, AnswerForm("points", wrapper="points"), (640, 480), noise, draw=draw)
        points = [tuple(p["point"]) for p in json.loads(text)["points"]]
        near = [min(points, key=lambda p: math.dist(p, (y * 1000, x * 1000))) for x, y in spots]
        hits = [p for p, (x, y) in zip(near, spots) if math.dist(p, (y * 1000, x * 1000)) < 20]
        found.append(len(hits) / len(spots))
        moved += [p != (round(y * 1000), round(x * 1000)) for p, (x, y) in zip(near, spots)
                  if math.dist(p, (y * 1000, x * 1000)) < 20]
        extra.append(len(points) - len(hits))

    assert 0.7 < np.mean(found) < 0.9 and np.mean(moved) > 0.8 and np.mean(extra) > 2


@pytest.mark.parametrize("classes, confusion_rate, allowed, flipped", [
    (("cat", "dog", "car"), 0.3, {"cat", "dog"}, 0.3),      # to the look-alike only
    (("cat", "car", "person"), 0.3, {"cat"}, 0.0),          # no look-alike allowed: never flipped
    (("cat", "dog", "car"), 0.0, {"cat"}, 0.0),
])
def test_a_confused_classification_flips_only_to_a_look_alike(classes, confusion_rate, allowed, flipped):
    known = KnownImage("pet", 640, 480, classification="cat")
    noise = OracleNoise(confusion_rate=confusion_rate, seed=11)
    form = AnswerForm("classify", wrapper=None, classes=classes, text_key="label")

    labels = [json.loads(oracle_answer(known, form, (640, 480), noise, draw=d))["label"] for d in range(300)]

    assert set(labels) <= allowed
    assert np.mean([label != "cat" for label in labels]) == pytest.approx(flipped, abs=0.06)


@dataclass
class Scores:
    """One answer per draw graded against the known boxes at IoU ≥ 0.5, same class."""

    recall: dict[str, float]
    precision: float


def _scores(index: LabelIndex, noise: OracleNoise, draws: int = 8) -> Scores:
    found: dict[str, list[bool]] = {"all": [], "small": [], "large": [], "crowded": []}
    right = said = 0
    for known, items in _answers(index, noise, draws):
        answered = [(_relative(i["box_2d"]), i["label"]) for i in items]
        taken: set[int] = set()
        for obj in known.objects:
            best = max((j for j, (box, label) in enumerate(answered) if j not in taken and label == obj.label),
                       key=lambda j: _iou(obj.bounding_box, answered[j][0]), default=None)
            hit = best is not None and _iou(obj.bounding_box, answered[best][0]) >= 0.5
            taken |= {best} if hit else set()
            for group in ("all", _size(obj), "crowded" if len(known.objects) > 30 else None):
                found.get(group, []).append(hit)
        right, said = right + len(taken), said + len(answered)
    return Scores({group: float(np.mean(hits)) for group, hits in found.items()}, right / said)


@pytest.fixture(scope="module")
def profile_scores(coco_index) -> dict[str, Scores]:
    return {name: _scores(coco_index, noise_profile(name, seed=12)) for name in NOISE_PROFILES}


@pytest.mark.parametrize("measure", [
    lambda s: s.recall["all"], lambda s: s.recall["small"], lambda s: s.recall["large"],
    lambda s: s.recall["crowded"], lambda s: s.precision,
], ids=["recall", "recall on small objects", "recall on large objects", "recall in crowded images",
        "precision"])
def test_lite_is_worse_than_flash_is_worse_than_pro(profile_scores, measure):
    perfect, pro, flash, lite = (measure(profile_scores[name]) for name in ("perfect", "pro", "flash", "lite"))
    assert perfect == 1.0 and perfect > pro > flash > lite


def test_lite_loses_small_objects_most(profile_scores):
    lite = profile_scores["lite"].recall
    assert lite["small"] < 0.5 * lite["large"]


def test_an_unknown_profile_name_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="perfect, pro, flash, lite"):
        noise_profile("ultra")


def test_the_same_image_gets_the_same_noisy_answers_wherever_it_lives(coco_index, tmp_path):
    """Answers are drawn by the image's file name, not its path: a checkout elsewhere (CI's) sees
    the same noisy answers as this one."""
    known = coco_index.images[0]
    moved = KnownImage(key=str(tmp_path / "elsewhere" / known.key.split("/")[-1]), width=known.width,
                       height=known.height, objects=known.objects, fingerprint=known.fingerprint)
    noise = noise_profile("lite", seed=3)

    assert _answer(coco_index, moved, noise, draw=2) == _answer(coco_index, known, noise, draw=2)
