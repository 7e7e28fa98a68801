"""Scale and reliability: adaptive concurrency, budgets, faults, crashes, resume, shards.

Everything runs against the emulator through the real SDK and a real database;
the crash test kills a real ``gemini-annotate`` process, and the sharding test
runs two real ``fiftyone delegated launch`` workers.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

import gemini_annotate
from gemini_annotate.emulator import Canned, DailyQuotaExhausted, EmulatorFault, Faults, Scenario
from gemini_annotate.emulator.server import image_digest
from gemini_annotate.limits import AdaptiveConcurrency, Budget, BudgetExhausted, LimiterClosed
from gemini_annotate.run_records import load_run_summary
from gemini_annotate.selection import shard_of
from gemini_annotate.writer import BATCH_SIZE, MAX_AGE, LabelWriter

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
WORKTREE = os.path.dirname(TESTS_DIR)
THREE_BOXES = json.dumps({"boxes": [
    {"box_2d": [100, 100, 400, 400], "label": "cat"},
    {"box_2d": [500, 500, 900, 900], "label": "dog"},
    {"box_2d": [0, 0, 200, 300], "label": "bird"},
]})


def write_images(directory, count: int, size=(96, 64)) -> dict[str, str]:
    """Writes ``count`` distinct JPEGs; returns ``{path: the emulator's digest of the file}`` (sent as is)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    digests = {}
    for i in range(count):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        path = str(directory / f"img_{i:05d}.jpg")
        Image.fromarray(pixels).save(path, quality=85)
        with open(path, "rb") as f:
            digests[path] = image_digest(f.read())
    return digests


@pytest.fixture
def image_dataset(make_dataset, tmp_path):
    """A dataset of ``count`` distinct small images, and the digest of each sample's image."""

    def build(count: int, persistent: bool = False):
        digests = write_images(tmp_path / "images", count)
        dataset = make_dataset()
        dataset.persistent = persistent
        dataset.add_samples([fo.Sample(filepath=p) for p in digests])
        by_id = {sid: digests[path] for sid, path in zip(*dataset.values(["id", "filepath"]))}
        return dataset, by_id

    return build


@pytest.fixture
def writes_per_sample(monkeypatch):
    """Counts how often the writer wrote each sample id."""
    counts: dict[str, int] = {}
    original = LabelWriter.write

    def counting_write(self, batch):
        for result in batch:
            counts[result.sample_id] = counts.get(result.sample_id, 0) + 1
        return original(self, batch)

    monkeypatch.setattr(LabelWriter, "write", counting_write)
    return counts


def wait_until(condition, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


# adaptive concurrency and budgets


def test_limiter_halves_once_per_round_on_429_and_grows_back():
    async def scenario():
        limiter = AdaptiveConcurrency(16)
        slots = [limiter.slot() for _ in range(16)]
        for slot in slots:
            await slot.__aenter__()
        # a whole round of 429s from requests sent at the old limit: one decrease
        for slot in slots:
            slot.throttled()
            await slot.__aexit__(None, None, None)
        assert limiter.limit == 8 and limiter.decreases == 1
        # a 429 on a request sent after the decrease decreases again
        async with limiter.slot() as slot:
            slot.throttled()
        assert limiter.limit == 4
        # successes add about one per round of `limit` replies: 4 + 5 + 6 + 7 from 4 to 8
        successes = 0
        while limiter.limit < 8:
            async with limiter.slot():
                successes += 1
        assert 20 <= successes <= 24 and limiter.lowest == 4
        for _ in range(100):
            async with limiter.slot():
                pass
        assert limiter.limit == 16  # never above the configured concurrency

    asyncio.run(scenario())


def test_limiter_never_lets_more_than_the_limit_in_flight():
    async def scenario():
        limiter = AdaptiveConcurrency(3)
        peak = 0

        async def request():
            nonlocal peak
            async with limiter.slot():
                peak = max(peak, limiter.in_flight)
                await asyncio.sleep(0.001)

        await asyncio.gather(*(request() for _ in range(50)))
        return peak

    assert asyncio.run(scenario()) == 3


def test_closed_limiter_releases_waiters_with_an_error():
    async def scenario():
        limiter = AdaptiveConcurrency(1)
        holder = limiter.slot()
        await holder.__aenter__()
        waiting = asyncio.create_task(limiter.slot().__aenter__())
        await asyncio.sleep(0)
        limiter.close()
        with pytest.raises(LimiterClosed):
            await waiting
        with pytest.raises(LimiterClosed):
            await limiter.slot().__aenter__()

    asyncio.run(scenario())


@pytest.mark.parametrize("caps, spend, error", [
    (dict(max_requests=2), [(0, 0), (0, 0)], "request budget (2 requests)"),
    (dict(max_tokens=1000), [(400, 300), (400, 450)], "token budget (1,000 tokens)"),
    # in-flight estimates count before their replies report anything
    (dict(max_tokens=1000), [(600, None)], "token budget"),
])
def test_budget_refuses_the_request_that_would_go_over(caps, spend, error):
    budget = Budget(**caps)
    for estimate, reported in spend:
        budget.spend_request(estimate)
        if reported is not None:
            budget.settle(estimate, reported)
    with pytest.raises(BudgetExhausted, match=error.replace("(", r"\(").replace(")", r"\)")):
        budget.spend_request(500)


# sharding


def test_shards_partition_samples_evenly_and_the_database_agrees(image_dataset):
    from gemini_annotate.selection import count_selection, iter_pending

    dataset, _ = image_dataset(300)
    ids = set(dataset.values("id"))
    for num_shards in (2, 3, 7):
        seen: set[str] = set()
        for shard in range(num_shards):
            config = gemini_annotate.AnnotateConfig(shard=shard, num_shards=num_shards)
            members = {sid for page in iter_pending(dataset, config, page_size=64) for sid, _, _ in page}
            assert all(shard_of(sid, num_shards) == shard for sid in members)
            assert not members & seen
            assert count_selection(dataset, config) == (len(members), len(members))
            assert abs(len(members) - 300 / num_shards) <= 300 / num_shards * 0.25
            seen |= members
        assert seen == ids


def test_shard_must_be_below_the_shard_count():
    with pytest.raises(ValueError, match="shard must be between 0 and num_shards - 1 = 1"):
        gemini_annotate.AnnotateConfig(shard=2, num_shards=2)


# the pipeline under load and faults


def test_fault_mix_ends_every_sample_labeled_or_failed_with_reason_exactly_once(
        image_dataset, emulator, writes_per_sample):
    dataset, digests = image_dataset(300)
    faults = Faults(Canned(THREE_BOXES), rate_limit=0.2, server_error=0.05, slow=0.02, truncate=0.02,
                    retry_delay=0.2, slow_seconds=2.5, seed=3)
    server = emulator(faults, latency=0.01)

    summary = gemini_annotate.annotate(dataset, label_field="gemini", concurrency=16, timeout=1.0)

    assert wait_until(lambda: server.in_flight == 0, timeout=10)
    assert all(count > 0 for count in faults.injected.values()), faults.injected
    ids, statuses, reasons, labels = dataset.values(["id", "gemini_status", "gemini_reason", "gemini"])
    assert len(ids) == 300
    for status, reason, label in zip(statuses, reasons, labels):
        assert status in ("ok", "partial", "failed")
        if status == "failed":
            assert reason and label is None
        elif status == "partial":
            assert reason and 0 <= len(label.detections) < 3
        else:
            assert len(label.detections) == 3
    assert writes_per_sample == {sid: 1 for sid in ids}
    assert summary.done + summary.failed == 300 and summary.skipped == 0
    counts = dataset.count_values("gemini_status")
    assert counts.get("failed", 0) == summary.failed and counts.get("partial", 0) == summary.partial
    # truncated replies salvage what is complete or fail with the reason
    assert summary.partial + summary.failed >= 1
    # every injected 429, 5xx and timeout was retried, and the limiter backed off
    sent = server.requests_per_image()
    assert set(sent) == set(digests.values())
    assert sum(sent.values()) == summary.requests == 300 + summary.retries
    assert summary.retries >= faults.injected["rate_limit"] + faults.injected["server_error"]
    assert summary.lowest_concurrency < 16


def test_request_budget_stops_cleanly_and_a_rerun_finishes_the_rest(image_dataset, emulator):
    dataset, digests = image_dataset(40)
    server = emulator(Canned(THREE_BOXES), latency=0.02)

    with pytest.raises(gemini_annotate.AnnotationStopped, match="request budget") as stopped:
        gemini_annotate.annotate(dataset, label_field="gemini", concurrency=4, max_requests=10)

    assert stopped.value.summary.done == 10 and server.count() == 10
    assert dataset.count_values("gemini_status") == {"ok": 10, None: 30}
    assert "re-run" in stopped.value.summary.stopped

    summary = gemini_annotate.annotate(dataset, label_field="gemini", concurrency=4)

    assert summary.done == 30 and summary.skipped == 10
    assert server.requests_per_image() == {d: 1 for d in digests.values()}
    assert dataset.count("gemini.detections") == 3 * 40


@pytest.mark.timeout(120)
def test_a_fatal_error_stops_a_run_whose_queue_is_full(image_dataset, emulator):
    # more samples than the workers and their queue hold: the producer waits on a full queue
    dataset, _ = image_dataset(40)
    server = emulator(DailyQuotaExhausted(), latency=0.3)

    with pytest.raises(gemini_annotate.AnnotationStopped, match="daily Gemini quota"):
        gemini_annotate.annotate(dataset, label_field="gemini", concurrency=1)

    assert server.count() == 1
    assert not dataset.has_field("gemini_status")


def test_a_stopped_run_counts_only_the_requests_it_sent(image_dataset, emulator):
    dataset, _ = image_dataset(12)
    # requests wait for the one slot when the fatal answer closes the limiter
    server = emulator(DailyQuotaExhausted(), latency=0.3)

    with pytest.raises(gemini_annotate.AnnotationStopped) as stopped:
        gemini_annotate.annotate(dataset, label_field="gemini", concurrency=1)

    summary = stopped.value.summary
    assert server.count() == 1
    assert (summary.requests, summary.retries) == (1, 0)


def test_retry_failed_sends_only_the_samples_that_failed(image_dataset, emulator):
    dataset, digests = image_dataset(30)
    broken = set(list(digests.values())[::3])

    class FailSome(Scenario):
        def respond(self, request):
            if image_digest(request.images[0].data) in broken:
                return EmulatorFault(503, "The model is overloaded.")
            return Canned(THREE_BOXES).respond(request)

    server = emulator(FailSome())
    first = gemini_annotate.annotate(dataset, label_field="gemini", max_attempts=1)
    assert first.failed == len(broken) and first.done == 30 - len(broken)
    assert all("503" in r for r in dataset.match({"gemini_status": "failed"}).values("gemini_reason"))

    broken.clear()
    again = gemini_annotate.annotate(dataset, label_field="gemini", retry_failed=True)

    assert again.done == 10 and again.skipped == 20
    sent = server.requests_per_image()
    assert {d for d, n in sent.items() if n == 2} == set(list(digests.values())[::3])
    assert set(dataset.distinct("gemini_status")) == {"ok"}


def test_a_batch_of_results_is_one_database_write(image_dataset, emulator, monkeypatch):
    from pymongo.collection import Collection

    dataset, _ = image_dataset(600)
    emulator(Canned(THREE_BOXES))
    writes = []
    for method in ("bulk_write", "update_one", "update_many", "replace_one", "insert_one", "insert_many"):
        original = getattr(Collection, method)

        def counting(self, *args, _original=original, _method=method, **kwargs):
            if self.name == dataset._sample_collection_name:
                writes.append(_method)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Collection, method, counting)

    started = time.monotonic()
    gemini_annotate.annotate(dataset, label_field="gemini", concurrency=32)
    rate = 600 / (time.monotonic() - started)

    assert dataset.count("gemini.detections") == 3 * 600
    assert set(writes) == {"bulk_write"}
    # a write per BATCH_SIZE results or per MAX_AGE seconds: one per 100 samples from 50 samples/s up
    assert len(writes) <= math.ceil(600 / min(BATCH_SIZE, MAX_AGE * rate)) + 1, (len(writes), rate)


# crashes and resume


def test_sigkill_halfway_then_resume_labels_each_sample_once_and_resends_nothing_finished(
        image_dataset, emulator):
    dataset, digests = image_dataset(160, persistent=True)
    # 8 samples/s: the first batch is written by age (10 s) about halfway
    server = emulator(Canned(THREE_BOXES), latency=0.5)
    command = [sys.executable, "-m", "gemini_annotate.cli", "annotate", dataset.name, "--label-field", "gemini",
               "--concurrency", "4", "--base-url", server.url, "--quiet"]
    written = dataset.mongo([{"$match": {"gemini_status": {"$ne": None}}}])

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: written.count() > 0, timeout=60), "no batch was written"
        time.sleep(1.0)  # a partly filled batch is lost with the process
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        output = process.communicate()[0].decode(errors="replace")
    assert process.returncode == -signal.SIGKILL, output
    assert wait_until(lambda: server.in_flight == 0, timeout=10)

    dataset.reload()
    finished = {sid: labels for sid, labels in zip(*written.values(["id", "gemini.detections.id"]))}
    sent_before = server.requests_per_image()
    assert 0 < len(finished) < 160
    assert len(sent_before) > len(finished)  # some answers were lost unwritten

    summary = gemini_annotate.annotate(dataset, label_field="gemini", concurrency=16)

    assert summary.skipped == len(finished) and summary.done == 160 - len(finished)
    sent_after = server.requests_per_image()
    ids, statuses, label_ids = dataset.values(["id", "gemini_status", "gemini.detections.id"])
    for sid, status, labels in zip(ids, statuses, label_ids):
        digest = digests[sid]
        assert status == "ok" and len(labels) == 3
        if sid in finished:
            assert labels == finished[sid]  # untouched
            assert sent_after[digest] == sent_before[digest] == 1  # never sent again
        else:
            assert sent_after[digest] == sent_before.get(digest, 0) + 1
    assert load_run_summary(dataset, "gemini").done == 160 - len(finished)


