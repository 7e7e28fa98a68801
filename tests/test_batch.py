"""The Batch API: submit, poll, ingest, and resume after the process dies."""

from __future__ import annotations

import subprocess
import sys
import time

import fiftyone as fo
import pytest

import gemini_annotate
from gemini_annotate import batch as batch_module
from gemini_annotate.batch import BatchJobMismatch
from gemini_annotate.run_records import load_batch_job, load_run_summary


def _labels(dataset, field):
    return [sorted(d.label for d in dets.detections) for dets in dataset.values(field)]


def _labels_and_boxes(dataset, field):
    """Per sample: status, reason and every label with its box, in a comparable form."""
    return [(status, reason, sorted((d.label, tuple(d.bounding_box)) for d in dets.detections))
            for status, reason, dets in zip(*dataset.values([f"{field}_status", f"{field}_reason", field]))]


@pytest.mark.parametrize("transport", ["inline", "file_api"])
def test_batch_run_labels_like_an_online_run(coco_dataset, emulator, oracle_for, transport):
    server = emulator(oracle_for(coco_dataset), batch_timing=(0.3, 1.0))
    states = []

    summary = gemini_annotate.annotate(
        coco_dataset, task="detect", label_field="boxes", batch=True, batch_poll_interval=0.1,
        image_transport=transport, progress=lambda p: p.message and states.append(p.message.split()[-1]),
    )

    assert summary.done == len(coco_dataset) and summary.failed == 0
    assert _labels(coco_dataset, "boxes") == _labels(coco_dataset, "ground_truth")
    assert server.batches.created == 1 and server.count("generate_content") == 0
    # the same samples sent online get the very same labels, boxes, statuses and reasons
    gemini_annotate.annotate(coco_dataset, task="detect", label_field="online", image_transport=transport)
    assert _labels_and_boxes(coco_dataset, "boxes") == _labels_and_boxes(coco_dataset, "online")
    # each poll reports the job's state: in order, ending done (PENDING may pass before the first poll)
    polled = [s for s in states if s in ("PENDING", "RUNNING", "SUCCEEDED")]
    assert "RUNNING" in polled and polled[-1] == "SUCCEEDED"
    assert polled == sorted(polled, key=["PENDING", "RUNNING", "SUCCEEDED"].index)
    assert summary.input_tokens > 0 and summary.batch_job.startswith("batches/")
    assert load_batch_job(coco_dataset, "boxes")["state"] == "ingested"


def test_large_batches_go_as_a_jsonl_file(coco_dataset, emulator, oracle_for, monkeypatch):
    server = emulator(oracle_for(coco_dataset), batch_timing=(0.1, 0.1))
    monkeypatch.setattr(batch_module, "INLINE_LIMIT_BYTES", 1000)

    summary = gemini_annotate.annotate(coco_dataset, task="detect", label_field="boxes", batch=True,
                                       batch_poll_interval=0.1)

    assert summary.done == len(coco_dataset)
    assert load_batch_job(coco_dataset, "boxes")["via_file"] is True
    assert server.files.uploads == 1  # the JSONL input; the results come back as a generated file
    assert _labels(coco_dataset, "boxes") == _labels(coco_dataset, "ground_truth")


def test_no_wait_submits_and_a_rerun_collects(described_dataset, emulator, described_oracle):
    server = emulator(described_oracle(described_dataset), batch_timing=(0.1, 0.3))

    first = gemini_annotate.annotate(described_dataset, task="caption", label_field="caption", batch=True,
                                     batch_wait=False)
    assert first.done == 0 and load_batch_job(described_dataset, "caption")["state"] == "pending"
    time.sleep(0.5)
    second = gemini_annotate.annotate(described_dataset, task="caption", label_field="caption", batch=True,
                                      batch_wait=False)

    assert server.batches.created == 1
    assert second.done == len(described_dataset)
    assert described_dataset.values("caption") == described_dataset.values("truth_caption")


