"""The orchestrator: the only code that knows the order of the stages.

    sample → media (prepare image) → request → gemini (reply) → task (parse,
    convert) → runs (batched write, run record)

:class:`AnnotationJob` holds the stages; :class:`OnlineAnnotationJob` runs
requests concurrently on the SDK's async client, images prepared in worker
threads while other requests wait on the network, results written in
batches; :class:`gemini_annotate.batch.BatchAnnotationJob` sends the same
requests as one Batch API job. The App operator, the Python API and the CLI
all call :func:`run_annotation`.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import os
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, NoReturn, Optional, Union

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
from .request_builder import BuiltRequest, RequestBuilder, RunBlocking, SampleError, SampleSource
from .runs import (
    STATUS_FAILED,
    STATUS_OK,
    STATUS_PARTIAL,
    LabelWriter,
    RunSummary,
    SampleResult,
    check_output_fields,
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
        return OnlineAnnotationJob(samples, config, api_key=api_key, progress=progress).run()

    return run_sync(job)


class StopRun(Exception):
    """Raised by a job's stages when no later request can succeed; its message says why.

    A job's :meth:`~AnnotationJob.run` catches it, saves what was finished and
    raises :class:`AnnotationStopped`.
    """


TRUNCATED_REASON = "reply cut off at the output token limit (MAX_TOKENS): objects after the cut are missing"

PAGE_SIZE = 1000
"""Samples read from the database per query while streaming over a view."""

PREFETCH = 4
"""Samples prepared ahead of a free request slot, so no slot waits for an image."""

FLUSH_CHECK_INTERVAL = 1.0
"""Seconds between checks for a batch that is due by age (while replies are slow)."""

MEDIA_THREADS = min(4, os.cpu_count() or 1)
"""Threads preparing images (decoding, EXIF, resizing, encoding) off the event loop."""


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


class AnnotationJob(abc.ABC):
    """One run of one configuration over a collection (or one shard of it). Use :meth:`run` once.

    This class is what every way of sending shares: the selection of the
    samples still to send, their requests, the reading of the replies, the
    summary, the batched writes and the run record. A subclass sends:
    :class:`OnlineAnnotationJob` streams requests through the async client,
    :class:`gemini_annotate.batch.BatchAnnotationJob` submits them as one Batch
    API job. Both go through the same methods below, so a sample gets the same
    request and the same labels either way.
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
        self.summary = RunSummary(run_key=config.resolved_run_key, label_field=config.label_field,
                                  shard=config.shard, num_shards=config.num_shards)
        self.uploads = (UploadCache(self.dataset, upload_endpoint(config.base_url))
                        if config.image_transport == "file_api" else None)
        self.builder = RequestBuilder(config, self.task, uploads=self.uploads)
        self.writer = LabelWriter(self.dataset, config, on_first_write=self._record)
        self._api_key = api_key
        self._progress = progress
        self._provenance = Provenance(model=config.model, run_key=config.resolved_run_key)
        self._recorded = False
        self._last_progress = 0.0

    @abc.abstractmethod
    async def run(self) -> RunSummary:
        """Sends the samples still to send, writes their results and saves the summary on the run.

        Raises:
            AnnotationStopped: the run could not go on; what it finished is saved.
        """

    # the stages every way of sending shares

    def _client(self) -> GeminiClient:
        return GeminiClient.from_config(self.config, api_key=self._api_key)

    def _record(self) -> None:
        """Records the run on the dataset (once, just before its first write)."""
        if not self._recorded:
            record_run(self.samples, self.config)
            self._recorded = True

    def _count_selection(self) -> None:
        """Counts the samples of the job, and those skipped as done (by ``if_labeled``)."""
        selected, pending = count_selection(self.samples, self.config)
        self.summary.selected, self.summary.skipped = selected, selected - pending

    def _pending_pages(self) -> Iterator[list[Union[SampleSource, SampleResult]]]:
        """The samples still to send, a page at a time: what each image's request
        needs, or the failed result of a sample that is not an image."""
        # metadata.width tells which samples lack metadata (computed from the image sent)
        fields = list(dict.fromkeys([*self.builder.fields, "metadata.width"]))
        for page in iter_pending(self.samples, self.config, fields, PAGE_SIZE):
            yield [_not_an_image(sample_id, path) or SampleSource(sample_id, path, values)
                   for sample_id, path, values in page]

    async def _build(self, source: SampleSource, client: GeminiClient,
                     run_blocking: RunBlocking) -> Union[BuiltRequest, SampleResult]:
        """The sample's request, or its failed result when none can be built (image, fields, upload).

        Raises:
            StopRun: an upload failed in a way no later request can avoid (:meth:`_check_stop`).
        """
        try:
            built = await self.builder.build(source, client, run_blocking)
        except SampleError as e:
            return SampleResult(source.sample_id, STATUS_FAILED, reason=str(e))
        except GeminiError as e:
            self._check_stop(e)
            return SampleResult(source.sample_id, STATUS_FAILED, reason=f"upload failed: {e.message}")
        self.summary.estimated_input_tokens += built.estimated_input_tokens
        return built

    def _check_stop(self, error: GeminiError) -> None:
        """Stops the run (:meth:`_stop`) when no later request can succeed."""
        if error.fatal:
            self._stop(error.message)

    def _stop(self, message: str) -> NoReturn:
        raise StopRun(message)

    def _count_tokens(self, usage: TokenUsage) -> None:
        summary = self.summary
        summary.input_tokens += usage.input_tokens
        summary.output_tokens += usage.output_tokens
        summary.thought_tokens += usage.thought_tokens

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

    def _add_result(self, result: SampleResult) -> bool:
        """Counts a sample's result in the summary and buffers it; returns whether a write is due."""
        summary = self.summary
        if result.status == STATUS_FAILED:
            summary.failed += 1
            kind = _reason_kind(result.reason)
            summary.failure_reasons[kind] = summary.failure_reasons.get(kind, 0) + 1
        else:
            summary.done += 1
            summary.labels += result.label_count
            if result.status == STATUS_PARTIAL:
                summary.partial += 1
        return self.writer.add(result)

    def _report_progress(self, force: bool = False, message: Optional[str] = None) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_INTERVAL:
            return
        self._last_progress = now
        s = self.summary
        self._progress(RunProgress(total=s.selected - s.skipped, done=s.done, failed=s.failed,
                                   labels=s.labels, message=message))

    def _finish(self, started: float, batch_job: Optional[dict] = None,
                message: Optional[str] = None) -> RunSummary:
        """Writes what is buffered, saves the summary on the run and reports the end.

        Args:
            started: when the job started (``time.monotonic()``); the time
                since is added to the summary's.
            batch_job: the run's batch job record, saved with the summary
                (see :mod:`gemini_annotate.batch`).
            message: what the run waits for, for the last progress report.

        Raises:
            AnnotationStopped: the summary says the run stopped.
        """
        self.writer.flush()
        summary = self.summary
        summary.elapsed_seconds = round(summary.elapsed_seconds + time.monotonic() - started, 3)
        if self._recorded or batch_job is not None:
            self.writer.declare_attributes()
            save_run_summary(self.dataset, summary, batch_job=batch_job)
        self._report_progress(force=True, message=message)
        if summary.stopped:
            raise AnnotationStopped(summary.stopped, summary)
        return summary


