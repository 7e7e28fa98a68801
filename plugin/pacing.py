"""Pacing requests to Gemini's per-minute quotas: token buckets, and quotas learned from 429s.

Gemini limits each project and model by requests per minute (RPM), input
tokens per minute (TPM) and requests per day (RPD). A bound on requests in
flight cannot hold a *rate*, so requests leave through a :class:`Pacer`:

- **Known quota** (``requests_per_minute`` / ``tokens_per_minute``, the user's
  tier): a token bucket per quota, filled at :data:`SAFETY_MARGIN` below the
  limit and holding at most :data:`BURST_SHARE` of a minute's quota, so no
  minute, wherever it starts, holds more than the quota (a sliding minute
  holds at most ``1 - SAFETY_MARGIN + BURST_SHARE`` of it). Tokens are estimated
  before sending; each reply's reported input tokens correct the bucket, and
  their ratio to the estimates scales later estimates.
- **Unknown quota**: the pacer learns it. A 429 whose ``QuotaFailure`` names a
  per-minute quota says the quota is full *now*; the requests (or input
  tokens) this process had admitted in the last :data:`QUOTA_WINDOW` seconds —
  its measured send rate over the quota's own window — are then the quota, the
  way the AWS SDKs' adaptive mode measures the send rate at a throttle. Sends
  hold until the ``RetryInfo`` delay has passed (the quota has room again),
  then go on at the learned pace. Like CUBIC, the pace then grows slowly near
  the learned value and faster later (``1 + PROBE_GAIN·(t/W)³``), so a raised
  quota is found again; the next 429 learns it anew. A run therefore settles on
  the quota instead of halving and regrowing around it. No slow start: before
  the first 429 nothing bounds a minute's count but the quota itself, and the
  overshoot is the requests in flight when it answers, which ``concurrency``
  bounds.

Google's client-side adaptive throttling (the SRE book's ``requests − K ×
accepts``) rejects requests locally once the backend refuses many; for a quota
that refills every minute, waiting for the refill wastes nothing, so the pacer
waits instead of rejecting, and needs a single 429 rather than a ratio of them.

A 429 that names no quota (capacity, overload) teaches nothing about a rate;
the in-flight cap reacts to it (:class:`~gemini_annotate.limits.AdaptiveConcurrency`).
The daily quota stops the run; :func:`daily_quota_reset` says when it comes back.

Everything lives on one event loop: no locks but an :class:`asyncio.Lock` that
keeps the line in order. Time comes from an injected clock, so tests can use a
fake one.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import time
import zoneinfo
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional

QUOTA_WINDOW = 60.0
"""Seconds over which Gemini counts its per-minute quotas."""

SAFETY_MARGIN = 0.02
"""A quota is paced this share below its limit: room for the jitter between our clock and Gemini's
(with :data:`BURST_SHARE`, 0.6 s of a minute)."""

BURST_SHARE = 0.01
"""The most a bucket holds, as a share of a window's quota (at least one request)."""

PROBE_GAIN = 0.1
"""How fast a learned quota is probed upwards: +10 % one window after it was learned (cubic in time)."""

