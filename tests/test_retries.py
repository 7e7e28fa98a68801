"""generate_with_retries: the first attempt direct, then backoff that honours the server."""

import asyncio

import pytest

from gemini_annotate.messages import GeminiError
from gemini_annotate.retries import generate_with_retries


def _run(outcomes, *, max_attempts=4, monkeypatch):
    """Runs a send that yields ``outcomes`` in turn (an exception is raised); records sends, waits, retries."""
    sent, waits, retried = [], [], []
    real_sleep = asyncio.sleep

    async def sleep(seconds, *args, **kwargs):
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)

    async def send():
        outcome = outcomes[len(sent)]
        sent.append(outcome)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def main():
        return await generate_with_retries(send, max_attempts=max_attempts, initial_delay=1.0, max_delay=60.0,
                                           on_retry=lambda e, n: retried.append(n))

    try:
        result = asyncio.run(main())
    except GeminiError as e:
        result = e
    return result, sent, waits, retried


def busy(retry_after=None):
    return GeminiError("busy", status=503, retryable=True, retry_after=retry_after)


def refused():
    return GeminiError("bad request", status=400, retryable=False)


@pytest.mark.parametrize("outcomes, max_attempts, sends, retried", [
    (["ok"], 4, 1, []),
    ([busy(), "ok"], 4, 2, [1]),
    ([busy(), busy(), busy(), "ok"], 4, 4, [1, 2, 3]),
    ([busy(), busy()], 2, 2, [1]),       # out of attempts: the last error is raised
    ([refused()], 4, 1, []),             # not retryable: raised at once
    ([busy(), refused()], 4, 2, [1]),
    ([busy()], 1, 1, []),                # one attempt allowed
])
def test_sends_until_success_a_refusal_or_the_last_attempt(outcomes, max_attempts, sends, retried, monkeypatch):
    result, sent, waits, on_retry = _run(list(outcomes), max_attempts=max_attempts, monkeypatch=monkeypatch)
    assert len(sent) == sends and on_retry == retried
    assert result == "ok" if outcomes[sends - 1] == "ok" else result is outcomes[sends - 1]


def test_waits_grow_exponentially_and_never_undercut_the_server(monkeypatch):
    _, _, waits, _ = _run([busy(), busy(), busy(retry_after=30.0), "ok"], monkeypatch=monkeypatch)
    assert len(waits) == 3
    assert 1.0 <= waits[0] < 2.0 and 2.0 <= waits[1] < 3.0  # initial · 2^(n-1) plus at most 1 s of jitter
    assert waits[2] == 30.0  # the server's RetryInfo over the 4 s backoff
