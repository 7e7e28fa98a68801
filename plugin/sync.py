"""Running the library's coroutines from synchronous code, whoever calls it."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Awaitable, Callable, Iterable, TypeVar

T = TypeVar("T")


def outside_event_loop(fn: Callable[[], T]) -> T:
    """Calls ``fn()`` and returns its result.

    When the calling thread already runs an event loop (the App server, a
    notebook), ``fn`` runs in a worker thread, so it may start a loop of its
    own and block without stalling the caller's; exceptions reach the caller
    either way.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="gemini-annotate") as pool:
        return pool.submit(fn).result()


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Runs ``make()`` to completion on a loop of its own and returns its result
    (in a worker thread when this thread runs an event loop)."""
    return outside_event_loop(lambda: asyncio.run(make()))  # type: ignore[arg-type]


async def gather_limited(coroutines: Iterable[Awaitable[T]], limit: int) -> list[T]:
    """Awaits coroutines with at most ``limit`` running at a time; their results in order."""
    semaphore = asyncio.Semaphore(limit)

    async def bounded(coroutine: Awaitable[T]) -> T:
        async with semaphore:
            return await coroutine

    return await asyncio.gather(*(bounded(c) for c in coroutines))
