"""Retrying a call to Gemini: exponential backoff with jitter, never sooner than the server asked.

Requests, File API uploads and Batch API calls are all retried here, in one
place; the SDK's own retry loops are switched off (see :mod:`gemini_annotate.gemini`).
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Optional, TypeVar

import tenacity

from .messages import GeminiError

T = TypeVar("T")


class _ServerAwareWait(tenacity.wait.wait_base):
    """Exponential backoff with jitter that never waits less than the server asked."""

    def __init__(self, initial: float, maximum: float):
        self._backoff = tenacity.wait_exponential_jitter(initial=initial, max=maximum)
        self._maximum = maximum

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        return self._at_least_asked(self._backoff(retry_state), exc)

    def after(self, error: BaseException, *, attempt: int) -> float:
        """The wait after ``attempt`` failed with ``error`` (outside a tenacity loop)."""
        state = tenacity.RetryCallState(None, None, (), {})
        state.attempt_number = attempt
        return self._at_least_asked(self._backoff(state), error)

    def _at_least_asked(self, wait: float, exc: Optional[BaseException]) -> float:
        asked = getattr(exc, "retry_after", None)
        if asked:
            wait = max(wait, min(asked, 10 * self._maximum))
        return wait


async def generate_with_retries(
    send: Callable[[], Awaitable[T]],
    *,
    max_attempts: int,
    initial_delay: float = 1.0,
    max_delay: float = 60.0,
    on_retry: Optional[Callable[[GeminiError, int], None]] = None,
) -> T:
    """Calls ``send`` until it succeeds, a non-retryable error occurs, or attempts run out.

    It retries requests, File API uploads and Batch API calls alike. Waits grow exponentially with jitter and are never shorter than the
    server's ``RetryInfo``/``Retry-After``.
    """

    # the first attempt is made directly: nearly every request succeeds at once, and
    # tenacity's machinery costs ~0.15 ms of CPU a call, 2 % of a request's client CPU
    try:
        return await send()
    except GeminiError as e:
        if not e.retryable or max_attempts <= 1:
            raise
        first_error = e

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None:
            on_retry(state.outcome.exception(), state.attempt_number + 1)

    if on_retry is not None:
        on_retry(first_error, 1)
    # the wait after attempt n is tenacity's after its attempt n - 1 with twice the initial delay
    await asyncio.sleep(_ServerAwareWait(initial_delay, max_delay).after(first_error, attempt=1))
    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(max_attempts - 1),
        wait=_ServerAwareWait(2 * initial_delay, max_delay),
        retry=tenacity.retry_if_exception(lambda e: isinstance(e, GeminiError) and e.retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(send)

