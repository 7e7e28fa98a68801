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
from .media import image_metadata
from .request_builder import RequestBuilder, SampleError, SampleSource
from .runs import (
    STATUS_FAILED,
    STATUS_OK,
    STATUS_PARTIAL,
    LabelWriter,
    RunSummary,
    SampleResult,
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
    """A run stopped before its end (bad key, unknown model, refused requests).

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


class AnnotationJob:
    """One run of one configuration over a collection. Use :meth:`run` once."""

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
        self.summary = RunSummary(run_key=config.resolved_run_key, label_field=config.label_field)
        self._provenance = Provenance(model=config.model, run_key=config.resolved_run_key)
        self.uploads = (UploadCache(self.dataset, upload_endpoint(config.base_url))
                        if config.image_transport == "file_api" else None)
        self.builder = RequestBuilder(config, self.task, uploads=self.uploads)
        self._without_metadata: set[str] = set()
        self._usage = TokenUsage()
        self._reasons: Counter = Counter()
        self._refusals = 0
        self._successes = 0
        self._last_progress = 0.0
        self._recorded = False
        self.writer = LabelWriter(self.dataset, config, on_first_write=self._record)

    def _record(self) -> None:
        record_run(self.samples, self.config)
        self._recorded = True

    async def run(self) -> RunSummary:
        started = time.monotonic()
        self.builder.check_fields(self.samples)
        client = GeminiClient.from_config(self.config, api_key=self._api_key)
        todo, unsendable = self._select()
        self.summary.selected = len(todo) + len(unsendable) + self.summary.skipped
        for result in unsendable:
            self._account(result)
            self.writer.add(result)

        loop = asyncio.get_running_loop()
        workers = min(4, os.cpu_count() or 1)
        stop: Optional[GeminiError] = None
        with concurrent.futures.ThreadPoolExecutor(workers, "gemini-media") as media_pool, \
                concurrent.futures.ThreadPoolExecutor(1, "gemini-db") as db_pool:
            try:
                await self._process_all(client, todo, loop, media_pool, db_pool)
            except _Stop as e:
                stop = e.error
            finally:
                await client.aclose()
                await loop.run_in_executor(db_pool, self.writer.flush)

        self.summary.elapsed_seconds = round(time.monotonic() - started, 3)
        self.summary.input_tokens = self._usage.input_tokens
        self.summary.output_tokens = self._usage.output_tokens
        self.summary.thought_tokens = self._usage.thought_tokens
        if self.uploads is not None:
            self.summary.files_uploaded = self.uploads.uploaded
            self.summary.files_reused = self.uploads.reused
        self.summary.failure_reasons = dict(self._reasons)
        if stop is not None:
            self.summary.stopped = stop.message
        if self._recorded:
            self.writer.declare_attributes()
            save_run_summary(self.dataset, self.summary)
        self._report_progress(force=True)
        if stop is not None:
            raise AnnotationStopped(stop.message, self.summary)
        return self.summary

    def _select(self) -> tuple[list[SampleSource], list[SampleResult]]:
        """The samples to send, and those that cannot be sent (not images).

        With ``if_labeled="skip"``, samples that already have labels in the field
        or finished in an earlier run of it are skipped, which is what makes a
        re-run resume; ``retry_failed`` sends only the samples that failed.
        """
        config = self.config
        fields = ["id", "filepath"]
        has_status = self.dataset.has_field(config.status_field)
        if has_status:
            fields.append(config.status_field)
        extra_fields = self.builder.fields
        values = self.samples.values(fields + extra_fields)
        ids, paths = values[0], values[1]
        statuses = values[2] if has_status else [None] * len(ids)
        extra_values = values[len(fields):]
        labeled: set[str] = set()
        if config.if_labeled == "skip" and self.dataset.has_field(config.label_field):
            labeled = set(self.samples.exists(config.label_field).values("id"))
        self._without_metadata = set(self.samples.exists("metadata", False).values("id"))

        todo, unsendable = [], []
        for i, (sample_id, path, status) in enumerate(zip(ids, paths, statuses)):
            if config.retry_failed:
                send = status == STATUS_FAILED
            elif config.if_labeled == "skip":
                send = status is None and sample_id not in labeled
            else:
                send = True
            if not send:
                self.summary.skipped += 1
                continue
            media_type = fom.get_media_type(path) if path else None
            if media_type in _NOT_IMAGES:
                unsendable.append(SampleResult(
                    sample_id, STATUS_FAILED,
                    reason=f"{media_type} samples are not supported; only images are sent to Gemini: {path}",
                ))
                continue
            todo.append(SampleSource(sample_id, path, {f: v[i] for f, v in zip(extra_fields, extra_values)}))
        return todo, unsendable

    async def _process_all(self, client, todo, loop, media_pool, db_pool) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        for work in todo:
            queue.put_nowait(work)
        flushing: set[asyncio.Future] = set()

        async def worker():
            while True:
                try:
                    work = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                result = await self._process_one(client, work, loop, media_pool)
                self._account(result)
                if self.writer.add(result):
                    batch = self.writer.take()
                    future = loop.run_in_executor(db_pool, self.writer.write, batch)
                    flushing.add(future)
                    future.add_done_callback(flushing.discard)
                self._report_progress()

        tasks = [asyncio.create_task(worker()) for _ in range(min(self.config.concurrency, len(todo)))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if flushing:
                await asyncio.gather(*flushing)

    async def _process_one(self, client: GeminiClient, work: SampleSource, loop, media_pool) -> SampleResult:
        config = self.config
        try:
            built = await self.builder.build(
                work, client, lambda fn, *args: loop.run_in_executor(media_pool, fn, *args))
        except SampleError as e:
            return SampleResult(work.sample_id, STATUS_FAILED, reason=str(e))
        except GeminiError as e:
            self._check_stop(e)
            return SampleResult(work.sample_id, STATUS_FAILED, reason=f"upload failed: {e.message}")
        self.summary.estimated_input_tokens += built.estimated_input_tokens
        request, image = built.request, built.image

        def count_retry(error: GeminiError, attempt: int) -> None:
            self.summary.retries += 1
            self.summary.requests += 1

        try:
            self.summary.requests += 1
            async def send() -> GeminiReply:
                return await client.generate(request)

            reply = await generate_with_retries(
                send,
                max_attempts=config.max_attempts,
                on_retry=count_retry,
            )
        except GeminiError as e:
            self._check_stop(e)
            return SampleResult(work.sample_id, STATUS_FAILED, reason=e.message)

        self._successes += 1
        self._usage = self._usage + reply.usage
        result = self._interpret(work, reply, image)
        if work.sample_id in self._without_metadata and image.data:
            # computed from the image as shown, EXIF applied (not for images sent by URI)
            result = replace(result, fields={**result.fields, "metadata": image_metadata(image)})
        return result

    def _interpret(self, work: SampleSource, reply: GeminiReply, image) -> SampleResult:
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
        return SampleResult(work.sample_id, status, outcome.label, reason, outcome.label_count,
                            fields=outcome.fields)

    def _check_stop(self, error: GeminiError) -> None:
        if error.fatal:
            raise _Stop(error)
        if not error.retryable:
            self._refusals += 1
            if self._successes == 0 and self._refusals >= REFUSALS_BEFORE_STOP:
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
