"""Token and cost estimates before a run, and the reported usage beside them after it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import gemini_annotate
from gemini_annotate.config import AnnotateConfig
from gemini_annotate.costs import ModelPrice, PRICES, cost, load_prices, price_for
from gemini_annotate.estimate import compare_with_estimate, estimate_run
from gemini_annotate.media import estimate_image_tokens, fit_within
from gemini_annotate.run_records import load_run_summary
from gemini_annotate.selection import count_selection


@pytest.mark.parametrize("width, height, tokens", [
    (960, 540, 6 * 258),  # the guide's example: unit floor(540 / 1.5) = 360 → 3 × 2 tiles
    (540, 960, 1548),     # orientation does not matter
    (384, 384, 258),      # both sides ≤ 384: one flat charge
    (200, 100, 258),
    (1, 1, 258),
    (385, 384, 1032),     # one side over 384: tiled, unit 256 → 2 × 2
    (1000, 1000, 1032),   # unit 666 → 2 × 2
    (1920, 1080, 1548),   # unit 720 → 3 × 2
    (4000, 1000, 14 * 258),  # unit 666 → 7 × 2 tiles
])
def test_image_token_estimate_follows_the_guides_formula(width, height, tokens):
    assert estimate_image_tokens(width, height) == tokens


@pytest.mark.parametrize("width, height, max_side, size", [
    (4000, 3000, 1536, (1536, 1152)),
    (3000, 4000, 1536, (1152, 1536)),
    (1000, 500, 1536, (1000, 500)),
    (1000, 500, None, (1000, 500)),
])
def test_max_side_scales_like_the_image_preparation(width, height, max_side, size):
    assert fit_within(width, height, max_side) == size


def test_estimate_counts_the_image_as_sent_after_downscaling():
    assert estimate_image_tokens(3840, 2160, max_side=1536) == estimate_image_tokens(1536, 864) == 1548


@pytest.mark.parametrize("width, height, level, model, tokens", [
    (960, 540, "low", "gemini-3-flash-preview", 280),
    (960, 540, "medium", "gemini-3-flash-preview", 560),
    (960, 540, "high", "gemini-3-pro-preview", 1120),
    (3840, 2160, "high", "gemini-3-flash-preview", 1120),
    (200, 100, "high", "gemini-3-flash-preview", 258),   # a cap, never an increase
    (960, 540, "low", "gemini-2.5-flash", 64),
    (960, 540, "high", "gemini-2.5-flash", 256),
])
def test_media_resolution_caps_tokens_per_image(width, height, level, model, tokens):
    assert estimate_image_tokens(width, height, media_resolution=level, model=model) == tokens


def test_unknown_media_resolution_is_refused():
    with pytest.raises(ValueError, match="media_resolution"):
        estimate_image_tokens(960, 540, media_resolution="ultra", model="gemini-3-flash-preview")


@pytest.mark.parametrize("model, expected", [
    ("gemini-2.5-flash", PRICES["gemini-2.5-flash"]),
    ("models/gemini-2.5-flash", PRICES["gemini-2.5-flash"]),
    ("gemini-2.5-flash-lite-preview-09-2025", PRICES["gemini-2.5-flash-lite"]),
    ("gemini-3-flash-preview", PRICES["gemini-3-flash-preview"]),
    ("some-other-model", None),
])
def test_prices_are_found_by_model_name_or_its_family(model, expected):
    assert price_for(model) == expected


def test_batch_prices_apply_the_discount():
    price = ModelPrice(1.0, 10.0, batch_discount=0.5)
    assert cost(1_000_000, 100_000, price) == pytest.approx(2.0)
    assert cost(1_000_000, 100_000, price, batch=True) == pytest.approx(1.0)
    assert cost(1, 1, None) is None


def test_users_override_prices_from_a_mapping_or_a_json_file(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"gemini-2.5-flash": {"input_per_million": 9, "output_per_million": 90},
                                "my-tuned-model": {"input_per_million": 1, "output_per_million": 2,
                                                   "batch_discount": 0}}))
    table = load_prices(str(path))
    assert table["gemini-2.5-flash"] == ModelPrice(9, 90)
    assert table["my-tuned-model"].batch_discount == 0
    assert table["gemini-2.5-pro"] == PRICES["gemini-2.5-pro"]
    assert load_prices({"x": ModelPrice(1, 1)})["x"] == ModelPrice(1, 1)


def test_run_estimate_adds_every_image_and_prompt(coco_dataset):
    config = AnnotateConfig(task="detect", model="gemini-2.5-flash")

    estimate = estimate_run(coco_dataset, config)

    sizes = zip(*coco_dataset.values(["metadata.width", "metadata.height"]))
    assert estimate.samples == len(coco_dataset)
    assert estimate.image_tokens == sum(estimate_image_tokens(w, h, max_side=1536) for w, h in sizes)
    assert estimate.prompt_tokens > 0 and estimate.output_tokens > 0
    price = PRICES["gemini-2.5-flash"]
    assert estimate.input_cost == pytest.approx(estimate.input_tokens * price.input_per_million / 1e6)
    batch = estimate_run(coco_dataset, config.model_copy(update={"batch": True}))
    assert batch.total_cost == pytest.approx(estimate.total_cost / 2)


def test_run_estimate_counts_each_reference_image_once_per_request(coco_dataset):
    reference = coco_dataset.first()
    plain = estimate_run(coco_dataset, AnnotateConfig(task="detect"))
    config = AnnotateConfig(task="detect", reference_images=[reference.filepath, "https://example.com/a.jpg"])

    estimate = estimate_run(coco_dataset, config)

    on_disk = estimate_image_tokens(reference.metadata.width, reference.metadata.height, max_side=1536)
    unknown = estimate_image_tokens(1, 1)  # an address: its size is unknown, the smallest image's cost
    assert estimate.image_tokens == plain.image_tokens + (on_disk + unknown) * estimate.requests


def test_estimate_of_a_shard_counts_only_the_samples_that_shard_sends(coco_dataset):
    configs = [AnnotateConfig(task="caption", shard=shard, num_shards=2) for shard in (0, 1)]

    estimates = [estimate_run(coco_dataset, config) for config in configs]

    assert [e.requests for e in estimates] == [count_selection(coco_dataset, c)[1] for c in configs]
    assert sum(e.requests for e in estimates) == len(coco_dataset)


def test_run_estimate_reads_image_headers_when_metadata_is_missing(coco_dataset):
    config = AnnotateConfig(task="caption")
    with_metadata = estimate_run(coco_dataset, config)
    coco_dataset.clear_sample_field("metadata")

    assert estimate_run(coco_dataset, config).image_tokens == with_metadata.image_tokens


def test_estimate_command_prints_tokens_and_cost(coco_dataset):
    coco_dataset.persistent = True
    done = subprocess.run([sys.executable, "-m", "gemini_annotate.cli", "estimate", coco_dataset.name,
                           "--task", "classify", "--classes", "a,b", "--batch", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    estimate = json.loads(done.stdout)
    assert estimate["samples"] == len(coco_dataset) and estimate["batch"] is True
    assert estimate["input_tokens"] == estimate["image_tokens"] + estimate["prompt_tokens"] > 0
    assert estimate["total_cost"] > 0


def test_a_run_records_the_tokens_the_replies_report(described_dataset, emulator, described_oracle):
    server = emulator(described_oracle(described_dataset))

    summary = gemini_annotate.annotate(described_dataset, task="caption", label_field="caption")

    assert (summary.input_tokens, summary.output_tokens) == server.reported_tokens()
    assert summary.input_tokens > 0 and summary.estimated_input_tokens > 0
    assert load_run_summary(described_dataset, "caption").input_tokens == summary.input_tokens


def test_estimate_and_reported_tokens_are_shown_side_by_side(described_dataset, emulator, described_oracle):
    emulator(described_oracle(described_dataset))  # the emulator ignores media_resolution: it reports more
    config = AnnotateConfig(task="caption", label_field="caption", media_resolution="low")

    summary = gemini_annotate.run_annotation(described_dataset, config)
    table = compare_with_estimate(summary, config)

    input_row = next(line for line in table.splitlines() if line.startswith("input tokens"))
    assert f"{summary.estimated_input_tokens:,}" in input_row and f"{summary.input_tokens:,}" in input_row
    assert summary.input_tokens > summary.estimated_input_tokens
    assert f"{summary.input_tokens / summary.estimated_input_tokens:.2f}" in input_row
    assert "cost" in table and "$" in table


def test_annotate_command_shows_the_estimate_before_and_the_comparison_after(described_dataset, emulator,
                                                                             described_oracle):
    server = emulator(described_oracle(described_dataset))
    described_dataset.persistent = True

    done = subprocess.run([sys.executable, "-m", "gemini_annotate.cli", "annotate", described_dataset.name,
                           "--task", "caption", "--label-field", "caption", "--base-url", server.url],
                          capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr
    assert "estimate before sending" in done.stderr and "input tokens ≈" in done.stderr
    assert "reported/estimated" in done.stdout
