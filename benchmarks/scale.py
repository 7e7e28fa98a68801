"""Scale: the end of a run and a 10-sample top-up cost the same on 1k, 10k and 100k samples.

    python benchmarks/scale.py                    # 1k, 10k, 100k samples
    python benchmarks/scale.py --quick            # 1k, 10k

For each size N, a dataset of N samples is built fast: 10 real samples are
annotated through the emulator (which declares the fields and records the
run), then N - 20 copies of a labeled sample and 10 unlabeled samples, all
pointing to the COCO test images, are inserted straight into the sample
collection. Then, ``--repeats`` times, 10 new unlabeled samples are inserted
and the run is repeated (``if_labeled="skip"``): it sends those 10 only.
Measured, all in the same run of this script:

- ``topup_s``: the whole ``gemini_annotate.annotate`` call of the top-up;
- ``tail_s``: its end-of-run tail (``AnnotationJob._finish``: last write,
  schema declaration, index check, run summary);
- ``estimate_s``: ``estimate_run`` of the same top-up before it runs;
- ``old_scan_s``: for reference, what the tail used to add, FiftyOne's
  ``add_dynamic_sample_fields`` scan of the label field.

Goal: flat. Each of ``topup_s``, ``tail_s`` and ``estimate_s`` at the largest
size is at most 1.5 × its 1k value + 0.1 s (median of the repeats). Figures
are printed and written to ``benchmarks/results/scale.json``; the exit status
is non-zero when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from typing import Optional

from _common import use_own_database

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS_DIR = os.path.join(HERE, "results")
COCO_IMAGES = os.path.join(ROOT, "tests", "data", "coco_val_tiny", "images")
API_KEY = "benchmark-key"
REPLY = json.dumps({"boxes": [
    {"box_2d": [100, 100, 400, 400], "label": "cat"},
    {"box_2d": [500, 500, 900, 900], "label": "dog"},
    {"box_2d": [0, 0, 200, 300], "label": "bird"},
]})
TOPUP = 10
FLAT_RATIO, FLAT_SLACK = 1.5, 0.1
INSERT_CHUNK = 10_000

use_own_database()  # before FiftyOne loads
os.environ["GEMINI_API_KEY"] = API_KEY


def images() -> list[str]:
    return sorted(os.path.join(COCO_IMAGES, f) for f in os.listdir(COCO_IMAGES))


def raw_unlabeled(dataset, count: int) -> list[dict]:
    """Sample documents as FiftyOne writes them, without labels, cycling over the COCO images."""
    import random
    from datetime import datetime, timezone

    from bson import ObjectId

    paths, now = images(), datetime.now(timezone.utc)
    return [{"_id": ObjectId(), "filepath": paths[i % len(paths)], "tags": [], "_media_type": "image",
             "_rand": random.random(), "_dataset_id": dataset._doc.id, "created_at": now, "last_modified_at": now}
            for i in range(count)]


def insert(dataset, documents: list[dict]) -> None:
    for start in range(0, len(documents), INSERT_CHUNK):
        dataset._sample_collection.insert_many(documents[start:start + INSERT_CHUNK], ordered=False)


def labeled_copies(dataset, template: dict, count: int) -> list[dict]:
    """``count`` copies of a labeled sample document, each with its own ids."""
    import copy

    from bson import ObjectId

    documents = []
    for document in raw_unlabeled(dataset, count):
        labeled = copy.deepcopy({k: v for k, v in template.items() if k not in document})
        for detection in labeled["gemini"]["detections"]:
            detection["_id"] = ObjectId()
        documents.append({**document, **labeled})
    return documents


def build(size: int, url: str):
    """A dataset of ``size`` samples: ``size - 10`` labeled by a run of ``gemini``, 10 not."""
    import fiftyone as fo

    import gemini_annotate

    dataset = fo.Dataset(f"scale-{size}-{uuid.uuid4().hex[:8]}")
    paths = images()
    dataset.add_samples([fo.Sample(filepath=paths[i % len(paths)]) for i in range(TOPUP)])
    gemini_annotate.annotate(dataset, label_field="gemini", base_url=url, concurrency=8)
    template = dataset._sample_collection.find_one({"gemini_status": "ok"})
    insert(dataset, labeled_copies(dataset, template, size - 2 * TOPUP))
    insert(dataset, raw_unlabeled(dataset, TOPUP))
    return dataset


def measure(size: int, repeats: int, url: str) -> dict:
    import gemini_annotate
    from gemini_annotate.estimate import estimate_run
    from gemini_annotate.job import AnnotationJob

    started = time.monotonic()
    dataset = build(size, url)
    built_s = time.monotonic() - started
    tails: list[float] = []
    finish = AnnotationJob._finish

    def timed_finish(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return finish(self, *args, **kwargs)
        finally:
            tails.append(time.perf_counter() - t0)

    AnnotationJob._finish = timed_finish
    topups, estimates = [], []
    try:
        for repeat in range(repeats):
            if repeat:
                insert(dataset, raw_unlabeled(dataset, TOPUP))
            config = gemini_annotate.AnnotateConfig(label_field="gemini", base_url=url, concurrency=8)
            t0 = time.perf_counter()
            estimate = estimate_run(dataset, config)
            estimates.append(time.perf_counter() - t0)
            assert estimate.to_send == TOPUP, estimate.describe()
            t0 = time.perf_counter()
            summary = gemini_annotate.annotate(dataset, label_field="gemini", base_url=url, concurrency=8)
            topups.append(time.perf_counter() - t0)
            assert summary.done == TOPUP and summary.skipped == dataset.count() - TOPUP, summary.describe()
        t0 = time.perf_counter()
        dataset.add_dynamic_sample_fields(fields=["gemini"])
        old_scan = time.perf_counter() - t0
        declared = "gemini.detections.review" in dataset.get_field_schema(flat=True)
    finally:
        AnnotationJob._finish = finish
        dataset.delete()
    return {
        "samples": size, "build_s": round(built_s, 2),
        "topup_s": round(statistics.median(topups), 3), "tail_s": round(statistics.median(tails), 3),
        "estimate_s": round(statistics.median(estimates), 3), "old_scan_s": round(old_scan, 3),
        "topup_runs_s": [round(t, 3) for t in topups], "tail_runs_s": [round(t, 3) for t in tails],
        "review_attribute_declared": declared,
    }


def main(argv: Optional[list[str]] = None) -> int:
    from gemini_annotate.emulator import Canned, EmulatorServer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k samples only")
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = args.sizes or ([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
    with EmulatorServer(Canned(REPLY), latency=0.05) as server:
        rows = []
        for size in sizes:
            rows.append(measure(size, args.repeats, server.url))
            row = rows[-1]
            print(f"{row['samples']:>8,} samples: top-up {row['topup_s']:.3f} s, tail {row['tail_s']:.3f} s, "
                  f"estimate {row['estimate_s']:.3f} s; (old scan {row['old_scan_s']:.3f} s; "
                  f"built in {row['build_s']:.1f} s)", flush=True)
    first, last = rows[0], rows[-1]
    goals = {}
    for name in ("topup_s", "tail_s", "estimate_s"):
        ratio = last[name] / first[name] if first[name] else float("inf")
        goals[f"{name} flat: {last['samples']:,} vs {first['samples']:,} = x{ratio:.2f}"] = (
            last[name] <= FLAT_RATIO * first[name] + FLAT_SLACK)
    goals["the App's filters see the review attribute"] = all(r["review_attribute_declared"] for r in rows)
    for goal, met in goals.items():
        print(f"  [{'ok' if met else 'MISSED'}] {goal}")
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, "scale.json"), "w") as f:
        json.dump({"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows,
                   "goals": goals}, f, indent=2)
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
