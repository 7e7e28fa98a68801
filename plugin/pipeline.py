"""The orchestrator: the only code that knows the order of the stages.

    sample → media (prepare image) → request → gemini (reply) → task (parse,
    convert) → runs (batched write, run record)

Requests run concurrently on the SDK's async client, images are prepared in
worker threads while other requests wait on the network, and results are
written in batches. The App operator, the Python API and the CLI all call
:func:`run_annotation`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

import fiftyone as fo
import fiftyone.core.media as fom

from .config import AnnotateConfig
from .convert import Provenance
from .gemini import (
    GeminiClient,
    GeminiError,
    GeminiReply,
    TokenUsage,
    generate_with_retries,
)
from .limits import AdaptiveConcurrency, Budget, BudgetExhausted, LimiterClosed
from .media import PreparedImage, image_metadata
from .request_builder import RequestBuilder, SampleError, SampleSource
from .runs import (
    STATUS_FAILED,
    STATUS_OK,
    STATUS_PARTIAL,
    LabelWriter,
    RunSummary,
    SampleResult,
    count_selection,
    iter_pending,
    record_run,
    save_run_summary,
)
from .sync import run_sync
from .tasks import ReplyContext, TaskSpec, get_task
from .uploads import UploadCache, upload_endpoint

_NOT_IMAGES = frozenset({fom.VIDEO, fom.POINT_CLOUD, fom.THREE_D})

PROGRESS_INTERVAL = 0.5
"""Seconds between progress callbacks: often enough to watch, rare enough for the App."""

REFUSALS_BEFORE_STOP = 3
"""Refused requests, with none succeeding yet, after which a run stops: the refusal
is about the request (prompt, schema, options), not about one image."""


@dataclass(frozen=True)
class RunProgress:
    """A snapshot of a running job, passed to progress callbacks."""

    total: int
    done: int
    failed: int
    labels: int
    message: Optional[str] = None
    """What the run is waiting for, when it is not sending requests (a batch job's state)."""

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def fraction(self) -> float:
        return self.finished / self.total if self.total else 1.0


ProgressCallback = Callable[[RunProgress], None]


class AnnotationStopped(Exception):
    """A run stopped before its end (bad key, unknown model, refused requests, budget).

    Attributes:
        summary: what was done before it stopped; finished samples are saved.
    """

    def __init__(self, message: str, summary: RunSummary):
        super().__init__(message)
        self.summary = summary


def annotate(
    samples: fo.core.collections.SampleCollection,
    task: str = "detect",
    *,
    classes: Optional[list[str]] = None,
    prompt: Optional[str] = None,
    label_field: str = "gemini",
    model: Optional[str] = None,
    api_key: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
    **options: Any,
) -> RunSummary:
    """Pre-annotates samples with Gemini and stores the labels for review.

    Args:
        samples: a FiftyOne dataset or view of images.
        task: ``"detect"`` (see :data:`gemini_annotate.tasks.TASKS` for all).
        classes: class names to look for; labels are normalised to them.
        prompt: a prompt replacing the task's default.
        label_field: the field receiving the labels.
        model: the Gemini model (default ``gemini-3-flash-preview``).
        api_key: the API key; by default ``GEMINI_API_KEY`` / ``GOOGLE_API_KEY``.
            It is used for the requests only and never stored.
        progress: called with a :class:`RunProgress` as the run advances.
        **options: any other :class:`gemini_annotate.config.AnnotateConfig`
            field (``concurrency``, ``base_url``, ``api``, ``if_labeled``, ...).

    Returns:
        a :class:`gemini_annotate.runs.RunSummary`

    Raises:
        AnnotationStopped: the run could not go on (bad key, unknown model, ...).

    Example::

        import fiftyone.zoo as foz
        import gemini_annotate

        dataset = foz.load_zoo_dataset("quickstart")
        gemini_annotate.annotate(dataset.take(10), task="detect", classes=["person", "dog"])
    """
    fields: dict[str, Any] = dict(task=task, classes=classes, prompt=prompt, label_field=label_field)
    if model:
        fields["model"] = model
    config = AnnotateConfig(**fields, **options)
    return run_annotation(samples, config, api_key=api_key, progress=progress)


def run_annotation(
    samples: fo.core.collections.SampleCollection,
    config: AnnotateConfig,
    *,
    api_key: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
) -> RunSummary:
    """Runs a configured job to the end; the synchronous entry of every front door.

    When the calling thread already runs an event loop (the App server, a
    notebook), the job runs on its own loop in a worker thread
    (:func:`gemini_annotate.sync.run_sync`), so the two never interfere.
    With ``config.batch`` the job goes through the Batch API
    (:mod:`gemini_annotate.batch`).
    """

    def job():
        if config.batch:
            from .batch import BatchAnnotationJob

            return BatchAnnotationJob(samples, config, api_key=api_key, progress=progress).run()
        return AnnotationJob(samples, config, api_key=api_key, progress=progress).run()

    return run_sync(job)


class _Stop(Exception):
    def __init__(self, error: GeminiError):
        self.error = error


TRUNCATED_REASON = "reply cut off at the output token limit (MAX_TOKENS): objects after the cut are missing"

PAGE_SIZE = 1000
"""Samples read from the database per query while streaming over a view."""

PREFETCH = 4
"""Samples prepared ahead of a free request slot, so no slot waits for an image."""

FLUSH_CHECK_INTERVAL = 1.0
"""Seconds between checks for a batch that is due by age (while replies are slow)."""


class StageCpu:
    """CPU seconds a job spent per stage, measured in the threads that ran them.

    ``prepare`` (image preparation, worker threads), ``interpret`` (parsing and
    conversion, event loop), ``write`` (database writes, writer thread) and
    ``loop`` (all the event loop's CPU: request building, the SDK, the
    transport, and ``interpret``).
    """

    def __init__(self) -> None:
        self.prepare = 0.0
        self.interpret = 0.0
        self.write = 0.0
        self.loop = 0.0
        self._lock = threading.Lock()

    def add_prepare(self, seconds: float) -> None:
        with self._lock:
            self.prepare += seconds

    def as_dict(self) -> dict[str, float]:
        return {"prepare": self.prepare, "interpret": self.interpret, "write": self.write,
                "loop": self.loop}


class AnnotationJob:
    """One run of one configuration over a collection (or one shard of it). Use :meth:`run` once.

    The stages overlap: a producer streams the samples still to send from the
    database page by page; ``concurrency`` + :data:`PREFETCH` workers prepare
    images in a thread pool and send them through an
    :class:`~gemini_annotate.limits.AdaptiveConcurrency` limiter, which holds
    requests in flight at ``concurrency`` and backs off on 429; results go to a
    :class:`~gemini_annotate.runs.LabelWriter` flushed by a single database
    thread. Memory holds one page of ids, the prepared images in flight and
    one batch of results, whatever the size of the view.
    """

    def __init__(
        self,
        samples: fo.core.collections.SampleCollection,
        config: AnnotateConfig,
        *,
        api_key: Optional[str] = None,
        progress: Optional[ProgressCallback] = None,
    ):
        self.samples = samples
        self.dataset = samples._dataset
        self.config = config
        self.task: TaskSpec = get_task(config.task)
        self._api_key = api_key
        self._progress = progress
        self.summary = RunSummary(run_key=config.resolved_run_key, label_field=config.label_field,
                                  shard=config.shard, num_shards=config.num_shards)
        self._provenance = Provenance(model=config.model, run_key=config.resolved_run_key)
        self.uploads = (UploadCache(self.dataset, upload_endpoint(config.base_url))
                        if config.image_transport == "file_api" else None)
        self.builder = RequestBuilder(config, self.task, uploads=self.uploads)
        self._usage = TokenUsage()
        self._reasons: Counter = Counter()
        self._refusals = 0
        self._successes = 0
        self._last_progress = 0.0
        self._recorded = False
        self._stopping: Optional[str] = None
        self.limiter = AdaptiveConcurrency(config.concurrency)
        self.budget = Budget(config.max_requests, config.max_tokens)
        self.cpu = StageCpu()
        self.writer = LabelWriter(self.dataset, config, on_first_write=self._record)

    def _record(self) -> None:
        record_run(self.samples, self.config)
        self._recorded = True

    async def run(self) -> RunSummary:
        started, loop_cpu = time.monotonic(), time.thread_time()
        self.builder.check_fields(self.samples)
        client = GeminiClient.from_config(self.config, api_key=self._api_key)
        loop = asyncio.get_running_loop()
        stop: Optional[GeminiError] = None
        with concurrent.futures.ThreadPoolExecutor(min(4, os.cpu_count() or 1), "gemini-media") as media_pool, \
                concurrent.futures.ThreadPoolExecutor(1, "gemini-db") as db_pool:
            try:
                selected, pending = await loop.run_in_executor(
                    db_pool, count_selection, self.samples, self.config)
                self.summary.selected, self.summary.skipped = selected, selected - pending
                await self._process_all(client, loop, media_pool, db_pool)
            except _Stop as e:
                stop = e.error
            finally:
                await client.aclose()
                await loop.run_in_executor(db_pool, self._write, self.writer.take())

        self.cpu.loop = time.thread_time() - loop_cpu
        summary = self.summary
        summary.elapsed_seconds = round(time.monotonic() - started, 3)
        summary.input_tokens = self._usage.input_tokens
        summary.output_tokens = self._usage.output_tokens
        summary.thought_tokens = self._usage.thought_tokens
        if self.uploads is not None:
            summary.files_uploaded = self.uploads.uploaded
            summary.files_reused = self.uploads.reused
        summary.failure_reasons = dict(self._reasons)
        summary.lowest_concurrency = self.limiter.lowest
        if stop is None and self._stopping:
            stop = GeminiError(f"{self._stopping}; re-run the same job to go on where it stopped")
        if stop is not None:
            summary.stopped = stop.message
        if self._recorded:
            self.writer.declare_attributes()
            save_run_summary(self.dataset, summary)
        self._report_progress(force=True)
        if stop is not None:
            raise AnnotationStopped(stop.message, summary)
        return summary

    async def _process_all(self, client, loop, media_pool, db_pool) -> None:
        workers = self.config.concurrency + PREFETCH
        queue: asyncio.Queue = asyncio.Queue(maxsize=workers)
        writing: set[asyncio.Future] = set()

        def finish(result: SampleResult) -> None:
            self._account(result)
            if self.writer.add(result):
                write_due()
            self._report_progress()

        def write_due() -> None:
            future = loop.run_in_executor(db_pool, self._write, self.writer.take())
            writing.add(future)
            future.add_done_callback(writing.discard)

        async def produce() -> None:
            pages = iter_pending(self.samples, self.config, self._page_fields(), PAGE_SIZE)
            while not self._stopping and (page := await loop.run_in_executor(db_pool, next, pages, None)):
                for sample_id, path, values in page:
                    if self._stopping:
                        break
                    unsendable = self._unsendable(sample_id, path)
                    if unsendable is not None:
                        finish(unsendable)
                    else:
                        await queue.put(SampleSource(sample_id, path, values))
            # not on cancellation: the workers are cancelled too, and a full queue would never drain
            for _ in range(workers):
                await queue.put(None)

        async def work() -> None:
            while (item := await queue.get()) is not None:
                if self._stopping:
                    continue  # left unsent: a re-run of the job sends it
                result = await self._process_one(client, item, loop, media_pool)
                if result is not None:
                    finish(result)

        async def flush_by_age() -> None:
            while True:
                await asyncio.sleep(FLUSH_CHECK_INTERVAL)
                if self.writer.due():
                    write_due()

        flusher = asyncio.create_task(flush_by_age())
        tasks = [asyncio.create_task(produce())] + [asyncio.create_task(work()) for _ in range(workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks + [flusher]:
                t.cancel()
            await asyncio.gather(*tasks, flusher, return_exceptions=True)
            if writing:
                await asyncio.gather(*writing)

    def _write(self, batch: list[SampleResult]) -> int:
        cpu = time.thread_time()
        try:
            return self.writer.write(batch)
        finally:
            self.cpu.write += time.thread_time() - cpu  # only the one database thread writes

    def _page_fields(self) -> list[str]:
        # metadata.width tells which samples lack metadata (computed from the image sent)
        return list(dict.fromkeys([*self.builder.fields, "metadata.width"]))

    @staticmethod
    def _unsendable(sample_id: str, path: str) -> Optional[SampleResult]:
        media_type = fom.get_media_type(path) if path else None
        if media_type not in _NOT_IMAGES:
            return None
        return SampleResult(
            sample_id, STATUS_FAILED,
            reason=f"{media_type} samples are not supported; only images are sent to Gemini: {path}",
        )

    def _select(self) -> tuple[list[SampleSource], list[SampleResult]]:
        """Every sample still to send, at once, and those that cannot be sent (not images).

        For the Batch API, which sends a whole job in one request; the online
        pipeline streams the same selection (:func:`gemini_annotate.runs.iter_pending`).
        """
        selected, pending = count_selection(self.samples, self.config)
        self.summary.skipped = selected - pending
        todo, unsendable = [], []
        for page in iter_pending(self.samples, self.config, self._page_fields(), PAGE_SIZE):
            for sample_id, path, values in page:
                result = self._unsendable(sample_id, path)
                if result is not None:
                    unsendable.append(result)
                else:
                    todo.append(SampleSource(sample_id, path, values))
        return todo, unsendable

    def _timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Runs image preparation in a worker thread, counting its CPU."""
        cpu = time.thread_time()
        try:
            return fn(*args)
        finally:
            self.cpu.add_prepare(time.thread_time() - cpu)

    async def _process_one(self, client: GeminiClient, work: SampleSource, loop, media_pool) -> Optional[SampleResult]:
        """One sample's result, or ``None`` when the job stopped before it was answered."""
        config = self.config
        # the place in line is taken now, so requests leave in the order samples come
        places = [self.limiter.slot()]
        try:
            built = await self.builder.build(
                work, client, lambda fn, *args: loop.run_in_executor(media_pool, self._timed, fn, *args))
        except SampleError as e:
            places[0].abandon()
            return SampleResult(work.sample_id, STATUS_FAILED, reason=str(e))
        except GeminiError as e:
            places[0].abandon()
            self._check_stop(e)
            return SampleResult(work.sample_id, STATUS_FAILED, reason=f"upload failed: {e.message}")
        except asyncio.CancelledError:
            places[0].abandon()
            raise
        request, image, estimate = built.request, built.image, built.estimated_input_tokens

        async def send() -> GeminiReply:
            retry = not places
            place = places.pop() if places else self.limiter.slot()  # a retry queues again
            try:
                self.budget.spend_request(estimate)
            except BudgetExhausted:
                place.abandon()
                raise
            reported = 0
            try:
                async with place as slot:
                    # counted once sent: a request still waiting when the run stops never is
                    self.summary.requests += 1
                    self.summary.retries += retry
                    try:
                        reply = await client.generate(request)
                    except GeminiError as e:
                        if e.status == 429 and not e.fatal:
                            slot.throttled()
                        if not e.retryable:
                            # decided before the slot is freed, so no other request
                            # leaves once the run has to stop
                            self._check_stop(e)
                        raise
                reported = reply.usage.total_tokens or (
                    reply.usage.input_tokens + reply.usage.output_tokens + reply.usage.thought_tokens)
                return reply
            finally:
                self.budget.settle(estimate, reported)

        self.summary.estimated_input_tokens += estimate
        try:
            reply = await generate_with_retries(send, max_attempts=config.max_attempts)
        except BudgetExhausted as e:
            self._stopping = self._stopping or str(e)
            return None
        except LimiterClosed:
            return None
        except GeminiError as e:
            return SampleResult(work.sample_id, STATUS_FAILED, reason=e.message)

        self._successes += 1
        self._usage = self._usage + reply.usage
        cpu = time.thread_time()
        try:
            result = self._interpret(work, reply, image)
        finally:
            self.cpu.interpret += time.thread_time() - cpu
        if work.values.get("metadata.width") is None and image.data:
            # computed from the image as shown, EXIF applied (not for images sent by URI)
            result = replace(result, fields={**result.fields, "metadata": image_metadata(image)})
        return result

    def _interpret(self, work: SampleSource, reply: GeminiReply, image: PreparedImage) -> SampleResult:
        if reply.refused:
            return SampleResult(
                work.sample_id, STATUS_FAILED,
                reason=f"Gemini declined to answer (finish reason {reply.finish_reason})",
            )
        outcome = self.task.interpret(reply, ReplyContext(self.config, image, self._provenance))
        reason = "; ".join(outcome.warnings) or None
        if outcome.status == "unreadable":
            return SampleResult(work.sample_id, STATUS_FAILED, reason=f"unreadable reply: {reason}")
        status = STATUS_PARTIAL if outcome.status == "partial" else STATUS_OK
        if reply.truncated and status == STATUS_OK:
            # whatever the parser salvaged, a cut reply may have lost objects
            status = STATUS_PARTIAL
            reason = "; ".join(filter(None, [reason, TRUNCATED_REASON]))
        return SampleResult(work.sample_id, status, outcome.label, reason, outcome.label_count,
                            fields=outcome.fields)

    def _check_stop(self, error: GeminiError) -> None:
        """Raises :class:`_Stop` (and closes the limiter) when no later request can succeed."""
        if error.fatal:
            self.limiter.close()
            raise _Stop(error)
        if not error.retryable:
            self._refusals += 1
            if self._successes == 0 and self._refusals >= REFUSALS_BEFORE_STOP:
                self.limiter.close()
                raise _Stop(GeminiError(
                    f"Gemini refused the first {self._refusals} requests, so the run "
                    f"stopped (check the model, prompt and options). Last refusal: {error.message}",
                    status=error.status, reason=error.reason, fatal=True,
                ))

    def _account(self, result: SampleResult) -> None:
        summary = self.summary
        if result.status == STATUS_FAILED:
            summary.failed += 1
            self._reasons[_reason_kind(result.reason)] += 1
        else:
            summary.done += 1
            summary.labels += result.label_count
            if result.status == STATUS_PARTIAL:
                summary.partial += 1

    def _report_progress(self, force: bool = False) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_INTERVAL:
            return
        self._last_progress = now
        s = self.summary
        self._progress(RunProgress(total=s.selected - s.skipped, done=s.done, failed=s.failed, labels=s.labels))


def _reason_kind(reason: Optional[str]) -> str:
    """A failure reason without its per-sample details, for counting."""
    if not reason:
        return "unknown"
    return reason.split(":", 1)[0].strip()
