"""Compare setups on the emulator's model tiers: quality per cost, the Pareto front, the recommendation.

Synthetic images of shapes whose ground truth is known to the pixel (the
fidelity harness's: 4–7 shapes of 10–260 px each, many of them small), answered
by the emulator's model tiers (``plugin/emulator/tiers.py``): a ``...-lite``
model gets the ``lite`` noise profile, ``...-pro...`` the ``pro`` one, anything
else ``flash``; their confusions are the look-alike shapes (rectangle and rotated
rectangle, triangle and star), as in ``benchmarks/trust.py``. A flash run pre-annotates the images and a careful person
(simulated from the ground truth: keep what matches a true object, reject the
rest, draw what was missed) reviews some of them. ``gemini_annotate.compare`` then
runs each candidate on the reviewed samples and scores it against the labels
the person kept:

- lite, flash and pro models;
- flash asked three times per image (``consensus=3``);
- flash with negative hints drafted from the person's rejections
  (``review.hints.draft_negative_hints``): a prompt candidate. The emulator
  answers from its noise profile, not from the prompt, so here it can only show
  what the hints cost; against Gemini the same comparison shows whether they help.

The check, independent of compare's own reference: each candidate's labels are
scored against the images' true shapes (the ``ground_truth`` field, not the
reviewed labels), and the cheapest candidate within the tolerance of the best
by that score must be the one compare recommends. The script exits non-zero
otherwise. It prints the report, draws the Pareto plot to
``benchmarks/results/compare.png`` (matplotlib; plotly's PNG export needs
kaleido, which is not installed) and writes the raw figures to
``benchmarks/results/compare.json``.

    python benchmarks/compare.py              # a few minutes on 2 cores
    python benchmarks/compare.py --quick      # a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import os
import platform
import sys
import tempfile
import time

from _common import use_own_database

use_own_database()  # before FiftyOne loads

import gemini_annotate  # noqa: E402
from gemini_annotate.emulator import MODEL_TIERS, ByModel, EmulatorServer, LabelIndex, Oracle  # noqa: E402
from gemini_annotate.emulator.noise import noise_profile  # noqa: E402
from gemini_annotate.pareto import recommend  # noqa: E402
from gemini_annotate.review.hints import draft_negative_hints  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")
API_KEY = "compare-benchmark"
LITE, FLASH, PRO = "gemini-2.5-flash-lite", "gemini-3-flash-preview", "gemini-3-pro-preview"


def _load(name: str):
    """A sibling benchmark script as a module (the fidelity harness's images, trust's simulated reviewer)."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", os.path.join(REPO, "benchmarks", f"{name}.py"))
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SWEEP = (0.0, 0.05, 0.1, 0.15, 0.2)
"""Other tolerances at which both recommendations are shown (for information; only ``--tolerance`` is checked)."""
TRUST = _load("trust")
HARNESS = TRUST.HARNESS


def shape_tiers(index: LabelIndex, *, seed: int, latency: float) -> ByModel:
    """The emulator's tiers (as :func:`~gemini_annotate.emulator.tiered_oracle` builds them), with the
    look-alike shapes as the classes their noise confuses (its default confusions are COCO's)."""
    return ByModel(
        {name: Oracle(index, noise=dataclasses.replace(noise_profile(tier.noise, seed=seed),
                                                       confusions=TRUST.SHAPE_CONFUSIONS))
         for name, tier in MODEL_TIERS.items()},
        delays={name: latency * tier.relative_latency for name, tier in MODEL_TIERS.items()},
    )


def truth_scores(dataset, report) -> dict[str, float]:
    """Each finished candidate's quality against the true shapes, on the reference samples
    (the report's metric, computed here with FiftyOne, not by compare)."""
    view = dataset.match_tags("reference")
    scores = {}
    for c in report.candidates:
        if c.status != "done":
            continue
        ranked = report.metric == "mAP"
        results = view.evaluate_detections(c.label_field, gt_field="ground_truth", eval_key=f"truth_{c.name}",
                                           iou=report.iou, compute_mAP=ranked,
                                           iou_threshs=[report.iou] if ranked else None, progress=False)
        scores[c.name] = float(results.mAP()) if ranked else float(results.metrics()["fscore"])
    return scores


