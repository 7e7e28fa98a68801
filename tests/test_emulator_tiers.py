"""The emulator answers each request the way the model it names would: a lite model
finds fewer objects than a flash one, a flash one fewer than a pro one, and a pro
one takes longest."""

from __future__ import annotations

import time

import gemini_annotate
import pytest
from gemini_annotate.emulator import LabelIndex, model_tier, tiered_oracle
from gemini_annotate.emulator.noise import CONFUSABLE_CLASSES

TIER_OF = [
    ("gemini-2.5-flash-lite", "lite"),
    ("gemini-2.0-flash-lite", "lite"),
    ("gemini-3-flash-preview", "flash"),
    ("gemini-2.5-flash", "flash"),
    ("gemini-3-pro-preview", "pro"),
    ("gemini-2.5-pro", "pro"),
    ("gemini-robotics-er-1.5-preview", "flash"),
]


@pytest.mark.parametrize("model, tier", TIER_OF)
def test_a_model_name_says_its_tier(model, tier):
    assert model_tier(model) == tier


def _found(dataset, field: str) -> int:
    """True positives of ``field`` against ``ground_truth`` (IoU 0.5, same class)."""
    results = dataset.evaluate_detections(field, gt_field="ground_truth", eval_key=f"eval_{field}", iou=0.5)
    return int(results.metrics()["support"] * results.metrics()["recall"])


def test_stronger_tiers_find_more_of_the_known_objects(coco_dataset, emulator):
    scenario = tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth"), seed=3)
    emulator(scenario)
    found = {}
    for tier, model in (("lite", "gemini-2.5-flash-lite"), ("flash", "gemini-3-flash-preview"),
                        ("pro", "gemini-3-pro-preview")):
        gemini_annotate.annotate(coco_dataset, task="detect", label_field=tier, model=model)
        found[tier] = _found(coco_dataset, tier)
    assert scenario.answered == {"lite": 6, "flash": 6, "pro": 6}
    assert found["lite"] < found["flash"] < found["pro"], found


def test_a_pro_model_answers_slowest(coco_dataset, emulator):
    emulator(tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth"), latency=0.2))
    took = {}
    for tier, model in (("lite", "gemini-2.5-flash-lite"), ("pro", "gemini-3-pro-preview")):
        started = time.monotonic()
        gemini_annotate.annotate(coco_dataset.limit(1), task="detect", label_field=tier, model=model)
        took[tier] = time.monotonic() - started
    # 0.12 s and 0.6 s of answer time: the difference dwarfs the client's own time
    assert took["pro"] - took["lite"] > 0.35, took


def test_every_tier_confuses_the_look_alike_classes_it_is_given(coco_dataset):
    shapes = (("triangle", "star"),)
    scenario = tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth"), seed=2, confusions=shapes)
    assert {tier: oracle.noise.confusions for tier, oracle in scenario.tiers.items()} == dict.fromkeys(
        ("lite", "flash", "pro"), shapes)
    default = tiered_oracle(LabelIndex.from_samples(coco_dataset, "ground_truth"), seed=2)
    assert default.tiers["pro"].noise.confusions == CONFUSABLE_CLASSES
