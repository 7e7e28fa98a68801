"""A hidden quota, enforced the way Gemini enforces its rate limits.

``Quota(Oracle(index), requests_per_window=1200)`` answers like the oracle
until a project (here: the whole emulator) goes over its quota, then answers
``429 RESOURCE_EXHAUSTED`` with Gemini's error details: a ``QuotaFailure``
naming the quota (``GenerateRequestsPerMinutePerProjectPerModel``,
``GenerateContentInputTokensPerModelPerMinute`` or
``GenerateRequestsPerDayPerProjectPerModel``) and a ``RetryInfo``
``retryDelay`` saying when the quota has room again.

The window is **sliding**: a request is admitted when the requests (or input
tokens) admitted in the ``window`` seconds before it, itself included, stay
within the quota; ``retryDelay`` is the time until enough of them leave the
window. Google does not document how it counts a minute; a sliding window is
the strictest honest reading, since every fixed minute is one of its windows:
a client that never trips it never trips a fixed-window counter either, and a
burst at a minute's boundary, which a fixed window would let through twice,
is refused. Rejected requests do not count. The day's count resets at
midnight Pacific time, as Gemini's does.

Input tokens are counted as the emulator's usage reports them (a quarter of
the prompt's characters plus :func:`~.tokens.image_tokens` per image), so a
client that corrects its estimates by the reported usage can pace exactly.
"""

from __future__ import annotations

import collections
import datetime as dt
import math
import threading
import time
import zoneinfo
from typing import Callable, Optional

from .scenarios import EmulatorFault, Response, Scenario
from .tokens import request_input_tokens
from .wire import EmulatorRequest, retry_info

PACIFIC = zoneinfo.ZoneInfo("America/Los_Angeles")
REQUESTS_PER_MINUTE_ID = "GenerateRequestsPerMinutePerProjectPerModel"
TOKENS_PER_MINUTE_ID = "GenerateContentInputTokensPerModelPerMinute"
REQUESTS_PER_DAY_ID = "GenerateRequestsPerDayPerProjectPerModel"
_METRICS = {
    REQUESTS_PER_MINUTE_ID: "generativelanguage.googleapis.com/generate_content_requests",
    TOKENS_PER_MINUTE_ID: "generativelanguage.googleapis.com/generate_content_input_token_count",
    REQUESTS_PER_DAY_ID: "generativelanguage.googleapis.com/generate_content_requests_per_day",
}


def seconds_to_pacific_midnight(now: dt.datetime) -> float:
    """Seconds from ``now`` (aware) to the next midnight in Pacific time."""
    local = now.astimezone(PACIFIC)
    midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(0), tzinfo=PACIFIC)
    return (midnight - now).total_seconds()