def cheapest_within(scores: dict[str, float], costs: dict[str, float], tolerance: float) -> str:
    """The cheapest candidate whose score is within ``tolerance`` of the best (ties: better score)."""
    best = max(scores.values())
    eligible = [name for name, score in scores.items() if score >= best - tolerance - 1e-12]
    return min(eligible, key=lambda name: (costs[name], -scores[name], name))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=60, help="synthetic images")
    parser.add_argument("--reviewed", type=int, default=40, help="of which a person reviewed this many")
    parser.add_argument("--tolerance", type=float, default=0.02, help="quality given up for a lower cost")
    parser.add_argument("--seed", type=int, default=0, help="the emulator's noise seed")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    logging.getLogger("fiftyone").setLevel(logging.WARNING)
    if args.quick:
        args.images, args.reviewed = 20, 12

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        dataset = HARNESS.make_synthetic(directory, args.images, seed=1)
        try:
            index = LabelIndex.from_samples(dataset, "ground_truth")
            options = dict(classes=list(HARNESS.SHAPES), api_key=API_KEY, concurrency=16)
            with EmulatorServer(shape_tiers(index, seed=args.seed, latency=0.05)) as server:
                gemini_annotate.annotate(dataset, label_field="gemini", model=FLASH, base_url=server.url, **options)
                reviewed = dataset.take(args.reviewed, seed=0)
                reviewed.tag_samples("reference")
                TRUST.review_like_a_person(reviewed, "gemini")
                hints = [h.text for h in draft_negative_hints(dataset, "gemini", min_share=0.1)]
                candidates = [
                    {"name": "lite", "model": LITE},
                    {"name": "flash", "model": FLASH},
                    {"name": "pro", "model": PRO},
                    {"name": "flash_consensus_3", "model": FLASH, "consensus": 3},
                    {"name": "flash_hints", "model": FLASH, "hints": hints},
                ]
                report = gemini_annotate.compare(dataset, candidates, reference_field="gemini",
                                                 tolerance=args.tolerance, base_url=server.url, **options)
            truth = truth_scores(dataset, report)
            objects = dataset.count("ground_truth.detections")
        finally:
            dataset.delete()
    elapsed = time.perf_counter() - started
    return publish(args, report, truth, hints, objects, elapsed)


def publish(args, report, truth: dict[str, float], hints: list[str], objects: int, elapsed: float) -> int:
    costs = {c.name: c.cost for c in report.candidates if c.name in truth}
    expected = cheapest_within(truth, costs, args.tolerance) if truth else None
    chosen = report.recommendation.name if report.recommendation else None
    print(f"# compare on the emulator's model tiers: {args.images} synthetic images ({objects} shapes), "
          f"{args.reviewed} reviewed, noise seed {args.seed} ({elapsed:.0f} s, measured under load)\n")
    print(report.describe())
    print(f"\nnegative hints drafted from the reviews ({len(hints)}):")
    for hint in hints:
        print(f"- {hint}")
    print(f"\n{report.metric} against the true shapes (independent of the reviewed reference):")
    for name, score in truth.items():
        c = report.candidate(name)
        print(f"- {name}: {score:.3f} (vs reviewed: {c.quality:.3f}), ${c.cost:.4f}")
    print(f"\ncheapest within {args.tolerance} of the best by the truth: {expected}; compare recommends: {chosen}")
    sweep = []
    for tolerance in SWEEP:
        by_report = recommend([c.point for c in report.candidates], tolerance)
        sweep.append({"tolerance": tolerance, "by_truth": cheapest_within(truth, costs, tolerance) if truth else None,
                      "compare": by_report.name if by_report else None})
    print("at other tolerances (information only): " + "; ".join(
        f"{row['tolerance']}: truth {row['by_truth']}, compare {row['compare']}" for row in sweep))
    os.makedirs(RESULTS, exist_ok=True)
    png = report.save_png(os.path.join(RESULTS, "compare.png"))
    print(f"plot: {os.path.relpath(png, REPO)} (matplotlib; plotly's PNG export needs kaleido)")
    with open(os.path.join(RESULTS, "compare.json"), "w") as f:
        json.dump({"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                   "measured_under_load": True, "arguments": vars(args), "elapsed_seconds": elapsed,
                   "hints": hints, "truth_scores": truth, "expected": expected, "sweep": sweep,
                   "report": report.to_dict()},
                  f, indent=2, default=str)
    ok = chosen is not None and chosen == expected
    print("OK: the recommendation is the cheapest within tolerance by the ground truth" if ok else
          "MISMATCH: the recommendation is not the cheapest within tolerance by the ground truth")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
