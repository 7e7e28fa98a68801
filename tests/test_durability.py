"""Durability and cost that follows the work: flush by age, resume of overwrite runs, budgets
shared by shards, no whole-dataset scan at the end of a run, streaming estimates.

Everything runs against the emulator through the real SDK and a real database.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time

import fiftyone as fo
import pytest
from test_scale import THREE_BOXES, write_images

import gemini_annotate
from gemini_annotate.budget_store import SharedBudget, budget_for, reset_shared_budget
from gemini_annotate.emulator import Canned
from gemini_annotate.estimate import estimate_run
from gemini_annotate.limits import Budget, BudgetExhausted
from gemini_annotate.results import SampleResult
from gemini_annotate.run_records import clear_shard_summaries
from gemini_annotate.vocabulary import attempt_field
from gemini_annotate.writer import BATCH_SIZE, MAX_AGE, LabelWriter


@pytest.fixture
def image_dataset(make_dataset, tmp_path):
    """A dataset of ``count`` distinct small images, and the digest of each sample's image."""

    def build(count: int):
        digests = write_images(tmp_path / "images", count)
        dataset = make_dataset()
        dataset.add_samples([fo.Sample(filepath=p) for p in digests])
        return dataset, {sid: digests[path] for sid, path in zip(*dataset.values(["id", "filepath"]))}

    return build


# flush by age


def test_writes_stay_at_most_one_per_100_samples_from_50_answers_per_second():
    for rate in (50, 80, 200, 1000):
        assert min(BATCH_SIZE, MAX_AGE * rate) >= 100, rate
    assert MAX_AGE <= 2.0


@pytest.mark.parametrize("results, wait, due", [
    (1, 0.0, False),           # young and few: keep buffering
    (1, 0.35, True),           # the oldest result reached the age
    (4, 0.0, True),            # the count
    (0, 0.35, False),          # nothing to write
])
def test_a_flush_is_due_by_age_of_the_oldest_result_or_by_count(make_dataset, results, wait, due):
    writer = LabelWriter(make_dataset(), gemini_annotate.AnnotateConfig(), batch_size=4, max_age=0.3)
    for i in range(results):
        writer.add(SampleResult(sample_id=f"{i:024x}", status="ok", label=None))
    time.sleep(wait)
    assert writer.due() is due


def test_slow_replies_are_written_every_max_age_not_only_at_the_end(image_dataset, emulator, monkeypatch):
    dataset, _ = image_dataset(12)
    emulator(Canned(THREE_BOXES), latency=0.4)  # about 2.5 answers/s: the count is never reached
    writes: list[tuple[float, int]] = []
    original = LabelWriter.write

    def timed_write(self, batch):
        if batch:
            writes.append((time.monotonic(), len(batch)))
        return original(self, batch)

    monkeypatch.setattr(LabelWriter, "write", timed_write)
    gemini_annotate.annotate(dataset, label_field="gemini", concurrency=1)

    assert sum(n for _, n in writes) == 12
    assert len(writes) >= 2  # written while the run went on
    gaps = [later - earlier for (earlier, _), (later, _) in zip(writes, writes[1:])]
    assert all(gap <= MAX_AGE + 1.0 for gap in gaps[:-1]), gaps


# resume of overwrite and replace_unreviewed runs


@pytest.mark.parametrize("policy", ["overwrite", "replace_unreviewed"])
def test_a_stopped_overwrite_resumes_without_resending_what_it_wrote_and_a_finished_one_starts_over(
        image_dataset, emulator, policy):
    dataset, digests = image_dataset(30)
    server = emulator(Canned(THREE_BOXES), latency=0.01)
    gemini_annotate.annotate(dataset, label_field="gemini", concurrency=4)
    first_labels = dict(zip(*dataset.values(["id", "gemini.detections.id"])))

    with pytest.raises(gemini_annotate.AnnotationStopped, match="request budget"):
        gemini_annotate.annotate(dataset, label_field="gemini", if_labeled=policy, concurrency=2, max_requests=10)
    stamped = set(dataset.exists(attempt_field("gemini")).values("id"))
    assert len(stamped) == 10
    left = estimate_run(dataset, gemini_annotate.AnnotateConfig(label_field="gemini", if_labeled=policy))
    assert (left.to_send, left.skipped) == (20, 10)

    resumed = gemini_annotate.annotate(dataset, label_field="gemini", if_labeled=policy, concurrency=4)

    assert (resumed.done, resumed.skipped) == (20, 10)
    assert server.requests_per_image() == {d: 2 for d in digests.values()}  # the first run, then this one
    ids, labels = dataset.values(["id", "gemini.detections.id"])
    assert all(len(new) == 3 and new != first_labels[sid] for sid, new in zip(ids, labels))

    again = gemini_annotate.annotate(dataset, label_field="gemini", if_labeled=policy, concurrency=4)

    assert (again.done, again.skipped) == (30, 0)
    assert server.requests_per_image() == {d: 3 for d in digests.values()}