class OnlineAnnotationJob(AnnotationJob):
    """A run that sends each sample's request as soon as it is ready. Use :meth:`run` once.

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
        super().__init__(samples, config, api_key=api_key, progress=progress)
        self.limiter = AdaptiveConcurrency(config.concurrency)
        self.budget = Budget(config.max_requests, config.max_tokens)
        self.cpu = StageCpu()
        self._refusals = 0
        self._successes = 0
        self._stopping: Optional[str] = None

    async def run(self) -> RunSummary:
        started, loop_cpu = time.monotonic(), time.thread_time()
        self.builder.check_fields(self.samples)
        check_output_fields(self.samples, self.config)
        client = self._client()
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(MEDIA_THREADS, "gemini-media") as media_pool, \
                concurrent.futures.ThreadPoolExecutor(1, "gemini-db") as db_pool:
            try:
                await loop.run_in_executor(db_pool, self._count_selection)
                await self._process_all(client, loop, media_pool, db_pool)
            except StopRun as e:
                self.summary.stopped = str(e)
            finally:
                await client.aclose()
                await loop.run_in_executor(db_pool, self._write, self.writer.take())

        self.cpu.loop = time.thread_time() - loop_cpu
        summary = self.summary
        if self._stopping and not summary.stopped:
            summary.stopped = f"{self._stopping}; re-run the same job to go on where it stopped"
        if self.uploads is not None:
            summary.files_uploaded, summary.files_reused = self.uploads.uploaded, self.uploads.reused
        summary.lowest_concurrency = self.limiter.lowest
        return self._finish(started)

    async def _process_all(self, client, loop, media_pool, db_pool) -> None:
        workers = self.config.concurrency + PREFETCH
        queue: asyncio.Queue = asyncio.Queue(maxsize=workers)
        writing: set[asyncio.Future] = set()

        def finish(result: SampleResult) -> None:
            if self._add_result(result):
                write_due()
            self._report_progress()

        def write_due() -> None:
            future = loop.run_in_executor(db_pool, self._write, self.writer.take())
            writing.add(future)
            future.add_done_callback(writing.discard)

        async def produce() -> None:
            pages = self._pending_pages()
            while not self._stopping and (page := await loop.run_in_executor(db_pool, next, pages, None)):
                for item in page:
                    if self._stopping:
                        break
                    if isinstance(item, SampleResult):
                        finish(item)
                    else:
                        await queue.put(item)
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

    def _timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Runs image preparation in a worker thread, counting its CPU."""
        cpu = time.thread_time()
        try:
            return fn(*args)
        finally:
            self.cpu.add_prepare(time.thread_time() - cpu)

    async def _process_one(self, client: GeminiClient, work: SampleSource, loop, media_pool) -> Optional[SampleResult]:
        """One sample's result, or ``None`` when the job stopped before it was answered."""
        # the place in line is taken now, so requests leave in the order samples come
        places = [self.limiter.slot()]
        built = None
        try:
            built = await self._build(
                work, client, lambda fn, *args: loop.run_in_executor(media_pool, self._timed, fn, *args))
        finally:
            if not isinstance(built, BuiltRequest):
                places[0].abandon()  # nothing to send (failed, stopped, cancelled): the next one goes
        if isinstance(built, SampleResult):
            return built
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

        try:
            reply = await generate_with_retries(send, max_attempts=self.config.max_attempts)
        except BudgetExhausted as e:
            self._stopping = self._stopping or str(e)
            return None
        except LimiterClosed:
            return None
        except GeminiError as e:
            return SampleResult(work.sample_id, STATUS_FAILED, reason=e.message)

        self._successes += 1
        self._count_tokens(reply.usage)
        cpu = time.thread_time()
        try:
            result = self._interpret(work, reply, image)
        finally:
            self.cpu.interpret += time.thread_time() - cpu
        if work.values.get("metadata.width") is None and image.data:
            # computed from the image as shown, EXIF applied (not for images sent by URI)
            result = replace(result, fields={**result.fields, "metadata": image_metadata(image)})
        return result

    def _check_stop(self, error: GeminiError) -> None:
        """Also stops after :data:`REFUSALS_BEFORE_STOP` refusals with no reply yet."""
        if not error.fatal and not error.retryable:
            self._refusals += 1
            if self._successes == 0 and self._refusals >= REFUSALS_BEFORE_STOP:
                self._stop(f"Gemini refused the first {self._refusals} requests, so the run "
                           f"stopped (check the model, prompt and options). Last refusal: {error.message}")
        super()._check_stop(error)

    def _stop(self, message: str) -> NoReturn:
        self.limiter.close()  # no request waiting for a slot leaves
        super()._stop(message)


def _not_an_image(sample_id: str, path: str) -> Optional[SampleResult]:
    """The failed result of a sample whose media Gemini is not sent (video, 3D), else ``None``."""
    media_type = fom.get_media_type(path) if path else None
    if media_type not in _NOT_IMAGES:
        return None
    return SampleResult(
        sample_id, STATUS_FAILED,
        reason=f"{media_type} samples are not supported; only images are sent to Gemini: {path}",
    )


def _reason_kind(reason: Optional[str]) -> str:
    """A failure reason without its per-sample details, for counting."""
    if not reason:
        return "unknown"
    return reason.split(":", 1)[0].strip()
