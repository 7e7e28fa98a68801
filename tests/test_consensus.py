"""consensus=N: N answers per image, fused by agreement, through every front door.

The fusion rules themselves are tested on hand-made tables in ``test_fuse.py``;
these tests run real requests through the SDK against the emulator.
"""

from __future__ import annotations

import pytest

import gemini_annotate
from gemini_annotate.emulator import Canned, OracleNoise
from gemini_annotate.labels import labels_in


def _boxes(dataset, field):
    return [sorted((d.label, tuple(round(v, 6) for v in d.bounding_box)) for d in dets.detections)
            for dets in dataset.values(field)]


def test_each_image_is_asked_n_times_with_its_own_seed(coco_dataset, emulator, oracle_for):
    server = emulator(oracle_for(coco_dataset), keep_requests=64)

    summary = gemini_annotate.annotate(coco_dataset, task="detect", label_field="fused", consensus=3)

    assert summary.requests == 3 * len(coco_dataset) and summary.done == len(coco_dataset)
    seeds = sorted(r.generation_config.get("seed") for r in server.last_requests)
    assert seeds == sorted([1, 2, 3] * len(coco_dataset))


def test_answers_that_agree_give_the_labels_of_one_answer_with_full_votes(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))

    gemini_annotate.annotate(coco_dataset, task="detect", label_field="single")
    gemini_annotate.annotate(coco_dataset, task="detect", label_field="fused", consensus=3)

    assert _boxes(coco_dataset, "fused") == _boxes(coco_dataset, "single")
    fused = [d for dets in coco_dataset.values("fused.detections") for d in dets]
    assert fused and all((d.votes, d.answers) == (3, 3) for d in fused)
    assert all(d.agreement == pytest.approx(1.0) and d.confidence == pytest.approx(1.0) for d in fused)


def test_a_box_one_answer_invents_ranks_below_the_boxes_all_answers_give(coco_dataset, emulator, oracle_for):
    # false positives are drawn afresh for every answer: an invented box rarely appears twice
    emulator(oracle_for(coco_dataset, noise=OracleNoise(false_positive_rate=1.0, seed=3)))

    gemini_annotate.annotate(coco_dataset, task="detect", label_field="fused", consensus=3)

    votes = [d.votes for dets in coco_dataset.values("fused.detections") for d in dets]
    confidences = {v: [d.confidence for dets in coco_dataset.values("fused.detections") for d in dets
                       if d.votes == v] for v in set(votes)}
    assert 1 in confidences and 3 in confidences
    assert max(confidences[1]) < min(confidences[3])


@pytest.mark.parametrize("task, field", [("segment", "seg"), ("points", "pts")])
def test_segments_and_points_are_fused_too(coco_dataset, emulator, oracle_for, task, field):
    emulator(oracle_for(coco_dataset))

    summary = gemini_annotate.annotate(coco_dataset.limit(2), task=task, label_field=field, consensus=3)

    assert summary.done == 2 and summary.failed == 0
    labels = [label for value in coco_dataset.limit(2).values(field) for label in labels_in(value)]
    assert labels and all(label.votes == 3 for label in labels)
    if task == "segment":
        outlines = coco_dataset.limit(2).values(f"{field}_polylines.polylines")
        assert sum(map(len, outlines)) == len(labels)


def test_a_batch_run_fuses_like_an_online_run(coco_dataset, emulator, oracle_for):
    server = emulator(oracle_for(coco_dataset), batch_timing=(0.1, 0.1))

    gemini_annotate.annotate(coco_dataset, task="detect", label_field="online", consensus=3)
    summary = gemini_annotate.annotate(coco_dataset, task="detect", label_field="batched", consensus=3,
                                       batch=True, batch_poll_interval=0.1)

    assert summary.requests == 3 * len(coco_dataset) and server.batches.created == 1
    assert _boxes(coco_dataset, "batched") == _boxes(coco_dataset, "online")
    votes = lambda field: [d.votes for dets in coco_dataset.values(f"{field}.detections") for d in dets]  # noqa: E731
    assert votes("batched") == votes("online")


def test_apply_model_fuses_the_answers_like_a_run(coco_dataset, emulator, oracle_for):
    server = emulator(oracle_for(coco_dataset), keep_requests=64)
    model = gemini_annotate.GeminiModel(task="detect", consensus=3, concurrency=6)

    coco_dataset.apply_model(model, label_field="applied", batch_size=2, progress=False)
    gemini_annotate.annotate(coco_dataset, task="detect", label_field="annotated", consensus=3)

    assert server.count() == 6 * len(coco_dataset) and server.max_in_flight <= 6
    assert _boxes(coco_dataset, "applied") == _boxes(coco_dataset, "annotated")


def test_some_answers_failing_leaves_the_sample_partial_with_the_others_fused(coco_dataset, emulator):
    # every third answer is refused: each sample gets two usable answers of three
    replies = ['{"boxes": [{"box_2d": [100, 100, 500, 500], "label": "cat"}]}'] * 2 + ["not json at all"]
    emulator(Canned(replies))

    gemini_annotate.annotate(coco_dataset.limit(2), task="detect", label_field="fused", consensus=3,
                             concurrency=1)

    for status, reason, detections in zip(*coco_dataset.limit(2).values(
            ["fused_status", "fused_reason", "fused.detections"])):
        assert status == "partial" and "1 of 3 answers failed" in reason
        assert [(d.label, d.votes, d.answers) for d in detections] == [("cat", 2, 3)]


def test_the_estimate_and_the_budget_count_every_answer(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset))
    config = gemini_annotate.AnnotateConfig(task="detect", consensus=5)

    estimate = gemini_annotate.estimate_run(coco_dataset, config)
    single = gemini_annotate.estimate_run(coco_dataset, gemini_annotate.AnnotateConfig(task="detect"))

    assert estimate.requests == 5 * single.requests == 5 * len(coco_dataset)
    assert estimate.input_tokens == 5 * single.input_tokens
    with pytest.raises(gemini_annotate.AnnotationStopped):
        gemini_annotate.annotate(coco_dataset, task="detect", label_field="fused", consensus=5, max_requests=7,
                                 concurrency=1)
    assert coco_dataset.count("fused_status") <= 1  # 7 requests answer one image, not seven


@pytest.mark.parametrize("task, options", [("caption", {}), ("vqa", {"question": "What is it?"})])
def test_consensus_is_refused_for_free_text(task, options):
    with pytest.raises(ValueError, match="consensus fuses labels"):
        gemini_annotate.AnnotateConfig(task=task, consensus=3, **options)


def test_classes_are_fused_by_majority(described_dataset, emulator, described_oracle):
    emulator(described_oracle(described_dataset))

    summary = gemini_annotate.annotate(described_dataset, task="classify", classes=["indoor", "outdoor"],
                                       label_field="scene", consensus=3)

    assert summary.requests == 3 * len(described_dataset) and summary.failed == 0
    assert described_dataset.values("scene.label") == described_dataset.values("truth_scene.label")
    assert set(described_dataset.values("scene.votes")) == {3}