def test_a_skip_run_stamps_nothing(image_dataset, emulator):
    dataset, _ = image_dataset(5)
    emulator(Canned(THREE_BOXES))
    gemini_annotate.annotate(dataset, label_field="gemini")
    assert not dataset.has_field(attempt_field("gemini"))


# budgets shared by the shards of a run


@pytest.mark.parametrize("caps, spend, error", [
    (dict(max_requests=2), [(0, 0), (0, 0)], "request budget (2 requests)"),
    (dict(max_tokens=1000), [(400, 300), (400, 450)], "token budget (1,000 tokens)"),
    (dict(max_tokens=1000), [(600, None)], "token budget"),
])
def test_a_shared_budget_counts_what_every_shard_spends(make_dataset, caps, spend, error):
    dataset = make_dataset()
    reset_shared_budget(dataset, "run")
    shards = [SharedBudget(dataset, "run", **caps), SharedBudget(dataset, "run", **caps)]
    for i, (estimate, reported) in enumerate(spend):
        shard = shards[i % 2]  # the spending alternates between the shards
        shard.spend_request(estimate)
        if reported is not None:
            shard.settle(estimate, reported)
    for shard in shards:
        with pytest.raises(BudgetExhausted, match=error.replace("(", r"\(").replace(")", r"\)")):
            shard.spend_request(500)


def test_only_a_sharded_run_with_a_cap_shares_its_budget(make_dataset):
    dataset = make_dataset()
    cases = [(dict(), Budget), (dict(max_requests=5), Budget), (dict(num_shards=2), Budget),
             (dict(num_shards=2, max_requests=5), SharedBudget), (dict(num_shards=2, max_tokens=9), SharedBudget)]
    for options, kind in cases:
        assert type(budget_for(dataset, gemini_annotate.AnnotateConfig(**options))) is kind, options


