"""The pacer and the emulator's quota, on a fake clock: known quotas, learned ones, the daily reset.

The pacer (:mod:`gemini_annotate.pacing`) is driven against the emulator's own
:class:`~gemini_annotate.emulator.Quota`, both on one fake clock, so minutes
pass in microseconds and every figure is exact.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Optional

import pytest

from gemini_annotate.emulator import Canned, EmulatorRequest, Quota
from gemini_annotate.emulator.quota import REQUESTS_PER_DAY_ID
from gemini_annotate.emulator.wire import error_body
from gemini_annotate.gemini import _status_error
from gemini_annotate.pacing import Pacer, TokenBucket, daily_quota_reset, quota_kind, share_of_quota

UTC = dt.timezone.utc


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


def request(prompt_chars: int = 40) -> EmulatorRequest:
    return EmulatorRequest(api="generate_content", model="gemini-2.5-flash", prompt="x" * prompt_chars)


def drive(pacer: Pacer, quota: Quota, clock: FakeClock, count: int, *, latency: float = 0.0,
          estimate: float = 0.0, prompt_chars: int = 40) -> list[float]:
    """Sends ``count`` requests one after another through the pacer to the quota; returns the send times."""

    async def run() -> list[float]:
        times = []
        for _ in range(count):
            while True:
                sent_at = await pacer.wait(estimate)
                times.append(sent_at)
                answer = quota.respond(request(prompt_chars))
                clock.now += latency
                if hasattr(answer, "status"):  # a 429
                    error = _status_error(answer.status, error_body(answer.status, answer.message,
                                                                    list(answer.details)), {}, "gemini-2.5-flash")
                    pacer.throttled(sent_at, estimate, error.retry_after, error.quota_id)
                    await clock.sleep(error.retry_after or 0.0)
                    continue
                pacer.answered(sent_at, estimate, quota.admitted[-1][1] or None)
                break
        return times

    return asyncio.run(run())


def most_in_any_window(times: list[float], window: float) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_a_known_request_quota_is_never_exceeded_and_nearly_used():
    clock = FakeClock()
    quota = Quota(Canned("{}"), requests_per_window=1200, clock=clock)
    pacer = Pacer(requests_per_minute=1200, clock=clock, sleep=clock.sleep)

    times = drive(pacer, quota, clock, 3000)

    assert quota.rejected == 0
    assert most_in_any_window(times, 60.0) <= 1200
    assert quota.usage()["requests_share"] >= 0.96


def test_a_known_token_quota_is_paced_by_reported_tokens_when_estimates_are_low():
    clock = FakeClock()
    quota = Quota(Canned("{}"), tokens_per_window=30_000, clock=clock)
    pacer = Pacer(tokens_per_minute=30_000, clock=clock, sleep=clock.sleep)

    # each request costs 100 tokens; the client guesses 50 until the replies correct it
    drive(pacer, quota, clock, 1000, estimate=50, prompt_chars=400)

    assert quota.rejected == 0
    assert quota.usage()["tokens_share"] >= 0.95


def test_an_unknown_quota_is_learned_from_the_first_429_and_then_held():
    clock = FakeClock()
    quota = Quota(Canned("{}"), requests_per_window=600, clock=clock)
    pacer = Pacer(clock=clock, sleep=clock.sleep)

    drive(pacer, quota, clock, 3000, latency=0.001)

    assert pacer.pace() == pytest.approx(600, rel=0.1)
    # the first minute's burst is refused once; later the cubic probe finds the quota again at times
    assert quota.rejected <= 0.01 * 3000
    assert quota.usage()["requests_share"] >= 0.95


def test_an_unknown_token_quota_is_learned_like_a_request_quota():
    clock = FakeClock()
    quota = Quota(Canned("{}"), tokens_per_window=20_000, clock=clock)
    pacer = Pacer(clock=clock, sleep=clock.sleep)

    drive(pacer, quota, clock, 1500, latency=0.001, estimate=100, prompt_chars=400)

    assert pacer.pace("tokens") == pytest.approx(20_000, rel=0.1)
    assert quota.rejected <= 0.02 * 1500
    assert quota.usage()["tokens_share"] >= 0.9


def test_a_429_that_names_no_quota_leaves_the_pace_alone():
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)

    async def send_one() -> float:
        return await pacer.wait()

    sent_at = asyncio.run(send_one())
    pacer.throttled(sent_at, 0, retry_after=30.0, quota_id=None)

    assert pacer.pace() is None and pacer.throttled_count == 1
    assert asyncio.run(send_one()) == sent_at  # no hold either: that request's own retry waits


def test_a_quota_429_holds_every_request_until_the_retry_delay():
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)

    async def send_one() -> float:
        return await pacer.wait()

    sent_at = asyncio.run(send_one())
    pacer.answered(sent_at, 0, None)
    pacer.throttled(sent_at, 0, retry_after=12.5, quota_id="GenerateRequestsPerMinutePerProjectPerModel")

    assert asyncio.run(send_one()) == pytest.approx(sent_at + 12.5)


def test_a_429_as_the_first_burst_leaves_the_window_does_not_lower_the_learned_quota():
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    start = clock.now
    for i in range(10):
        clock.now = start + 0.1 * i
        pacer.answered(clock.now, 0, None)
    pacer.throttled(start + 1.0, 0, retry_after=59.0, quota_id="GenerateRequestsPerMinutePerProjectPerModel")
    assert pacer.pace() == pytest.approx(10)

    # Gemini's clock saw the first request arrive a little after it left: it is still in its window
    clock.now = start + 60.05
    pacer.throttled(start + 60.0, 0, retry_after=0.05, quota_id="GenerateRequestsPerMinutePerProjectPerModel")

    assert pacer.pace() == pytest.approx(10)


def test_a_token_bucket_goes_into_debt_for_a_large_request_and_the_next_one_waits():
    bucket = TokenBucket(rate=10.0, capacity=5.0, now=0.0)
    assert bucket.delay(50.0, now=0.0) == 0.0
    bucket.take(50.0, now=0.0)
    assert bucket.delay(1.0, now=0.0) == pytest.approx(4.6)


@pytest.mark.parametrize("now, reset", [
    (dt.datetime(2026, 12, 1, 3, 0, tzinfo=UTC), dt.datetime(2026, 12, 1, 8, 0, tzinfo=UTC)),  # PST
    (dt.datetime(2026, 12, 1, 8, 0, tzinfo=UTC), dt.datetime(2026, 12, 2, 8, 0, tzinfo=UTC)),
    (dt.datetime(2026, 7, 1, 6, 59, tzinfo=UTC), dt.datetime(2026, 7, 1, 7, 0, tzinfo=UTC)),  # PDT
    (dt.datetime(2026, 3, 8, 5, 0, tzinfo=UTC), dt.datetime(2026, 3, 8, 8, 0, tzinfo=UTC)),  # the day PDT starts
])
def test_the_daily_quota_resets_at_midnight_pacific_time(now, reset):
    assert daily_quota_reset(now) == reset


@pytest.mark.parametrize("per_minute, shards, share", [(1200, 1, 1200), (1200, 4, 300), (1000, 3, 1000 / 3),
                                                       (None, 2, None)])
def test_each_shard_gets_its_share_of_a_known_quota(per_minute, shards, share):
    assert share_of_quota(per_minute, shards) == share


@pytest.mark.parametrize("quota_id, kind", [
    ("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "requests"),
    ("GenerateContentInputTokensPerModelPerMinute", "tokens"),
    ("GenerateRequestsPerDayPerProjectPerModel", None),
    (None, None),
])
def test_a_429_says_which_quota_it_is(quota_id: Optional[str], kind: Optional[str]):
    assert quota_kind(quota_id) == kind


# the emulator's quota


def test_the_emulator_refuses_past_its_window_and_says_when_there_is_room():
    clock = FakeClock()
    quota = Quota(Canned("{}"), requests_per_window=3, window=10.0, clock=clock)
    for step in (0.0, 1.0, 1.0):
        clock.now += step
        assert not hasattr(quota.respond(request()), "status")
    clock.now += 1.0
    fault = quota.respond(request())

    error = _status_error(fault.status, error_body(fault.status, fault.message, list(fault.details)), {},
                          "gemini-2.5-flash")
    assert (error.status, error.retryable, error.fatal) == (429, True, False)
    assert error.quota_id == "GenerateRequestsPerMinutePerProjectPerModel"
    assert error.retry_after == pytest.approx(7.0)  # the first request leaves the window 10 s after it came
    clock.now += 7.0
    assert not hasattr(quota.respond(request()), "status")  # a sliding window: one place is free again


def test_the_emulator_daily_quota_is_fatal_and_asks_to_come_back_at_pacific_midnight():
    clock = FakeClock()
    wall = dt.datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
    quota = Quota(Canned("{}"), requests_per_day=2, clock=clock, wall_clock=lambda: wall)
    quota.respond(request()), quota.respond(request())
    fault = quota.respond(request())

    error = _status_error(fault.status, error_body(fault.status, fault.message, list(fault.details)), {},
                          "gemini-2.5-flash")
    assert fault.details[0]["violations"][0]["quotaId"] == REQUESTS_PER_DAY_ID
    assert error.fatal and error.reason == "QUOTA_EXHAUSTED"
    assert error.retry_after == pytest.approx(12 * 3600)


def test_the_quota_options_reach_the_configuration_from_the_command_line():
    from gemini_annotate.cli import build_parser
    from gemini_annotate.cli_commands import config_from_args

    args = build_parser().parse_args(["annotate", "my-dataset", "--requests-per-minute", "600",
                                      "--tokens-per-minute", "200000", "--num-shards", "2"])
    config = config_from_args(args)

    assert (config.requests_per_minute, config.tokens_per_minute, config.num_shards) == (600, 200_000, 2)
    assert share_of_quota(config.requests_per_minute, config.num_shards) == 300