def test_a_sample_labeled_while_its_batch_job_runs_is_left_alone(coco_dataset, emulator, oracle_for):
    emulator(oracle_for(coco_dataset), batch_timing=(0.1, 0.2))
    gemini_annotate.annotate(coco_dataset, task="detect", label_field="boxes", batch=True, batch_wait=False)
    sample = coco_dataset.first()
    sample["boxes"] = fo.Detections(detections=[fo.Detection(label="drawn by hand", bounding_box=[0.1, 0.1, 0.2, 0.2])])
    sample.save()

    summary = gemini_annotate.annotate(coco_dataset, task="detect", label_field="boxes", batch=True,
                                       batch_poll_interval=0.1)

    sample.reload()
    assert [d.label for d in sample.boxes.detections] == ["drawn by hand"] and sample.boxes_status is None
    assert summary.done == len(coco_dataset) - 1 and summary.skipped == 1
    assert _labels(coco_dataset[1:], "boxes") == _labels(coco_dataset[1:], "ground_truth")


def test_a_pending_job_is_not_collected_with_another_configuration(described_dataset, emulator, described_oracle):
    emulator(described_oracle(described_dataset), batch_timing=(5, 5))
    gemini_annotate.annotate(described_dataset, task="caption", label_field="answer", batch=True, batch_wait=False)

    with pytest.raises(BatchJobMismatch, match="pending batch job"):
        gemini_annotate.annotate(described_dataset, task="vqa", question="Why?", label_field="answer",
                                 batch=True, batch_wait=False)


def test_a_batch_run_cannot_be_split_into_shards(coco_dataset, emulator, oracle_for):
    # each shard would find, collect and account for the other shards' job
    server = emulator(oracle_for(coco_dataset), batch_timing=(0.1, 0.1))

    with pytest.raises(ValueError, match="cannot be split into shards"):
        gemini_annotate.annotate(coco_dataset, task="detect", label_field="boxes", batch=True,
                                 shard=0, num_shards=2, batch_wait=False)
    assert server.batches.created == 0


def _cli_annotate(dataset, server, *extra, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "gemini_annotate.cli", "annotate", dataset.name, "--task", "detect",
         "--label-field", "boxes", "--batch", "--batch-poll-interval", "0.2", "--base-url", server.url, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen,
    )


def test_a_batch_run_survives_a_restart_and_ingests_every_result_once(coco_dataset, emulator, oracle_for):
    server = emulator(oracle_for(coco_dataset), batch_timing=(2.0, 2.0))
    coco_dataset.persistent = True  # shared with the CLI's processes; deleted by the fixture

    first = _cli_annotate(coco_dataset, server)
    deadline = time.monotonic() + 120
    record = None
    while record is None and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
        coco_dataset.reload()  # the CLI's process writes the run record
        record = load_batch_job(coco_dataset, "boxes")
    assert record is not None and record["state"] == "pending", first.communicate()[1]
    first.kill()  # mid-way: submitted, still pending on the server
    first.communicate(timeout=30)
    assert server.batches.get(record["name"].split("/")[1]) is not None
    coco_dataset.reload()
    assert not coco_dataset.has_field("boxes") or coco_dataset.count("boxes") == 0

    second = _cli_annotate(coco_dataset, server)
    out, err = second.communicate(timeout=300)

    assert second.returncode == 0, err
    assert server.batches.created == 1, "the restarted run submitted a second job"
    assert f"batch job {record['name']}: RUNNING" in err or f"batch job {record['name']}: SUCCEEDED" in err
    dataset = coco_dataset
    dataset.reload()
    assert _labels(dataset, "boxes") == _labels(dataset, "ground_truth")  # every answer once, no duplicates
    assert set(dataset.values("boxes_status")) == {"ok"}
    summary = load_run_summary(dataset, "boxes")
    assert summary.done == len(dataset) and summary.labels == dataset.count("ground_truth.detections")
    assert load_batch_job(dataset, "boxes")["state"] == "ingested"

    third = _cli_annotate(coco_dataset, server)
    out, err = third.communicate(timeout=300)
    assert third.returncode == 0, err
    assert server.batches.created == 1 and f"{len(dataset)} skipped" in out
    dataset.reload()
    assert dataset.count("boxes.detections") == dataset.count("ground_truth.detections")