def test_two_shard_processes_running_at_once_send_the_run_budget_in_all(image_dataset, emulator):
    dataset, _ = image_dataset(40)
    dataset.persistent = True  # the shard processes open it by name; make_dataset deletes it
    server = emulator(Canned(THREE_BOXES), latency=0.05)
    clear_shard_summaries(dataset, "gemini")  # as the run is split

    def shard(number: int, max_requests: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "gemini_annotate.cli", "annotate", dataset.name, "--label-field", "gemini",
             "--concurrency", "3", "--max-requests", str(max_requests), "--shard", str(number),
             "--num-shards", "2", "--base-url", server.url, "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    processes = [shard(0, 12), shard(1, 12)]
    outputs = [process.communicate(timeout=120)[0] for process in processes]

    assert server.count() == 12, outputs
    assert all(p.returncode == 2 and "request budget (12 requests)" in out for p, out in zip(processes, outputs))
    dataset.reload()
    assert dataset.count_values("gemini_status").get("ok") == 12

    # both shards ended: running the run again goes on with a budget of its own, as a lone run does
    again = shard(0, 100)
    again.communicate(timeout=120)
    assert again.returncode == 0 and server.count() > 12


def test_a_shared_budget_starts_over_only_once_every_shard_has_ended(make_dataset):
    dataset = make_dataset()
    clear_shard_summaries(dataset, "run")

    def shard(number: int) -> SharedBudget:
        return SharedBudget(dataset, "run", max_requests=3, shard=number, num_shards=2)

    first = shard(0)
    first.spend_request()
    first.spend_request()
    first.end()
    second = shard(1)  # shard 1 starts after shard 0 ended: the same run, the same budget
    second.spend_request()
    with pytest.raises(BudgetExhausted):
        second.spend_request()
    second.end()

    again = shard(0)  # every shard ended: a new run of the key
    for _ in range(3):
        again.spend_request()
    with pytest.raises(BudgetExhausted):
        again.spend_request()


# no whole-dataset scan at the end of a run


def test_a_run_declares_its_label_attributes_without_scanning_the_dataset(coco_dataset, emulator, monkeypatch):
    emulator(Canned(THREE_BOXES))

    def no_scan(*args, **kwargs):
        raise AssertionError("add_dynamic_sample_fields scans the whole dataset")

    monkeypatch.setattr(fo.Dataset, "add_dynamic_sample_fields", no_scan)
    gemini_annotate.annotate(coco_dataset, label_field="gemini", confidence=True)

    schema = fo.load_dataset(coco_dataset.name).get_field_schema(flat=True)
    for attribute in ("review", "gemini_model", "gemini_run"):
        assert isinstance(schema[f"gemini.detections.{attribute}"], fo.StringField), attribute
    assert "gemini_status" in coco_dataset.list_indexes()


# estimates that stream


def test_an_estimate_over_a_large_view_counts_in_the_database_and_reads_a_bounded_sample(make_dataset, monkeypatch):
    import random
    from datetime import datetime, timezone

    from bson import ObjectId

    from gemini_annotate import estimate
    from gemini_annotate.config import AnnotateConfig

    dataset = make_dataset()
    dataset.add_sample(fo.Sample(filepath="/nowhere/first.jpg", metadata=fo.ImageMetadata(width=640, height=480)))
    sizes = [(640, 480), (1920, 1080), (300, 4000), None]  # None: no metadata
    now = datetime.now(timezone.utc)
    documents = []
    for i in range(20_000):
        size = sizes[i % len(sizes)]
        metadata = None if size is None else {"_cls": "ImageMetadata", "width": size[0], "height": size[1]}
        documents.append({"_id": ObjectId(), "filepath": f"/nowhere/{i}.jpg", "tags": [], "_media_type": "image",
                          "_rand": random.random(), "_dataset_id": dataset._doc.id, "metadata": metadata,
                          "created_at": now, "last_modified_at": now})
    dataset._sample_collection.insert_many(documents)
    headers_read: list[str] = []
    monkeypatch.setattr(estimate, "header_size", lambda path: headers_read.append(path) or (800, 600))
    largest = []
    original_values = fo.core.collections.SampleCollection.values

    def measured_values(self, *args, **kwargs):
        result = original_values(self, *args, **kwargs)
        largest.append(len(result[0]) if isinstance(result, tuple) else len(result))
        return result

    monkeypatch.setattr(fo.core.collections.SampleCollection, "values", measured_values)
    config = AnnotateConfig(label_field="gemini")
    preview = estimate.preview_run(dataset.view(), config, header_budget=64)

    counts = {(640, 480): 5001, (1920, 1080): 5000, (300, 4000): 5000}
    known = sum(estimate.image_tokens_as_sent(w, h, config) * n for (w, h), n in counts.items())
    known += estimate.image_tokens_as_sent(800, 600, config) * 64
    expected = known + math.ceil(known / 15_065 * (5000 - 64))  # the rest extrapolated from the mean
    assert (preview.samples, preview.to_send, preview.skipped, preview.sized) == (20_001, 20_001, 0, 15_065)
    assert preview.image_tokens == expected
    assert len(headers_read) == 64 and max(largest, default=0) <= 64
    assert "sizes of 4936 image(s) extrapolated" in preview.describe()


# a bounded upload cache


def test_the_upload_cache_keeps_a_bounded_number_of_uris_and_none_of_its_lookups(make_dataset, emulator, tmp_path):
    import asyncio

    from gemini_annotate.gemini import GeminiClient
    from gemini_annotate.uploads import UploadCache

    server = emulator(Canned(THREE_BOXES))
    images = [open(path, "rb").read() for path in write_images(tmp_path / "uploads", 8)]
    cache = UploadCache(make_dataset(), server.url, memo_size=3)

    async def upload_all() -> list[str]:
        async with GeminiClient(model="gemini-3-flash-preview", base_url=server.url) as client:
            uris = await asyncio.gather(*(cache.uri_for(client, data, "image/jpeg") for data in images + images[:2]))
            again = await cache.uri_for(client, images[-1], "image/jpeg")  # still in memory: no lookup
            return [*uris, again]

    uris = asyncio.run(upload_all())

    assert cache.uploaded == server.files.uploads == 8  # concurrent requests for one image share its upload
    assert uris[8:10] == uris[:2] and uris[-1] == uris[7]
    assert len(cache._known) == 3 and not cache._in_flight
