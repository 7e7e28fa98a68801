"""The online job: each sample's request sent as soon as it is ready, results written in batches.

The stages overlap: a producer streams the samples still to send from the
database page by page; ``concurrency`` + :data:`PREFETCH` workers prepare
images in a thread pool and send them through an
:class:`~gemini_annotate.limits.AdaptiveConcurrency` limiter, which caps
requests in flight at ``concurrency`` (and backs off on a 429 that names no
quota), then through a :class:`~gemini_annotate.pacing.Pacer`, which holds
them to the per-minute quotas, known or learned from 429s; results go to a
:class:`~gemini_annotate.writer.LabelWriter` flushed by a single database
thread. Memory holds one page of ids, the prepared images in flight and one
batch of results, whatever the size of the view.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import gc
import time
from typing import Any, Callable, NoReturn, Optional

import fiftyone as fo

from .budget_store import budget_for
from .config import AnnotateConfig
from .gemini import GeminiClient
from .job import MEDIA_THREADS, AnnotationJob, ProgressCallback, StopRun
from .limits import AdaptiveConcurrency, BudgetExhausted, LimiterClosed
from .messages import GeminiError, GeminiReply, GeminiRequest
from .output_fields import check_output_fields
from .pacing import Pacer, daily_quota_message, share_of_quota
from .request_builder import BuiltRequest, SampleSource, answer_requests
from .results import Answer, SampleResult
from .retries import generate_with_retries
from .run_records import RunSummary

REFUSALS_BEFORE_STOP = 3
"""Refused requests, with none succeeding yet, after which a run stops: the refusal
is about the request (prompt, schema, options), not about one image."""

PREFETCH = 4
"""Samples prepared ahead of a free request slot, so no slot waits for an image."""

FLUSH_CHECK_INTERVAL = 0.25
"""Seconds between checks for a batch that is due by age (while replies are slow)."""


@contextlib.contextmanager
def objects_from_before_frozen():
    """Keeps the objects that exist before a run out of the garbage collector's full passes.

    A run makes many short-lived objects (SDK messages, labels), so Python's
    collector makes a full pass now and then, over every object in the
    process: FiftyOne, the SDK, pandas... about 0.2 s each, 0.6 ms per image
    in all. ``gc.freeze`` sets what exists now aside until the run ends
    (``gc.unfreeze``); garbage the run makes is collected as usual. A freeze
    someone else made (the caller's, an outer run's) is left as it is.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class OnlineAnnotationJob(AnnotationJob):
    """A run that sends each sample's request as soon as it is ready. Use :meth:`run` once."""

    def __init__(
        self,
        samples: fo.core.collections.SampleCollection,
        config: AnnotateConfig,
        *,
        api_key: Optional[str] = None,
        progress: Optional[ProgressCallback] = None,
    ):
        super().__init__(samples, config, api_key=api_key, progress=progress)
        self.limiter = AdaptiveConcurrency(config.concurrency)
        self.budget = budget_for(self.dataset, config)
        # each part of a split run paces to its share of the quotas; a learned quota is this process's
        self.pacer = Pacer(share_of_quota(config.requests_per_minute, config.num_shards),
                           share_of_quota(config.tokens_per_minute, config.num_shards))
        self._workers = config.concurrency + PREFETCH
        self._refusals = 0
        self._successes = 0
        self._stopping: Optional[str] = None
        self._writing: set[asyncio.Future] = set()

    async def run(self) -> RunSummary:
        started = time.monotonic()
        self.builder.check_fields(self.samples)
        check_output_fields(self.samples, self.config)
        client = self._client()
        self._loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(MEDIA_THREADS, "gemini-media") as self._media_pool, \
                concurrent.futures.ThreadPoolExecutor(1, "gemini-db") as self._db_pool, \
                objects_from_before_frozen():
            try:
                await self._in_db_thread(self._count_selection)
                await self._process_all(client)
            except StopRun as e:
                self.summary.stopped = str(e)
            finally:
                await client.aclose()
                await self._in_db_thread(self.writer.write, self.writer.take())

        summary = self.summary
        if self._stopping and not summary.stopped:
            summary.stopped = f"{self._stopping}; re-run the same job to go on where it stopped"
        if self.uploads is not None:
            summary.files_uploaded, summary.files_reused = self.uploads.uploaded, self.uploads.reused
        summary.lowest_concurrency = self.limiter.lowest
        summary.throttled = self.pacer.throttled_count
        achieved = self.pacer.achieved_per_minute()
        summary.requests_per_minute = None if achieved is None else round(achieved, 1)
        return self._finish(started)

    # the stages, as concurrent tasks

    async def _process_all(self, client: GeminiClient) -> None:
        """Runs the producer, the workers and the age-based flusher until every sample is done."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=self._workers)
        tasks = [asyncio.create_task(self._produce(queue))]
        tasks += [asyncio.create_task(self._work(client, queue)) for _ in range(self._workers)]
        flusher = asyncio.create_task(self._flush_by_age())
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks + [flusher]:
                task.cancel()
            await asyncio.gather(*tasks, flusher, return_exceptions=True)
            if self._writing:
                await asyncio.gather(*self._writing)

    async def _produce(self, queue: asyncio.Queue) -> None:
        """Queues the samples still to send, a database page at a time; then one stop per worker."""
        pages = self._pending_pages()
        while not self._stopping and (page := await self._in_db_thread(next, pages, None)):
            for item in page:
                if self._stopping:
                    break
                if isinstance(item, SampleResult):
                    self._done(item)
                else:
                    await queue.put(item)
        # not on cancellation: the workers are cancelled too, and a full queue would never drain
        for _ in range(self._workers):
            await queue.put(None)

    async def _work(self, client: GeminiClient, queue: asyncio.Queue) -> None:
        """Takes samples from the queue and processes them until its stop."""
        while (item := await queue.get()) is not None:
            if self._stopping:
                continue  # left unsent: a re-run of the job sends it
            result = await self._process_one(client, item)
            if result is not None:
                self._done(result)

    async def _flush_by_age(self) -> None:
        """Writes the buffered results when they are due by age, while replies are slow."""
        while True:
            await asyncio.sleep(FLUSH_CHECK_INTERVAL)
            if self.writer.due():
                self._write_buffered()

    def _done(self, result: SampleResult) -> None:
        """Counts a finished sample, writes a batch when one is due, reports progress."""
        if self._add_result(result):
            self._write_buffered()
        self._report_progress()

    def _write_buffered(self) -> None:
        """Hands the buffered results to the database thread (awaited before the run ends)."""
        future = self._loop.run_in_executor(self._db_pool, self.writer.write, self.writer.take())
        self._writing.add(future)
        future.add_done_callback(self._writing.discard)

    def _in_db_thread(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future:
        return self._loop.run_in_executor(self._db_pool, fn, *args)

    def _in_media_pool(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future:
        return self._loop.run_in_executor(self._media_pool, fn, *args)

    # one sample

    async def _process_one(self, client: GeminiClient, work: SampleSource) -> Optional[SampleResult]:
        """One sample's result, or ``None`` when the job stopped before it was answered."""
        # the place in line is taken now, so requests leave in the order samples come
        first_place = self.limiter.slot()
        built = None
        try:
            built = await self._build(work, client, self._in_media_pool)
        finally:
            if not isinstance(built, BuiltRequest):
                first_place.abandon()  # nothing to send (failed, stopped, cancelled): the next one goes
        if isinstance(built, SampleResult):
            return built
        requests = answer_requests(built.request, self.config.consensus)
        if len(requests) == 1:  # awaited in place: gather would give it a task of its own
            answers = [await self._answer(client, built, requests[0], first_place)]
        else:
            answers = await asyncio.gather(*(
                self._answer(client, built, request, first_place if i == 0 else self.limiter.slot())
                for i, request in enumerate(requests)))
        if any(answer is None for answer in answers):
            return None  # the job stopped before every answer came
        return self._result(work, answers, built.image)

    async def _answer(self, client: GeminiClient, built: BuiltRequest, request: GeminiRequest,
                      first_place) -> Optional[Answer]:
        """One request's reply (retried), why it failed, or ``None`` when the job stopped first."""
        attempts = 0

        async def send() -> GeminiReply:
            nonlocal attempts
            attempts += 1
            # a retry queues again, behind the requests that were waiting
            place = first_place if attempts == 1 else self.limiter.slot()
            return await self._send(client, request, built.estimated_input_tokens, place, retry=attempts > 1)

        try:
            reply = await generate_with_retries(send, max_attempts=self.config.max_attempts)
        except BudgetExhausted as e:
            self._stopping = self._stopping or str(e)
            return None
        except LimiterClosed:
            return None
        except GeminiError as e:
            return e.message
        finally:
            if attempts == 0:
                first_place.abandon()  # never sent (stopped or cancelled): its place goes to the next
        self._successes += 1
        self._count_tokens(reply.usage)
        return reply

    async def _send(self, client: GeminiClient, request: GeminiRequest, estimate: int, place, *,
                    retry: bool) -> GeminiReply:
        """Sends one attempt of a request through its limiter place, within the budget."""
        try:
            self.budget.spend_request(estimate)
        except BudgetExhausted:
            place.abandon()
            raise
        reported = 0
        try:
            async with place as slot:
                sent_at = await self.pacer.wait(estimate)
                if self.limiter.closed:
                    raise LimiterClosed()  # the run stopped while this request waited for its turn
                # counted once sent: a request still waiting when the run stops never is
                self.summary.requests += 1
                self.summary.retries += retry
                try:
                    reply = await client.generate(request)
                except GeminiError as e:
                    if e.status == 429 and not e.fatal:
                        self.pacer.throttled(sent_at, estimate, e.retry_after, e.quota_id)
                        if e.quota_id is None:
                            slot.throttled()  # not a quota: capacity, which fewer in flight relieves
                    if not e.retryable:
                        # decided before the slot is freed, so no other request
                        # leaves once the run has to stop
                        self._check_stop(e)
                    raise
            usage = reply.usage
            self.pacer.answered(sent_at, estimate, usage.input_tokens)
            reported = usage.total_tokens or (usage.input_tokens + usage.output_tokens + usage.thought_tokens)
            return reply
        finally:
            self.budget.settle(estimate, reported)

    # stopping

    def _check_stop(self, error: GeminiError) -> None:
        """Also stops after :data:`REFUSALS_BEFORE_STOP` refusals with no reply yet; a used-up
        daily quota stops with the time it resets."""
        if error.fatal and error.reason == "QUOTA_EXHAUSTED":
            server_said = error.message.split("Server said: ", 1)[-1]
            self._stop(daily_quota_message(server_said, dt.datetime.now(dt.timezone.utc)))
        if not error.fatal and not error.retryable:
            self._refusals += 1
            if self._successes == 0 and self._refusals >= REFUSALS_BEFORE_STOP:
                self._stop(f"Gemini refused the first {self._refusals} requests, so the run "
                           f"stopped (check the model, prompt and options). Last refusal: {error.message}")
        super()._check_stop(error)

    def _stop(self, message: str) -> NoReturn:
        self.limiter.close()  # no request waiting for a slot leaves
        super()._stop(message)
