"""The offline demo: real images, the local emulator as Gemini, the whole labeling loop.

``gemini-annotate demo`` builds a dataset from the two CC BY photographs shipped
here (see ``ATTRIBUTION.md``) with their COCO labels as ``ground_truth``, starts
the emulator answering like a good-but-imperfect model (the known labels with
some boxes missed, shifted or invented), pre-annotates the dataset into
``gemini`` through the real google-genai SDK, and evaluates the pre-annotations
against the ground truth: the loop a team runs with the real model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import fiftyone as fo

from ..emulator import EmulatorServer, LabelIndex, Oracle, OracleNoise
from ..pipeline import annotate
from ..run_records import RunSummary

DEMO_DIR = os.path.dirname(os.path.abspath(__file__))
IMAGES_DIR = os.path.join(DEMO_DIR, "images")
LABELS_PATH = os.path.join(DEMO_DIR, "labels.json")
DATASET_NAME = "gemini-annotate-demo"
DEMO_API_KEY = "emulator-demo-key"

DEMO_NOISE = dict(miss_rate=0.1, jitter=0.04, false_positive_rate=0.05, seed=7)


@dataclass
class DemoResult:
    """What the demo made: the dataset, the run summary and the evaluation."""

    dataset: fo.Dataset
    summary: RunSummary
    precision: float
    recall: float


def build_demo_dataset(name: str = DATASET_NAME) -> fo.Dataset:
    """A fresh, persistent dataset of the shipped images with their COCO labels."""
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    dataset = fo.Dataset.from_dir(
        dataset_type=fo.types.COCODetectionDataset,
        data_path=IMAGES_DIR,
        labels_path=LABELS_PATH,
        label_types=["detections"],
        label_field="ground_truth",
        name=name,
        progress=False,
    )
    dataset.persistent = True
    dataset.compute_metadata(progress=False)
    return dataset


def run_demo(name: str = DATASET_NAME, *, api: str = "generate_content") -> DemoResult:
    """Builds the demo dataset, pre-annotates it on the emulator and evaluates the result."""
    dataset = build_demo_dataset(name)
    classes = sorted(set(dataset.distinct("ground_truth.detections.label")))
    oracle = Oracle(LabelIndex.from_samples(dataset, "ground_truth"), noise=OracleNoise(**DEMO_NOISE))
    with EmulatorServer(oracle, latency=0.2) as emulator:
        summary = annotate(
            dataset, task="detect", classes=classes, label_field="gemini",
            base_url=emulator.url, api_key=DEMO_API_KEY, api=api,
        )
    # without confidence=True the boxes carry no confidence, so there is no
    # ranking to compute mAP from: precision and recall at IoU 0.5 are the honest measures
    results = dataset.evaluate_detections(
        "gemini", gt_field="ground_truth", eval_key="gemini_eval", progress=False,
    )
    metrics = results.metrics()
    return DemoResult(dataset=dataset, summary=summary,
                      precision=float(metrics["precision"]), recall=float(metrics["recall"]))


def describe(result: DemoResult) -> str:
    """The demo's closing message, saying how to open the result in the App."""
    dataset = result.dataset
    again = "gemini-annotate demo --app" + (f" --name {dataset.name}" if dataset.name != DATASET_NAME else "")
    lines = [
        f"Demo dataset {dataset.name!r}: {len(dataset)} images, "
        f"{dataset.count('ground_truth.detections')} ground-truth objects.",
        "Pre-annotated by the local Gemini emulator (no key, no network) through the google-genai SDK:",
        result.summary.describe(),
        f"Pre-annotations vs ground truth (IoU 0.5): precision {result.precision:.2f}, "
        f"recall {result.recall:.2f}",
        "",
        "Review them in the FiftyOne App:",
        f"  {again}   (or: fiftyone app launch {dataset.name})",
        f'  or in Python: fo.launch_app(fo.load_dataset("{dataset.name}"))',
    ]
    return "\n".join(lines)
