"""Trust, measured on the emulator's model-like noise: consensus, calibration, auto-accept.

Synthetic images of shapes whose ground truth is known to the pixel (the
fidelity harness's), answered by the emulator with a noise profile that
behaves like a real model (``plugin/emulator/noise.py``: misses small objects,
boxes them loosely, hallucinates afresh in every answer, confuses look-alike
classes, reports a confidence loosely tied to being right). Measured in one run:

1. **Ranking.** AP@0.5 of the same fused detections of a consensus run (N = 3, 5)
   ranked by their consensus confidence, by Gemini's self-reported confidence,
   and not ranked at all; and of a single answer (N = 1) ranked by its
   self-reported confidence; with the requests each cost.
2. **Auto-accept.** For each seed: a consensus-3 run, people review a random half
   (simulated from the ground truth as a careful person would: keep what matches a
   true object, reject the rest, draw what was missed), ``calibrate`` fits the
   reviewed half, and ``auto_accept`` at target precision 0.95 (confidence level
   0.95) marks labels of the other half. Their precision is then measured against
   the ground truth: the promise holds when it is at least 0.95 for at least 95 % of
   seeds. Also the share of the other half's labels that needed no human look.
3. **Calibration.** The expected calibration error of the held-out half's
   confidences against the ground truth, before and after calibration.

Raw results go to ``benchmarks/results/trust.json``; the script exits non-zero
when a promise is missed.

    python benchmarks/trust.py              # about 10 minutes on 2 cores
    python benchmarks/trust.py --quick      # a smoke run
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
from typing import Any, Sequence

from _common import use_own_database

use_own_database()  # before FiftyOne loads

import fiftyone as fo  # noqa: E402
import fiftyone.utils.iou as foui  # noqa: E402
import numpy as np  # noqa: E402

import gemini_annotate  # noqa: E402
from gemini_annotate import review  # noqa: E402
from gemini_annotate.calibration import expected_calibration_error, reliability_bins  # noqa: E402
from gemini_annotate.emulator import EmulatorServer, LabelIndex, Oracle  # noqa: E402
from gemini_annotate.emulator.noise import noise_profile  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results", "trust.json")
API_KEY = "trust-benchmark"
SHAPE_CONFUSIONS = (("rectangle", "rotated rectangle"), ("triangle", "star"))
"""The look-alike shapes the noise may confuse (the default confusions are COCO's)."""


def _load_fidelity_harness():
    """``benchmarks/fidelity.py``, for its synthetic images with pixel-exact ground truth."""
    spec = importlib.util.spec_from_file_location("fidelity_harness", os.path.join(REPO, "benchmarks", "fidelity.py"))
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HARNESS = _load_fidelity_harness()


# ground truth, as a careful person sees it


def match_truth(proposals: Sequence[fo.Detection], truth: Sequence[fo.Detection], iou: float = 0.5) -> list[bool]:
    """Which proposals match a true object of their class (IoU ≥ ``iou``), each object once, best first."""
    if not proposals or not truth:
        return [False] * len(proposals)
    ious = np.asarray(foui.compute_ious(proposals, truth, classwise=True))
    right, taken = [False] * len(proposals), set()
    for i, j in sorted(np.ndindex(ious.shape), key=lambda ij: -ious[ij]):
        if ious[i, j] < iou:
            break
        if not right[i] and j not in taken:
            right[i], taken = True, taken | {j}
    return right


def review_like_a_person(samples: fo.core.collections.SampleCollection, field: str) -> None:
    """Accepts the proposals that match a true object, rejects the others, draws what was
    missed, and marks the samples reviewed (what a careful reviewer would do)."""
    review.keep_proposals(samples, field)
    updates = {}
    for sample_id, value, truth in zip(*samples.values(["id", field, "ground_truth"])):
        proposals = list(value.detections) if value else []
        true_objects = list(truth.detections) if truth else []
        right = match_truth(proposals, true_objects)
        for proposal, ok in zip(proposals, right):
            proposal.review = review.ACCEPTED if ok else review.REJECTED
        found = match_truth(true_objects, [p for p, ok in zip(proposals, right) if ok])
        drawn = [fo.Detection(label=t.label, bounding_box=t.bounding_box, review=review.ADDED)
                 for t, seen in zip(true_objects, found) if not seen]
        updates[sample_id] = fo.Detections(detections=proposals + drawn)
    samples._dataset.set_values(field, updates, key_field="id")
    samples._dataset.set_values(review.reviewed_field(field), dict.fromkeys(samples.values("id"), True),
                                key_field="id")


def correctness(samples: fo.core.collections.SampleCollection, field: str) -> list[tuple[Any, bool]]:
    """``(label, right)`` of every proposal of ``field`` in ``samples``, judged against the ground truth."""
    judged = []
    for value, truth in zip(*samples.values([field, "ground_truth"])):
        proposals = list(value.detections) if value else []
        judged += zip(proposals, match_truth(proposals, list(truth.detections) if truth else []))
    return judged


# runs


def annotate(dataset: fo.Dataset, url: str, field: str, consensus: int) -> gemini_annotate.RunSummary:
    return gemini_annotate.annotate(
        dataset, task="detect", classes=list(HARNESS.SHAPES), label_field=field,
        confidence=True, consensus=consensus, base_url=url, api_key=API_KEY, concurrency=32,
        if_labeled="overwrite")


def ranked_ap(dataset: fo.Dataset, field: str, rank_by: str) -> float:
    """AP@0.5 (COCO-style, 101 points) of ``field``'s detections ranked by an attribute
    (``confidence``, ``self_confidence``; a label without it ranks last)."""
    ranked = f"{field}_by_{rank_by}"
    if dataset.has_field(ranked):
        dataset.delete_sample_field(ranked)
    dataset.clone_sample_field(field, ranked)
    scores = [[float(getattr(d, rank_by, None) or 0.0) for d in dets]
              for dets in dataset.values(f"{field}.detections")]
    dataset.set_values(f"{ranked}.detections.confidence", scores)
    results = dataset.evaluate_detections(ranked, gt_field="ground_truth", eval_key=f"eval_{ranked}", iou=0.5,
                                          compute_mAP=True, iou_threshs=[0.5], progress=False)
    return float(results.mAP())


def unranked_ap(dataset: fo.Dataset, field: str) -> float:
    """The AP of detections that carry no ranking: their precision-recall curve is one point,
    so its interpolated area is precision × recall (FiftyOne would rank ties by list order,
    which for fused labels is already their confidence order)."""
    results = dataset.evaluate_detections(field, gt_field="ground_truth", eval_key=f"eval_{field}_unranked",
                                          iou=0.5, progress=False)
    metrics = results.metrics()
    return float(metrics["precision"] * metrics["recall"])


def ranking(dataset: fo.Dataset, url: str, answers: Sequence[int]) -> dict[str, Any]:
    rows = {}
    for n in answers:
        field = f"consensus_{n}"
        summary = annotate(dataset, url, field, n)
        row = {"requests": summary.requests, "requests_per_image": summary.requests / len(dataset),
               "labels": summary.labels, "ap_by_self_confidence": ranked_ap(dataset, field, "self_confidence"),
               "ap_unranked": unranked_ap(dataset, field)}
        if n > 1:
            row["ap_by_consensus_confidence"] = ranked_ap(dataset, field, "confidence")
        rows[n] = row
    return rows


def auto_accept_trial(dataset: fo.Dataset, url: str, seed: int, target: float) -> dict[str, Any]:
    """One seed: run, review half, calibrate, auto-accept the other half, grade it against the truth."""
    field = "trust"
    annotate(dataset, url, field, 3)
    ids = np.random.default_rng(seed).permutation(dataset.values("id"))
    reviewed, held_out = dataset.select(list(ids[: len(ids) // 2])), dataset.select(list(ids[len(ids) // 2:]))
    review_like_a_person(reviewed, field)
    calibration = review.calibrate(reviewed, field)
    before = correctness(held_out, field)
    raw = [(label.confidence, right) for label, right in before if label.confidence is not None]
    # both halves: auto-accept's thresholds (from the reviewed half) and the labels it judges
    # (the other half's) must be on the same scale
    review.apply_calibration(dataset, field, calibration)
    after = [(label.confidence, right) for label, right in correctness(held_out, field)
             if label.confidence is not None]
    trial = {"seed": seed, "ece_before": _ece(raw), "ece_after": _ece(after)}
    try:
        report = review.auto_accept(held_out, field, target_precision=target, confidence_level=0.95)
    except review.ReviewError as e:
        return {**trial, "refused": str(e), "auto_accepted": 0, "share": 0.0, "precision": None}
    accepted = [right for label, right in correctness(held_out, field) if label.review == review.AUTO_ACCEPTED]
    return {**trial, "auto_accepted": len(accepted), "labels": report.labels, "share": report.share,
            "precision": sum(accepted) / len(accepted) if accepted else None,
            "thresholds": report.thresholds, "reviewed_labels": report.reviewed_labels}


def _ece(pairs: Sequence[tuple[float, bool]]) -> float:
    confidences, kept = zip(*pairs) if pairs else ((), ())
    return expected_calibration_error(reliability_bins(confidences, kept))


# the run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=150, help="synthetic images")
    parser.add_argument("--seeds", type=int, default=20, help="auto-accept trials (noise seeds)")
    parser.add_argument("--profile", default="flash", help="the emulator's noise profile")
    parser.add_argument("--target", type=float, default=0.95, help="auto-accept's target precision")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    logging.getLogger("fiftyone").setLevel(logging.WARNING)  # one line per evaluation otherwise
    if args.quick:
        args.images, args.seeds = 30, 3

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        dataset = HARNESS.make_synthetic(directory, args.images, seed=1)
        index = LabelIndex.from_samples(dataset, "ground_truth")
        try:
            rows, trials = {}, []
            noise = dataclasses.replace(noise_profile(args.profile, seed=0), confusions=SHAPE_CONFUSIONS)
            with EmulatorServer(Oracle(index, noise=noise), latency=0.05) as server:
                rows = ranking(dataset, server.url, (1, 3, 5))
            for seed in range(args.seeds):
                noise = dataclasses.replace(noise_profile(args.profile, seed=seed), confusions=SHAPE_CONFUSIONS)
                trial_dataset = dataset.clone()
                try:
                    with EmulatorServer(Oracle(index, noise=noise), latency=0.05) as server:
                        trials.append(auto_accept_trial(trial_dataset, server.url, seed, args.target))
                finally:
                    trial_dataset.delete()
        finally:
            objects = dataset.count("ground_truth.detections")
            dataset.delete()
    return report(args, rows, trials, objects, time.perf_counter() - started)


def report(args: argparse.Namespace, rows: dict, trials: list[dict], objects: int, elapsed: float) -> int:
    graded = [t for t in trials if t["precision"] is not None]  # seeds that auto-accepted something
    held = [t for t in graded if t["precision"] >= args.target]
    refused = [t for t in trials if "refused" in t]
    print(f"# trust on the emulator's '{args.profile}' noise: {args.images} synthetic images, {objects} objects, "
          f"{args.seeds} seeds ({elapsed:.0f} s)")
    print("\n## AP@0.5 of the same detections, by what ranks them")
    print("| answers per image | requests | ranked by consensus | by self-reported | unranked |")
    print("| --- | --- | --- | --- | --- |")
    for n, row in rows.items():
        consensus = f"{row['ap_by_consensus_confidence']:.3f}" if "ap_by_consensus_confidence" in row else "–"
        print(f"| {n} | {row['requests']} ({row['requests_per_image']:.0f}×) | {consensus} | "
              f"{row['ap_by_self_confidence']:.3f} | {row['ap_unranked']:.3f} |")
    print(f"\n## auto-accept at target {args.target} (confidence level 0.95), consensus 3, "
          "calibrated on a reviewed half, applied to the other half")
    for t in trials:
        precision = "refused (the reviews could not show the target)" if "refused" in t else (
            "none accepted" if t["precision"] is None else f"{t['precision']:.3f}")
        print(f"- seed {t['seed']}: precision {precision} of {t['auto_accepted']} auto-accepted "
              f"({t['share']:.0%} of labels); ECE {t['ece_before']:.3f} → {t['ece_after']:.3f}")
    shares = [t["share"] for t in trials]
    print(f"\nauto-accepted labels at precision ≥ {args.target} (against the ground truth) in {len(held)} of the "
          f"{len(graded)} seeds that auto-accepted any; {len(refused)} of {len(trials)} refused (their reviews could "
          f"not show the target, so nothing was accepted); labels needing no human look: mean {np.mean(shares):.0%} "
          f"(min {min(shares):.0%}, max {max(shares):.0%}; {np.mean([t['share'] for t in graded]):.0%} where "
          f"accepted)")
    print(f"ECE on held-out labels: mean {np.mean([t['ece_before'] for t in trials]):.3f} before, "
          f"{np.mean([t['ece_after'] for t in trials]):.3f} after calibration")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump({"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                   "arguments": vars(args), "ranking": rows, "trials": trials}, f, indent=2, default=str)
    # a refusal accepts nothing, so it cannot break the promise; a seed that accepted labels must hold it
    promises = [bool(graded) and len(held) >= 0.95 * len(graded),
                all(rows[n]["ap_by_consensus_confidence"] > rows[n]["ap_by_self_confidence"] for n in rows if n > 1)]
    return 0 if all(promises) else 1


if __name__ == "__main__":
    sys.exit(main())