# scale-out with FiftyOne's delegated executor


def test_two_delegated_workers_run_disjoint_shards_that_add_up(tmp_path, emulator):
    from fiftyone.core.odm import get_db_client

    digests = write_images(tmp_path / "images", 80)
    server = emulator(Canned(THREE_BOXES), latency=0.1)
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    os.symlink(WORKTREE, plugins_dir / "gemini-annotate")
    database = f"gemini_annotate_shards_{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, FIFTYONE_DATABASE_NAME=database, FIFTYONE_PLUGINS_DIR=str(plugins_dir))
    name = f"shards-{uuid.uuid4().hex[:6]}"

    def driver(*args):
        out = subprocess.run([sys.executable, os.path.join(TESTS_DIR, "delegated_driver.py"), *args],
                             env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.split("RESULT ", 1)[1])

    fiftyone_cli = os.path.join(os.path.dirname(sys.executable), "fiftyone")
    ops = get_db_client()[database]["delegated_ops"]
    workers = []
    try:
        queued = driver("setup", name, str(tmp_path / "images"), server.url, "2")["ops"]
        assert len(queued) == 2
        for i in range(2):
            log = open(tmp_path / f"worker{i}.log", "w")
            workers.append(subprocess.Popen([fiftyone_cli, "delegated", "launch"], env=env,
                                            stdout=log, stderr=subprocess.STDOUT))
        done = wait_until(lambda: ops.count_documents({"run_state": {"$in": ["completed", "failed"]}}) == 2,
                          timeout=240, interval=0.5)
        logs = "\n".join((tmp_path / f"worker{i}.log").read_text()[-2000:] for i in range(2))
        assert done, logs
        states = list(ops.find({}, {"run_state": 1, "started_at": 1, "completed_at": 1, "result": 1}))
        assert [s["run_state"] for s in states] == ["completed", "completed"], logs
        report = driver("inspect", name)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGINT)
        for worker in workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        get_db_client().drop_database(database)

    # the two operations ran at the same time, one per worker
    (a, b) = states
    assert a["started_at"] < b["completed_at"] and b["started_at"] < a["completed_at"]
    # disjoint shards covering every sample, each sample sent and labeled once
    shard_results = [s["result"]["result"] for s in states]
    assert sorted(r["shard"] for r in shard_results) == [0, 1]
    assert sum(r["done"] for r in shard_results) == 80 and all(r["done"] > 0 for r in shard_results)
    assert server.requests_per_image() == {d: 1 for d in digests.values()}
    assert all(s["status"] == "ok" and len(s["label_ids"]) == 3 for s in report["samples"])
    # the run record adds the shards up
    assert report["runs"] == ["gemini"]
    total = report["summary"]
    assert total["done"] == 80 and total["requests"] == 80 and total["num_shards"] == 2 and total["shard"] is None
