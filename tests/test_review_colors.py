"""A run has the App draw its labels by review status, unless the dataset already says how."""

from __future__ import annotations

import fiftyone as fo

import gemini_annotate
from gemini_annotate.review_colors import REVIEW_COLORS


def _entry(dataset, path):
    return next((f for f in dataset.app_config.color_scheme.fields or [] if f["path"] == path), None)


def test_a_run_colors_its_labels_by_review_status(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))

    gemini_annotate.annotate(coco_dataset.limit(1), task="segment", label_field="seg")

    coco_dataset.reload()
    for path in ("seg", "seg_polylines"):
        entry = _entry(coco_dataset, path)
        assert entry["colorByAttribute"] == "review"
        assert {c["value"]: c["color"] for c in entry["valueColors"]} == REVIEW_COLORS


def test_a_field_the_user_colored_keeps_the_user_s_colors(coco_dataset, emulator, oracle_for):
    mine = {"path": "gemini", "fieldColor": "#123456"}
    coco_dataset.app_config.color_scheme = fo.ColorScheme(fields=[mine])
    coco_dataset.save()
    emulator(oracle_for(coco_dataset))

    gemini_annotate.annotate(coco_dataset.limit(1), task="detect", label_field="gemini")

    coco_dataset.reload()
    assert _entry(coco_dataset, "gemini") == mine


def test_text_fields_get_no_colors(described_dataset, emulator, described_oracle):
    emulator(described_oracle(described_dataset))

    gemini_annotate.annotate(described_dataset.limit(1), task="caption", label_field="caption")

    described_dataset.reload()
    scheme = described_dataset.app_config.color_scheme
    assert scheme is None or _entry(described_dataset, "caption") is None