class Quota(Scenario):
    """Another scenario behind a hidden per-window and per-day quota (see the module docstring).

    Args:
        inner: the scenario answering admitted requests.
        requests_per_window: requests admitted per ``window``, or ``None``.
        tokens_per_window: input tokens admitted per ``window``, or ``None``.
        window: the window in seconds (Gemini's: a minute). Tests shorten it.
        requests_per_day: requests admitted per day, or ``None``.
        model: the model named in the error message.
        clock: monotonic time in seconds.
        wall_clock: the current time (aware), for the daily reset.

    Attributes:
        admitted: ``(time, input tokens)`` of every admitted request.
        rejected: how many requests were answered 429.
    """

    def __init__(self, inner: Scenario, *, requests_per_window: Optional[int] = None,
                 tokens_per_window: Optional[int] = None, window: float = 60.0,
                 requests_per_day: Optional[int] = None, model: str = "gemini-2.5-flash",
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)):
        self.inner = inner
        self.requests_per_window = requests_per_window
        self.tokens_per_window = tokens_per_window
        self.window = window
        self.requests_per_day = requests_per_day
        self.model = model
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._recent: collections.deque[tuple[float, int]] = collections.deque()
        self._recent_tokens = 0
        self._day: Optional[dt.date] = None
        self._today = 0
        self.admitted: list[tuple[float, int]] = []
        self.rejected = 0

    def respond(self, request: EmulatorRequest) -> Response:
        tokens = request_input_tokens(request) if self.tokens_per_window is not None else 0
        with self._lock:
            fault = self._admit(self._clock(), tokens)
            if fault is not None:
                self.rejected += 1
                return fault
        return self.inner.respond(request)

    def _admit(self, now: float, tokens: int) -> Optional[EmulatorFault]:
        while self._recent and self._recent[0][0] <= now - self.window:
            self._recent_tokens -= self._recent.popleft()[1]
        wall = self._wall_clock()
        day = wall.astimezone(PACIFIC).date()
        if day != self._day:
            self._day, self._today = day, 0
        if self.requests_per_day is not None and self._today >= self.requests_per_day:
            return self._fault(REQUESTS_PER_DAY_ID, self.requests_per_day, seconds_to_pacific_midnight(wall))
        if self.requests_per_window is not None and len(self._recent) + 1 > self.requests_per_window:
            return self._fault(REQUESTS_PER_MINUTE_ID, self.requests_per_window,
                               self._until_free(now, count=len(self._recent) + 1 - self.requests_per_window))
        if self.tokens_per_window is not None and self._recent_tokens + tokens > self.tokens_per_window:
            return self._fault(TOKENS_PER_MINUTE_ID, self.tokens_per_window,
                               self._until_free(now, tokens=self._recent_tokens + tokens - self.tokens_per_window))
        self._recent.append((now, tokens))
        self._recent_tokens += tokens
        self._today += 1
        self.admitted.append((now, tokens))
        return None

    def _until_free(self, now: float, count: int = 0, tokens: int = 0) -> float:
        """Seconds until ``count`` requests or ``tokens`` tokens have left the window."""
        freed_count, freed_tokens = 0, 0
        for sent, sent_tokens in self._recent:
            freed_count += 1
            freed_tokens += sent_tokens
            if freed_count >= count and freed_tokens >= tokens:
                return max(0.0, sent + self.window - now)
        return self.window

    def _fault(self, quota_id: str, limit: int, retry_after: float) -> EmulatorFault:
        metric = _METRICS[quota_id]
        retry = math.ceil(retry_after * 1000) / 1000
        return EmulatorFault(
            429,
            "You exceeded your current quota, please check your plan and billing details. For more "
            "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n"
            f"* Quota exceeded for metric: {metric}, limit: {limit}, model: {self.model}\n"
            f"Please retry in {retry:g}s.",
            details=(
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"quotaMetric": metric, "quotaId": quota_id,
                                 "quotaDimensions": {"location": "global", "model": self.model},
                                 "quotaValue": str(limit)}]},
                retry_info(retry),
            ),
        )

    def usage(self, start: Optional[float] = None, end: Optional[float] = None) -> dict:
        """The share of the quota used between ``start`` and ``end`` (first and last admission by default).

        Returns:
            ``{"seconds", "admitted", "admitted_tokens", "rejected", "requests_share", "tokens_share"}``:
            the shares are admitted / (quota per window × seconds / window).
        """
        with self._lock:
            admitted = list(self.admitted)
            rejected = self.rejected
        if not admitted:
            return {"seconds": 0.0, "admitted": 0, "admitted_tokens": 0, "rejected": rejected,
                    "requests_share": None, "tokens_share": None}
        start = admitted[0][0] if start is None else start
        end = admitted[-1][0] if end is None else end
        inside = [(t, n) for t, n in admitted if start <= t <= end]
        seconds = max(end - start, 1e-9)
        windows = seconds / self.window
        return {
            "seconds": seconds,
            "admitted": len(inside),
            "admitted_tokens": sum(n for _, n in inside),
            "rejected": rejected,
            "requests_share": (len(inside) / (self.requests_per_window * windows)
                               if self.requests_per_window else None),
            "tokens_share": (sum(n for _, n in inside) / (self.tokens_per_window * windows)
                             if self.tokens_per_window else None),
        }
