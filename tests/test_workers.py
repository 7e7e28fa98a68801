"""workers=N: one run split over N local processes (spawned), against the emulator and a real database."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

import gemini_annotate
from gemini_annotate.emulator import Canned
from gemini_annotate.run_records import load_run_summary
from gemini_annotate.workers import _collect, _WorkerState, run_worker, worker_configs

TWO_BOXES = json.dumps({"boxes": [
    {"box_2d": [100, 100, 400, 400], "label": "cat"},
    {"box_2d": [500, 500, 900, 900], "label": "dog"},
]})


@pytest.fixture
def small_images(make_dataset, tmp_path):
    """A dataset of ``count`` distinct small JPEGs."""

    def build(count: int):
        rng = np.random.default_rng(11)
        paths = []
        for i in range(count):
            path = str(tmp_path / f"img_{i:04d}.jpg")
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path, quality=80)
            paths.append(path)
        dataset = make_dataset()
        dataset.add_samples([fo.Sample(filepath=p) for p in paths])
        return dataset

    return build


@pytest.mark.parametrize("config, expected", [
    (dict(workers=2, concurrency=33), [(0, 2, 17, None), (1, 2, 16, None)]),
    (dict(workers=3, concurrency=3, max_requests=10), [(0, 3, 1, 4), (1, 3, 1, 3), (2, 3, 1, 3)]),
    # a job that is shard 1 of 2 is split within that shard
    (dict(workers=2, shard=1, num_shards=2), [(1, 4, 4, None), (3, 4, 4, None)]),
])
def test_worker_configs_split_shard_concurrency_and_budget(config, expected):
    parts = worker_configs(gemini_annotate.AnnotateConfig(**config))
    assert [(p.shard, p.num_shards, p.concurrency, p.max_requests) for p in parts] == expected
    assert all(p.workers == 1 for p in parts)


@pytest.mark.parametrize("options, message", [
    (dict(workers=2, batch=True), "workers are for online runs"),
    (dict(workers=4, concurrency=2), "concurrency=2 is split between the 4 workers"),
])
def test_workers_refused_where_they_cannot_split(options, message):
    with pytest.raises(ValueError, match=message):
        gemini_annotate.AnnotateConfig(**options)


def test_two_workers_label_every_sample_once_with_one_run_record(small_images, emulator):
    dataset = small_images(40)
    server = emulator(Canned(TWO_BOXES), latency=0.02)
    snapshots = []

    summary = gemini_annotate.annotate(dataset, label_field="gemini", workers=2, concurrency=4,
                                       progress=snapshots.append)

    assert server.count() == 40  # each sample sent once, by one of the workers
    assert summary.done == 40 and summary.failed == 0 and summary.labels == 80
    assert summary.num_shards == 2 and summary.stopped is None
    assert dataset.count_values("gemini_status") == {"ok": 40}
    assert dataset.count("gemini.detections") == 80
    assert dataset.list_runs() == ["gemini"]
    stored = load_run_summary(dataset, "gemini")
    assert (stored.done, stored.labels, stored.num_shards) == (40, 80, 2)
    assert snapshots and snapshots[-1].total == 40 and snapshots[-1].finished == 40

    again = gemini_annotate.annotate(dataset, label_field="gemini", workers=2, progress=False)
    assert (again.selected, again.skipped, again.done) == (40, 40, 0) and server.count() == 40


def test_a_killed_worker_is_reported_and_the_run_resumes(small_images, emulator):
    dataset = small_images(30)
    emulator(Canned(TWO_BOXES), latency=0.3)
    killed = []

    def kill_one(progress):
        if not killed and progress.finished:
            victim = multiprocessing.active_children()[0]
            victim.kill()
            killed.append(victim.pid)

    with pytest.raises(gemini_annotate.AnnotationStopped, match=r"worker \d \(shard \d of 2\) failed: "
                                                                 r"the worker process ended with exit code -9"):
        gemini_annotate.annotate(dataset, label_field="gemini", workers=2, concurrency=2, progress=kill_one)

    assert killed
    resumed = gemini_annotate.annotate(dataset, label_field="gemini", workers=2, concurrency=8, progress=False)
    assert dataset.count_values("gemini_status") == {"ok": 30}
    assert resumed.skipped + resumed.done == 30


def test_a_worker_error_is_reported_with_its_reason():
    sent: list[tuple] = []
    config = gemini_annotate.AnnotateConfig(shard=1, num_shards=2)

    run_worker("no-such-dataset-for-workers", [], config.model_dump(), None, sent.append)

    [(kind, reason)] = sent
    assert kind == "error" and "no-such-dataset-for-workers" in reason


@pytest.mark.parametrize("worker_messages, go", [
    ([["ready"], ["ready"]], True),
    ([["ready"], ["error", "ends"]], True),  # a worker that failed setting up holds no one back
    ([["ready"], ["ends"]], True),  # nor one killed without a word
    ([["ready"], []], False),  # the other is still setting up
    ([[], []], False),
], ids=["both ready", "one failed", "one killed", "one still setting up", "none ready"])
def test_workers_start_sending_once_every_worker_is_ready_or_ended(worker_messages, go):
    pipes = [multiprocessing.Pipe(duplex=False) for _ in worker_messages]
    for (_, writer), messages in zip(pipes, worker_messages):
        for message in messages:
            if message == "ends":
                writer.close()
            else:
                writer.send((message, "reason" if message == "error" else None))
    readers = {reader: i for i, (reader, _) in enumerate(pipes)}
    states = [_WorkerState() for _ in pipes]
    started = threading.Event()

    _collect(readers, states, None, until=time.monotonic() + 0.5, go=started)

    assert started.is_set() == go
    for reader, writer in pipes:
        reader.close()
        writer.close()


def test_a_worker_is_ready_before_it_sends_its_first_request(small_images, emulator):
    dataset = small_images(6)
    server = emulator(Canned(TWO_BOXES))
    sent: list[tuple] = []
    seen_when_waiting = []
    config = gemini_annotate.AnnotateConfig(label_field="gemini", shard=0, num_shards=1)

    run_worker(dataset.name, [], config.model_dump(), None, sent.append,
               wait_for_others=lambda: seen_when_waiting.append((list(sent), server.count())))

    assert seen_when_waiting == [([("ready", None)], 0)]
    assert sent[-1][0] == "summary" and server.count() == 6


def test_interrupting_the_run_stops_every_worker(small_images, emulator):
    dataset = small_images(20)
    emulator(Canned(TWO_BOXES), latency=1.0)

    def interrupt(progress):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gemini_annotate.annotate(dataset, label_field="gemini", workers=2, concurrency=2, progress=interrupt)
    assert multiprocessing.active_children() == []


def test_the_annotate_form_asks_for_worker_processes(coco_dataset, installed_plugin):
    from gemini_annotate.operators import config_from_params
    from test_operators import _form

    assert _form(coco_dataset, "annotate_with_gemini", {})["workers"]["default"] == 1
    assert config_from_params({"task": "detect", "workers": 2}).workers == 2


def test_the_cli_takes_workers():
    from gemini_annotate.cli import build_parser
    from gemini_annotate.cli_commands import config_from_args

    args = build_parser().parse_args(["annotate", "some-dataset", "--workers", "3"])
    assert config_from_args(args).workers == 3
