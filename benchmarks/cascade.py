"""The cheap → strong cascade, measured on the emulator's model tiers against each model alone.

Synthetic images of shapes whose ground truth is known to the pixel: most are
easy (a few large shapes), some are hard (many small shapes, crowded), as in
real collections where a few cluttered images hold most of the small objects.
The emulator answers each request by its model's tier
(``plugin/emulator/tiers.py``: a lite model misses more small objects, boxes
them more loosely and hallucinates more; a pro model is better). Measured in one
run, on the same images:

1. **Single models**: the strong model alone (pro, one answer per image,
   with confidence), the cheap one alone (lite, consensus 3), and flash alone.
2. **Escalation rules**: one shared first pass (lite, consensus 3), then for
   each rule the cascade's second pass on what that rule escalates (the same
   first answers, so the rules are compared on equal terms). The chosen rule is
   also graded with ``escalate_majority_only`` (its standing samples keep only
   the first pass's majority labels; no requests).
3. **The cascade** with the chosen rule (``--rule``), run end to end (``annotate(...,
   escalate_to=...)``: its own first pass, escalation, second pass).

Quality: mAP@0.5 (COCO-style, 101 points; labels ranked by their
``confidence``) and F1 at IoU 0.5 against the ground truth. Cost: the tokens the
emulator reported, priced with the client's price table
(``gemini_annotate.costs.PRICES``; the emulator reports no thinking tokens, which
would make the strong model dearer still). The check: the cascade is within
``--tolerance`` (0.02) mAP of the strong model alone, at no more than
``--max-cost-share`` (60 %) of its cost; the script exits non-zero otherwise.

Raw results go to ``benchmarks/results/cascade.json`` (noise seed 0) or
``cascade_seed<N>.json``.

    python benchmarks/cascade.py            # 200 images: a few minutes on 2 quiet cores
    python benchmarks/cascade.py --seed 1   # another draw of the noise
    python benchmarks/cascade.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
import uuid
from typing import Any, Optional

from _common import use_own_database

use_own_database()  # before FiftyOne loads

import cv2  # noqa: E402
import fiftyone as fo  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import gemini_annotate  # noqa: E402
from gemini_annotate.cascade import drop_minority_labels, escalated_field  # noqa: E402
from gemini_annotate.config import AnnotateConfig  # noqa: E402
from gemini_annotate.costs import cost, price_for  # noqa: E402
from gemini_annotate.emulator import EmulatorServer, LabelIndex, tiered_oracle  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results", "cascade.json")
API_KEY = "cascade-benchmark"
SHAPES = ("rectangle", "ellipse", "triangle", "star")
SHAPE_CONFUSIONS = (("triangle", "star"), ("rectangle", "ellipse"))
"""The look-alike shapes the noise may confuse (the default confusions are COCO's)."""

LITE, FLASH, PRO = "gemini-2.5-flash-lite", "gemini-3-flash-preview", "gemini-3-pro-preview"
EASY = (3, 6, 50, 200)
"""An easy image: this many shapes (from, to) of this side in pixels (from, to)."""
HARD = (12, 25, 12, 45)
"""A hard image: many small shapes."""

RULES: dict[str, dict[str, Optional[float]]] = {
    "failures only": {},
    "confidence < 0.45": {"escalate_below": 0.45},
    "support < 0.15": {"escalate_support": 0.15},
    "support < 0.2": {"escalate_support": 0.2},
    "support < 0.25": {"escalate_support": 0.25},
    "support < 0.4": {"escalate_support": 0.4},
}
"""The escalation rules compared (each also escalates failed and partial replies)."""
CHOSEN_RULE = "support < 0.2"
MAJORITY_ONLY = " + majority only"
"""Suffix of the row of a rule whose standing samples keep only majority labels (``escalate_majority_only``)."""


# images


def make_images(directory: str, count: int, hard_share: float, seed: int) -> fo.Dataset:
    """``count`` 640×480 images of filled shapes on a smooth background, ``hard_share`` of
    them crowded with small shapes; ``ground_truth`` boxes are the shapes' exact extents."""
    rng = np.random.default_rng(seed)
    width, height = 640, 480
    samples = []
    for i in range(count):
        hard = rng.random() < hard_share
        fewest, most, smallest, largest = HARD if hard else EASY
        low = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
        image = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
        taken = np.zeros((height, width), np.uint8)
        wanted, detections = int(rng.integers(fewest, most + 1)), []
        for _ in range(30 * most):
            if len(detections) >= wanted:
                break
            label = str(rng.choice(SHAPES))
            mask = _shape(label, int(rng.integers(smallest, largest + 1)), rng, width, height)
            if (mask & cv2.dilate(taken, np.ones((7, 7), np.uint8))).any():
                continue
            taken |= mask
            image[mask.astype(bool)] = rng.integers(0, 256, 3)
            detections.append(fo.Detection.from_mask(mask.astype(bool), label=label))
        path = os.path.join(directory, f"cascade-{seed}-{i}.png")
        Image.fromarray(image).save(path)
        samples.append(fo.Sample(filepath=path, hard=hard, ground_truth=fo.Detections(detections=detections)))
    dataset = fo.Dataset(f"cascade-bench-{uuid.uuid4().hex[:8]}")
    dataset.add_samples(samples, progress=False)
    dataset.compute_metadata(progress=False)
    return dataset


def _shape(label: str, side: int, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    canvas = np.zeros((height, width), np.uint8)
    cx, cy = int(rng.integers(side, width - side)), int(rng.integers(side, height - side))
    if label == "rectangle":
        w, h = side, max(4, int(side * rng.uniform(0.5, 1.0)))
        cv2.rectangle(canvas, (cx - w // 2, cy - h // 2), (cx + w // 2, cy + h // 2), 1, -1)
    elif label == "ellipse":
        cv2.ellipse(canvas, (cx, cy), (side // 2, max(2, int(side * rng.uniform(0.25, 0.5)))),
                    float(rng.uniform(0, 180)), 0, 360, 1, -1)
    else:
        corners = 3 if label == "triangle" else 10
        angles = (np.linspace(0, 2 * np.pi, 3, endpoint=False) + rng.uniform(0, 2 * np.pi) if corners == 3
                  else np.linspace(0, 2 * np.pi, corners, endpoint=False))
        radii = np.full(corners, side / 2) if corners == 3 else np.where(np.arange(corners) % 2, side / 4, side / 2)
        points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
        cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)
    return canvas


# runs and their grades


def annotate(samples, url: str, field: str, model: str, **options) -> gemini_annotate.RunSummary:
    return gemini_annotate.annotate(samples, task="detect", classes=list(SHAPES), label_field=field, model=model,
                                    confidence=True, base_url=url, api_key=API_KEY, concurrency=16, **options)


def grade(dataset: fo.Dataset, field: str) -> dict[str, float]:
    """mAP@0.5 and precision, recall and F1 at IoU 0.5 of ``field`` against ``ground_truth``."""
    results = dataset.evaluate_detections(field, gt_field="ground_truth", eval_key=f"eval_{field}", iou=0.5,
                                          compute_mAP=True, iou_threshs=[0.5], progress=False)
    metrics = results.metrics()
    return {"mAP": float(results.mAP()), "precision": float(metrics["precision"]),
            "recall": float(metrics["recall"]), "f1": float(metrics["fscore"])}


def priced(summary: gemini_annotate.RunSummary, model: str) -> float:
    return cost(summary.input_tokens, summary.output_tokens + summary.thought_tokens, price_for(model))


def single(dataset, url: str, field: str, model: str, consensus: int) -> dict[str, Any]:
    summary = annotate(dataset, url, field, model, consensus=consensus)
    return {"model": model, "consensus": consensus, "requests": summary.requests, "cost": priced(summary, model),
            **grade(dataset, field)}


def cascade_row(dataset, field: str, summary, first_cost: float, first_requests: int) -> dict[str, Any]:
    second = summary.second_pass
    second_cost = priced(second, PRO) if second else 0.0
    escalated = dataset.exists(escalated_field(field))
    return {"requests": first_requests + (second.requests if second else 0), "cost": first_cost + second_cost,
            "first_pass_cost": first_cost, "second_pass_cost": second_cost,
            "escalated": escalated.count(), "escalated_share": escalated.count() / len(dataset),
            "escalated_hard": escalated.match(fo.ViewField("hard")).count(),
            "reasons": summary.escalation_reasons, **grade(dataset, field)}


def compare_rules(dataset, url: str, chosen: str) -> dict[str, dict[str, Any]]:
    """One shared first pass; each rule's cascade then sends on what it escalates."""
    first = annotate(dataset, url, "first", LITE, consensus=3)
    first_cost = priced(first, LITE)
    rows = {}
    for number, (name, rule) in enumerate(RULES.items()):
        field = f"rule_{number}"
        for suffix in ("", "_status", "_reason"):
            dataset.clone_sample_field("first" + suffix, field + suffix)
        # the first pass finds everything labeled and sends nothing: only the escalation runs
        summary = annotate(dataset, url, field, LITE, consensus=3, escalate_to=PRO, **rule)
        rows[name] = {"rule": rule, **cascade_row(dataset, field, summary, first_cost, first.requests)}
        if name == chosen:
            rows[name + MAJORITY_ONLY] = majority_only(dataset, field, rule, rows[name])
    return rows


def majority_only(dataset, field: str, rule: dict, row: dict[str, Any]) -> dict[str, Any]:
    """The same cascade, its standing samples keeping only the first pass's majority labels (no requests)."""
    target = field + "_majority"
    for suffix in ("", "_status", "_escalated"):
        dataset.clone_sample_field(field + suffix, target + suffix)
    config = AnnotateConfig(task="detect", model=LITE, consensus=3, escalate_to=PRO, escalate_majority_only=True,
                            label_field=target, run_key="first", **rule)
    dropped = drop_minority_labels(dataset, config)
    return {**row, "rule": {**rule, "escalate_majority_only": True}, "minority_dropped": dropped,
            **grade(dataset, target)}


# the run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200, help="synthetic images")
    parser.add_argument("--hard-share", type=float, default=0.25, help="share of crowded images of small shapes")
    parser.add_argument("--seed", type=int, default=0, help="the noise seed")
    parser.add_argument("--tolerance", type=float, default=0.02, help="mAP the cascade may lose to the strong model")
    parser.add_argument("--max-cost-share", type=float, default=0.6, help="its cost, as a share of the strong model's")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--rule", default=CHOSEN_RULE, choices=list(RULES), help="the cascade's rule, end to end")
    parser.add_argument("--out", default=None,
                        help="where the raw results go (default: results/cascade.json, cascade_seed<N>.json)")
    args = parser.parse_args()
    logging.getLogger("fiftyone").setLevel(logging.WARNING)
    if args.quick:
        args.images = 30
    if args.out is None:
        args.out = RESULTS if args.seed == 0 else RESULTS.replace(".json", f"_seed{args.seed}.json")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        dataset = make_images(directory, args.images, args.hard_share, seed=1)
        index = LabelIndex.from_samples(dataset, "ground_truth")
        try:
            with EmulatorServer(tiered_oracle(index, seed=args.seed, confusions=SHAPE_CONFUSIONS)) as server:
                singles = {"pro alone": single(dataset, server.url, "pro", PRO, 1),
                           "flash alone": single(dataset, server.url, "flash", FLASH, 1),
                           "lite ×3 alone": single(dataset, server.url, "lite", LITE, 3)}
                rules = compare_rules(dataset, server.url, args.rule)
                summary = annotate(dataset, server.url, "cascade", LITE, consensus=3, escalate_to=PRO,
                                   **RULES[args.rule])
                chosen = cascade_row(dataset, "cascade", summary, priced(summary.first_pass, LITE),
                                     summary.first_pass.requests)
                described = summary.describe()
        finally:
            objects, hard = dataset.count("ground_truth.detections"), dataset.match(fo.ViewField("hard")).count()
            dataset.delete()
    return report(args, singles, rules, chosen, described, objects, hard, time.perf_counter() - started)


def report(args, singles: dict, rules: dict, chosen: dict, described: str, objects: int, hard: int,
           elapsed: float) -> int:
    strong = singles["pro alone"]
    print(f"# cascade lite ×3 → pro on the emulator's tiers: {args.images} synthetic images ({hard} crowded with "
          f"small shapes), {objects} objects, seed {args.seed} ({elapsed:.0f} s)")
    print("\n## each model alone")
    print("| run | requests | cost | share of pro's cost | mAP@0.5 | precision | recall | F1 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, row in singles.items():
        print(f"| {name} | {row['requests']} | ${row['cost']:.4f} | {row['cost'] / strong['cost']:.0%} | "
              f"{row['mAP']:.3f} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} |")
    print("\n## escalation rules, on one shared first pass (lite, consensus 3)")
    print("| rule | escalated (crowded) | requests | cost | share of pro's cost | mAP@0.5 | Δ mAP vs pro | F1 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, row in rules.items():
        print(f"| {name} | {row['escalated']} ({row['escalated_hard']}) | {row['requests']} | ${row['cost']:.4f} | "
              f"{row['cost'] / strong['cost']:.0%} | {row['mAP']:.3f} | {row['mAP'] - strong['mAP']:+.3f} | "
              f"{row['f1']:.3f} |")
    share = chosen["cost"] / strong["cost"]
    loss = strong["mAP"] - chosen["mAP"]
    print(f"\n## the cascade end to end, rule '{args.rule}'\n{described}")
    print(f"\nmAP@0.5 {chosen['mAP']:.3f} vs pro alone {strong['mAP']:.3f} (loss {loss:+.3f}, allowed "
          f"{args.tolerance}); F1 {chosen['f1']:.3f} vs {strong['f1']:.3f}; cost ${chosen['cost']:.4f} = "
          f"{share:.0%} of pro's ${strong['cost']:.4f} (allowed {args.max_cost_share:.0%}); "
          f"{chosen['escalated']} of {args.images} images escalated ({chosen['escalated_hard']} of the {hard} crowded)")
    held = loss <= args.tolerance and share <= args.max_cost_share
    print("PASS" if held else "FAIL")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                   "load_average": os.getloadavg(), "arguments": vars(args), "singles": singles, "rules": rules,
                   "chosen_rule": args.rule,
                   "cascade": chosen, "held": held}, f, indent=2, default=str)
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
