"""How much to ask of Gemini at once, and in all: adaptive concurrency and budgets.

:class:`AdaptiveConcurrency` bounds the requests in flight and adapts the bound
the way TCP adapts its window (AIMD): it halves when Gemini answers 429 and
grows by about one per round of successful replies, so a run settles just
under the project's rate limit instead of hammering it with retries.
:class:`Budget` stops a run cleanly once it has sent a given number of
requests or received a given number of tokens.

Both live on the event loop of one run; neither needs a lock.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Optional


class LimiterClosed(Exception):
    """The limiter was closed: the run is stopping and sends nothing more."""


class AdaptiveConcurrency:
    """An AIMD limit on requests in flight.

    Args:
        maximum: the limit to start from and never exceed (``concurrency``).
        minimum: the limit never goes below this.
        decrease: the factor applied to the limit on a 429.

    Example::

        limiter = AdaptiveConcurrency(32)
        async with limiter.slot() as slot:
            try:
                reply = await client.generate(request)
            except GeminiError as e:
                if e.status == 429:
                    slot.throttled()
                raise
    """

    def __init__(self, maximum: int, *, minimum: int = 1, decrease: float = 0.5):
        if maximum < 1 or not 1 <= minimum <= maximum:
            raise ValueError(f"need 1 <= minimum <= maximum, got {minimum} and {maximum}")
        self.maximum = maximum
        self.minimum = minimum
        self._decrease = decrease
        self._limit = float(maximum)
        self._in_flight = 0
        self._sent = 0
        # a 429 on a request sent before the last decrease says nothing new about
        # the current limit: at most one decrease per round of requests
        self._decreased_after = 0
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self.decreases = 0
        self.lowest = maximum
        self.closed = False

    @property
    def limit(self) -> int:
        """The current bound on requests in flight."""
        return int(self._limit)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def slot(self) -> "_Slot":
        """A place in line for one request slot; ``async with`` it to wait for the slot.

        Slots are granted in the order places are taken, so a request whose
        image is still being prepared keeps its turn.

        Raises:
            LimiterClosed: on entry, once :meth:`close` was called.
        """
        waiter = asyncio.get_running_loop().create_future()
        if self.closed:
            waiter.set_result(False)
        elif self._in_flight < self.limit and not self._waiters:
            self._in_flight += 1
            waiter.set_result(True)
        else:
            self._waiters.append(waiter)
        return _Slot(self, waiter)

    def close(self) -> None:
        """Hands out no more slots: waiting and later requests raise :class:`LimiterClosed`."""
        self.closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(False)

    def _granted(self) -> int:
        self._sent += 1
        return self._sent

    def _abandon(self, waiter: asyncio.Future) -> None:
        """Gives a place up: out of the line, or its slot back if it was granted."""
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        elif waiter.done() and not waiter.cancelled() and waiter.result():
            self._in_flight -= 1
            self._wake()

    def _release(self, ticket: int, throttled: bool, succeeded: bool) -> None:
        self._in_flight -= 1
        if throttled:
            if ticket > self._decreased_after:
                self._limit = max(float(self.minimum), self._limit * self._decrease)
                self._decreased_after = self._sent
                self.decreases += 1
                self.lowest = min(self.lowest, self.limit)
        elif succeeded and self._limit < self.maximum:
            self._limit = min(float(self.maximum), self._limit + 1.0 / self._limit)
        self._wake()

    def _wake(self) -> None:
        while not self.closed and self._waiters and self._in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(True)


class _Slot:
    def __init__(self, limiter: AdaptiveConcurrency, waiter: asyncio.Future):
        self._limiter = limiter
        self._waiter = waiter
        self._ticket = 0
        self._throttled = False

    def throttled(self) -> None:
        """Marks the request as rate-limited (HTTP 429): the limit decreases."""
        self._throttled = True

    def abandon(self) -> None:
        """Gives the place up without sending (the request could not be built)."""
        self._limiter._abandon(self._waiter)

    async def __aenter__(self) -> "_Slot":
        try:
            granted = await self._waiter
        except asyncio.CancelledError:
            self._limiter._abandon(self._waiter)
            raise
        if not granted:
            raise LimiterClosed()
        self._ticket = self._limiter._granted()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        self._limiter._release(self._ticket, self._throttled, succeeded=exc_type is None)


class BudgetExhausted(Exception):
    """A run's request or token budget is used up; the message says which."""


class Budget:
    """Caps on the requests a run sends and the tokens its replies report.

    Tokens are only known once a reply arrives, so each request in flight
    reserves its estimated input tokens: a run stops before the estimate says
    it would cross the cap, and overshoots by at most the estimation error of
    the requests in flight.

    Args:
        max_requests: requests (retries included) allowed, or ``None``.
        max_tokens: tokens allowed, or ``None``.
    """

    def __init__(self, max_requests: Optional[int] = None, max_tokens: Optional[int] = None):
        self.max_requests = max_requests
        self.max_tokens = max_tokens
        self.requests = 0
        self.tokens = 0
        self._reserved = 0

    def spend_request(self, estimated_tokens: int = 0) -> None:
        """Accounts for one request about to be sent.

        Raises:
            BudgetExhausted: the request would go over a cap; it must not be sent.
        """
        if self.max_requests is not None and self.requests >= self.max_requests:
            raise BudgetExhausted(f"the request budget ({self.max_requests} requests) is used up")
        if self.max_tokens is not None and self.tokens + self._reserved + estimated_tokens > self.max_tokens:
            raise BudgetExhausted(
                f"the token budget ({self.max_tokens:,} tokens) is used up "
                f"({self.tokens:,} reported so far)"
            )
        self.requests += 1
        self._reserved += estimated_tokens

    def settle(self, estimated_tokens: int, reported_tokens: int) -> None:
        """Replaces a finished request's reservation with the tokens its reply reported."""
        self._reserved -= estimated_tokens
        self.tokens += reported_tokens