PACIFIC = zoneinfo.ZoneInfo("America/Los_Angeles")
"""Gemini's per-day quotas reset at midnight in this time zone."""

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """A token bucket: ``rate`` per second, holding at most ``capacity``.

    A request of ``amount`` may leave once the bucket holds ``min(amount,
    capacity)``; taking it may leave the bucket in debt (a request larger than
    the bucket still goes, and later ones wait for the debt to refill).

    >>> bucket = TokenBucket(rate=2.0, capacity=1.0, now=0.0)
    >>> bucket.take(1.0, now=0.0); bucket.delay(1.0, now=0.0)
    0.5
    """

    def __init__(self, rate: float, capacity: float, now: float):
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"need a positive rate and capacity, got {rate} and {capacity}")
        self.rate = rate
        self.capacity = capacity
        self.level = capacity
        self._updated = now

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + max(0.0, now - self._updated) * self.rate)
        self._updated = max(self._updated, now)

    def delay(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` may leave (0 when it may now)."""
        self._refill(now)
        return max(0.0, (min(amount, self.capacity) - self.level) / self.rate)

    def take(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level -= amount

    def correct(self, amount: float, now: float) -> None:
        """Takes ``amount`` more (or gives ``-amount`` back): a reply reported what the estimate missed."""
        self._refill(now)
        self.level = min(self.capacity, self.level - amount)

    def set_rate(self, rate: float, now: float) -> None:
        self._refill(now)
        self.rate = rate


def share_of_quota(per_minute: Optional[int], num_shards: int) -> Optional[float]:
    """The part of a per-minute quota one of ``num_shards`` parts of a run may use.

    >>> share_of_quota(1200, 4), share_of_quota(None, 4)
    (300.0, None)
    """
    return None if per_minute is None else per_minute / max(1, num_shards)


def quota_kind(quota_id: Optional[str]) -> Optional[str]:
    """``"tokens"``, ``"requests"`` or ``None``: which per-minute quota a 429's quota id names.

    >>> quota_kind("GenerateContentInputTokensPerModelPerMinute-FreeTier")
    'tokens'
    >>> quota_kind("GenerateRequestsPerMinutePerProjectPerModel"), quota_kind(None)
    ('requests', None)
    """
    if not quota_id or "PerDay" in quota_id:
        return None
    return "tokens" if "Token" in quota_id else "requests"


@dataclass
class _Quota:
    """One per-minute quota (requests or input tokens) and its bucket."""

    configured: Optional[float]  # per window, the user's (already this part's share)
    learned: Optional[float] = None  # per window, from the last quota 429
    learned_at: float = 0.0
    learned_when: float = float("-inf")  # when the last 429 taught it
    bucket: Optional[TokenBucket] = None

    def limit(self, now: float, window: float) -> Optional[float]:
        """The quota paced to now: the configured one, or the learned one probed upwards."""
        learned = None
        if self.learned is not None:
            probe = max(0.0, now - self.learned_at) / window
            learned = self.learned * (1.0 + PROBE_GAIN * probe ** 3)
        if self.configured is None:
            return learned
        return self.configured if learned is None else min(self.configured, learned)

    def sync(self, now: float, window: float) -> None:
        """Creates the bucket once a limit is known; keeps its rate on the (probed) limit."""
        limit = self.limit(now, window)
        if limit is None:
            return
        rate = limit * (1.0 - SAFETY_MARGIN) / window
        if self.bucket is None:
            self.bucket = TokenBucket(rate, max(1.0, limit * BURST_SHARE), now)
        else:
            self.bucket.set_rate(rate, now)


class Pacer:
    """Paces requests to per-minute quotas, known or learned (see the module's docstring).

    Args:
        requests_per_minute: the known requests-per-minute quota, if any
            (this process's share of it).
        tokens_per_minute: the known input-tokens-per-minute quota, if any.
        window: seconds over which the quotas are counted (default :data:`QUOTA_WINDOW`).
        clock: monotonic time in seconds.
        sleep: an ``asyncio.sleep``-like coroutine function.

    Example::

        pacer = Pacer(requests_per_minute=1000)
        sent_at = await pacer.wait(estimated_tokens=1300)
        try:
            reply = await client.generate(request)
        except GeminiError as e:
            if e.status == 429:
                pacer.throttled(sent_at, 1300, e.retry_after, e.quota_id)
            raise
        pacer.answered(sent_at, 1300, reply.usage.input_tokens)
    """

    def __init__(self, requests_per_minute: Optional[float] = None, tokens_per_minute: Optional[float] = None,
                 *, window: Optional[float] = None, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep):
        window = QUOTA_WINDOW if window is None else window
        per_window = window / 60.0
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._quotas = {
            "requests": _Quota(None if requests_per_minute is None else requests_per_minute * per_window),
            "tokens": _Quota(None if tokens_per_minute is None else tokens_per_minute * per_window),
        }
        # (sent at, input tokens) of the requests Gemini admitted, the last window's worth
        self._admitted: collections.deque[tuple[float, float]] = collections.deque()
        self._hold_until = float("-inf")
        self._line = asyncio.Lock()
        self._token_scale = 1.0
        self.sent = 0
        self.answered_count = 0
        self.throttled_count = 0
        self.quota_throttles = 0
        self.first_sent: Optional[float] = None
        self.last_answered_sent: Optional[float] = None

    # the send path

    async def wait(self, estimated_tokens: float = 0.0) -> float:
        """Waits for this request's turn under every quota; returns the time it leaves.

        Requests leave in the order they called; while one waits, a 429 that
        holds the line or lowers a quota is taken into account.
        """
        async with self._line:
            tokens = estimated_tokens * self._token_scale
            while True:
                now = self._clock()
                delay = max(self._hold_until - now, self._delay("requests", 1.0, now),
                            self._delay("tokens", tokens, now))
                if delay <= 1e-6:  # below the clocks' resolution: a float rounding, not a wait
                    break
                await self._sleep(delay)
            for kind, amount in (("requests", 1.0), ("tokens", tokens)):
                bucket = self._quotas[kind].bucket
                if bucket is not None:
                    bucket.take(amount, now)
            self.sent += 1
            self.first_sent = now if self.first_sent is None else self.first_sent
            return now

    def answered(self, sent_at: float, estimated_tokens: float, input_tokens: Optional[float]) -> None:
        """A reply came: the request counts against the window; its reported tokens correct the estimate."""
        now = self._clock()
        self.answered_count += 1
        self.last_answered_sent = max(sent_at, self.last_answered_sent or sent_at)
        estimate = estimated_tokens * self._token_scale
        actual = estimate if not input_tokens else float(input_tokens)
        if input_tokens and estimated_tokens > 0:
            # the estimates' bias, smoothed: later estimates are scaled by it
            self._token_scale = 0.8 * self._token_scale + 0.2 * (input_tokens / estimated_tokens)
        bucket = self._quotas["tokens"].bucket
        if bucket is not None:
            bucket.correct(actual - estimate, now)
        self._admitted.append((sent_at, actual))

    def throttled(self, sent_at: float, estimated_tokens: float, retry_after: Optional[float],
                  quota_id: Optional[str]) -> None:
        """A 429 came. One that names a per-minute quota teaches it and holds the line."""
        now = self._clock()
        self.throttled_count += 1
        kind = quota_kind(quota_id)
        if kind is None:
            return
        self.quota_throttles += 1
        hold = min(retry_after, self.window) if retry_after else 0.0
        self._hold_until = max(self._hold_until, sent_at + hold)
        requests, tokens = self.admitted_within(sent_at)
        quota = self._quotas[kind]
        # what Gemini admitted of ours over the quota's window when it said "full"
        admitted = max(requests if kind == "requests" else tokens,
                       1.0 if kind == "requests" else estimated_tokens * self._token_scale)
        if quota.learned is not None and sent_at <= quota.learned_when + self.window:
            # within a window of the last lesson, Gemini's window still holds requests from before
            # it, which ours may no longer count (they left before they arrived): the same
            # episode, never a lower quota; answers that came meanwhile only bring it nearer
            quota.learned = max(quota.learned, admitted)
        else:
            quota.learned = admitted
            quota.learned_when = now
        quota.learned_at = max(now, self._hold_until)
        quota.sync(now, self.window)

    # figures

    def admitted_within(self, until: float) -> tuple[int, float]:
        """Requests and input tokens admitted (sent in the window ending at ``until``)."""
        while self._admitted and self._admitted[0][0] <= self._clock() - 2 * self.window:
            self._admitted.popleft()
        start = until - self.window
        inside = [tokens for sent, tokens in self._admitted if start < sent <= until]
        return len(inside), sum(inside)

    def pace(self, kind: str = "requests") -> Optional[float]:
        """The per-minute quota being paced to now (configured or learned), or ``None``."""
        limit = self._quotas[kind].limit(self._clock(), self.window)
        return None if limit is None else limit * 60.0 / self.window

    def achieved_per_minute(self) -> Optional[float]:
        """Requests answered per minute: those after the first, over the time from its send to the last's."""
        if self.first_sent is None or self.last_answered_sent is None or self.last_answered_sent <= self.first_sent:
            return None
        return (self.answered_count - 1) * 60.0 / (self.last_answered_sent - self.first_sent)

    def _delay(self, kind: str, amount: float, now: float) -> float:
        quota = self._quotas[kind]
        quota.sync(now, self.window)
        return 0.0 if quota.bucket is None or amount <= 0 else quota.bucket.delay(amount, now)


def daily_quota_reset(now: dt.datetime) -> dt.datetime:
    """When Gemini's per-day quotas reset after ``now`` (aware): the next midnight, Pacific time.

    >>> daily_quota_reset(dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.timezone.utc)).isoformat()
    '2026-12-01T08:00:00+00:00'
    """
    local = now.astimezone(PACIFIC)
    midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(0), tzinfo=PACIFIC)
    return midnight.astimezone(dt.timezone.utc)


def daily_quota_message(server_message: str, now: dt.datetime) -> str:
    """Why a run stopped on the daily quota, and when to come back."""
    reset = daily_quota_reset(now)
    minutes = max(1, round((reset - now).total_seconds() / 60))
    return (f"The daily Gemini quota is used up, so the run stopped. It resets at midnight Pacific time, "
            f"{reset:%Y-%m-%d %H:%M} UTC (in {minutes // 60} h {minutes % 60:02d} min): re-run the same job "
            f"then, or with another project's key, to go on where it stopped. Server said: "
            f"{server_message}")
