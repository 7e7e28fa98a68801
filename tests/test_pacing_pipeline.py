"""Pacing through the real pipeline: the SDK against the emulator behind a hidden quota, a real database.

Gemini counts its quotas over a minute; these tests shorten the minute on
both sides (the emulator's ``window`` and :data:`gemini_annotate.pacing.QUOTA_WINDOW`)
to a few seconds, so that runs of a few seconds cross it. The pacer's safety
margin is widened with it: the jitter a loaded machine adds between the pacer
and the emulator does not shrink with the window (3 % of a real minute is
1.8 s of it; 3 % of 6 s would be 0.18 s).
"""

from __future__ import annotations

import datetime as dt
import json
import re

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

import gemini_annotate
from gemini_annotate import pacing
from gemini_annotate.emulator import Canned, Quota

REPLY = json.dumps({"boxes": [{"box_2d": [100, 100, 400, 400], "label": "cat"}]})


@pytest.fixture
def small_images(make_dataset, tmp_path):
    """A dataset of ``count`` distinct small images."""

    def build(count: int):
        rng = np.random.default_rng(5)
        paths = []
        for i in range(count):
            path = str(tmp_path / f"img_{i:04d}.jpg")
            Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
            paths.append(path)
        dataset = make_dataset()
        dataset.add_samples([fo.Sample(filepath=p) for p in paths])
        return dataset

    return build


@pytest.fixture
def short_minute(monkeypatch):
    """Sets the pacer's quota window (Gemini's minute) to ``seconds``, as the emulator's."""

    def shorten(seconds: float) -> float:
        monkeypatch.setattr(pacing, "QUOTA_WINDOW", seconds)
        monkeypatch.setattr(pacing, "SAFETY_MARGIN", 0.1)
        return seconds

    return shorten


def test_a_known_requests_per_minute_quota_is_never_answered_429(small_images, emulator, short_minute):
    window = short_minute(6.0)
    dataset = small_images(40)
    quota = Quota(Canned(REPLY), requests_per_window=30, window=window)
    emulator(quota)

    # 30 per 6 s is 300 per minute; unpaced, the 40 requests would leave within about a second
    summary = gemini_annotate.annotate(dataset, label_field="gemini", concurrency=16, requests_per_minute=300)

    assert quota.rejected == 0 and summary.throttled == 0
    assert summary.done == 40 and summary.requests == 40
    assert quota.usage()["requests_share"] >= 0.8  # ≈ 0.9 with the widened margin
    assert "0 answered 429" in summary.describe()


def test_an_unknown_quota_is_learned_after_one_refused_burst(small_images, emulator, short_minute):
    window = short_minute(3.0)
    dataset = small_images(45)
    quota = Quota(Canned(REPLY), requests_per_window=15, window=window)
    emulator(quota, latency=0.05)

    summary = gemini_annotate.annotate(dataset, label_field="gemini", concurrency=8)

    assert summary.done == 45 and summary.failed == 0
    # refused: the requests in flight when the quota first filled (at most the concurrency), one as
    # the burst leaves the window, and one now and then as the learned pace is probed upwards
    assert 1 <= quota.rejected <= 8 + 4 and summary.throttled == quota.rejected
    assert summary.requests == 45 + summary.retries
    assert quota.usage()["requests_share"] >= 0.8


def test_a_daily_quota_stops_the_run_resumably_and_says_when_it_resets(small_images, emulator):
    dataset = small_images(12)
    emulator(Quota(Canned(REPLY), requests_per_day=5))

    with pytest.raises(gemini_annotate.AnnotationStopped) as stopped:
        gemini_annotate.annotate(dataset, label_field="gemini", concurrency=1)

    message = stopped.value.summary.stopped
    assert "daily Gemini quota" in message and "midnight Pacific time" in message and "re-run" in message
    when = dt.datetime.strptime(re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d) UTC", message)[1], "%Y-%m-%d %H:%M")
    assert when.replace(tzinfo=dt.timezone.utc) == pacing.daily_quota_reset(dt.datetime.now(dt.timezone.utc))
    assert dataset.count_values("gemini_status") == {"ok": 5, None: 7}

    # the next day: a fresh quota, and the same job goes on where it stopped
    emulator(Quota(Canned(REPLY), requests_per_day=5000))
    summary = gemini_annotate.annotate(dataset, label_field="gemini", concurrency=1)
    assert (summary.done, summary.skipped) == (7, 5)


def test_each_shard_paces_to_its_share_of_the_quota(small_images, emulator):
    dataset = small_images(40)
    quota = Quota(Canned(REPLY), requests_per_window=10**6)
    emulator(quota)

    # 600 a minute split in two: this shard sends 5 a second, not 10
    summary = gemini_annotate.annotate(dataset, label_field="gemini", concurrency=16, requests_per_minute=600,
                                       shard=0, num_shards=2)

    times = [t for t, _ in quota.admitted]
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert 10 <= summary.requests < 40
    assert 3.0 <= rate <= 6.5, rate  # ≈ 4.9 (2 % below 5), where the whole quota would be 9.8
    assert summary.requests_per_minute <= 6.5 * 60



def test_the_annotate_form_takes_the_quotas(small_images, installed_plugin):
    import asyncio

    from fiftyone.operators.executor import ExecutionResult, resolve_type
    from fiftyone.operators.registry import OperatorRegistry

    from gemini_annotate.operators import PLUGIN_NAME, config_from_params

    dataset = small_images(2)
    params = {"requests_per_minute": 600, "tokens_per_minute": 250_000}
    request = {"dataset_name": dataset.name, "view": dataset.view()._serialize(), "params": params}
    resolved = asyncio.run(resolve_type(OperatorRegistry(), f"{PLUGIN_NAME}/annotate_with_gemini", request))
    assert not isinstance(resolved, ExecutionResult), resolved.error
    form = resolved.to_json()["type"]["properties"]

    assert {"requests_per_minute", "tokens_per_minute"} <= set(form)
    config = config_from_params(params, dataset)
    assert (config.requests_per_minute, config.tokens_per_minute) == (600, 250_000)


def test_shards_side_by_side_share_one_known_quota_without_a_429(small_images, emulator, short_minute):
    import concurrent.futures

    window = short_minute(6.0)
    dataset = small_images(40)
    quota = Quota(Canned(REPLY), requests_per_window=30, window=window)
    emulator(quota)
    # the run and its fields made first: in one process, two shards declaring them at once race
    # on the shared Dataset object (real shards are separate processes)
    gemini_annotate.annotate(dataset.limit(1), label_field="gemini")

    def shard(i: int):
        return gemini_annotate.annotate(dataset, label_field="gemini", concurrency=16, requests_per_minute=300,
                                        shard=i, num_shards=2)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        summaries = list(pool.map(shard, range(2)))

    assert sum(s.done for s in summaries) == 39
    assert quota.rejected == 0 and sum(s.throttled for s in summaries) == 0
