"""What every annotation job shares, however it sends: selection, requests, results, summary.

    sample → media (prepare image) → request → gemini (reply) → results (task
    reads the text) → writer (batched write, run record)

:class:`AnnotationJob` holds the stages; :class:`~gemini_annotate.online.OnlineAnnotationJob`
sends requests one by one as they are ready, :class:`~gemini_annotate.batch.BatchAnnotationJob`
sends them as one Batch API job. Both import this module; :mod:`gemini_annotate.pipeline`
chooses between them.
"""

from __future__ import annotations

import abc
import os
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterator, NoReturn, Optional, Sequence, Union

import fiftyone as fo
import fiftyone.core.media as fom

from .budget_store import SharedBudget
from .config import AnnotateConfig
from .gemini import GeminiClient
from .label_factory import make_label
from .labels import labels_in
from .limits import Budget
from .media import PreparedImage
from .messages import GeminiError, TokenUsage
from .request_builder import BuiltRequest, RequestBuilder, RunBlocking, SampleError, SampleSource
from .results import Answer, SampleResult, failed_result, sample_result
from .review.calibration import calibrate_labels, load_calibration
from .review_colors import color_by_review_status
from .run_attempts import finish_shard, join_attempt, resumes_by_stamp
from .run_records import RunSummary, record_run, save_run_summary
from .selection import count_selection, index_selection, iter_pending
from .tasks import ReplyContext, TaskSpec, get_task
from .uploads import UploadCache, upload_endpoint
from .vocabulary import STATUS_FAILED, STATUS_PARTIAL, Provenance
from .writer import LabelWriter

_NOT_IMAGES = frozenset({fom.VIDEO, fom.POINT_CLOUD, fom.THREE_D})

PROGRESS_INTERVAL = 0.5
"""Seconds between progress callbacks: often enough to watch, rare enough for the App."""


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


class StopRun(Exception):
    """Raised by a job's stages when no later request can succeed; its message says why.

    A job's :meth:`~AnnotationJob.run` catches it, saves what was finished and
    raises :class:`AnnotationStopped`.
    """


PAGE_SIZE = 1000
"""Samples read from the database per query while streaming over a view."""


MEDIA_THREADS = min(4, os.cpu_count() or 1)
"""Threads preparing images (decoding, EXIF, resizing, encoding) off the event loop."""


class AnnotationJob(abc.ABC):
    """One run of one configuration over a collection (or one shard of it). Use :meth:`run` once.

    This class is what every way of sending shares: the selection of the
    samples still to send, their requests, the reading of the replies, the
    summary, the batched writes and the run record. A subclass sends:
    :class:`~gemini_annotate.online.OnlineAnnotationJob` streams requests through the async client,
    :class:`gemini_annotate.batch.BatchAnnotationJob` submits them as one Batch
    API job. Both go through the same methods below, so a sample gets the same
    request and the same labels either way.
    """

    budget: Optional[Budget] = None
    """The caps on what the job sends, for a job that sends requests one by one."""

    def __init__(
        self,
        samples: fo.core.collections.SampleCollection,
        config: AnnotateConfig,
        *,
        api_key: Optional[str] = None,
        progress: Optional[ProgressCallback] = None,
    ):
        self.samples = samples
        self.dataset = samples._dataset  # a view has no public handle on its dataset
        self.config = config
        self.task: TaskSpec = get_task(config.task)
        self.summary = RunSummary(run_key=config.resolved_run_key, label_field=config.label_field,
                                  shard=config.shard, num_shards=config.num_shards)
        self.uploads = (UploadCache(self.dataset, upload_endpoint(config.base_url))
                        if config.image_transport == "file_api" else None)
        self.builder = RequestBuilder(config, self.task, uploads=self.uploads)
        # an overwrite resumes by what this attempt of the run wrote (gemini_annotate.run_attempts)
        self.attempt = join_attempt(self.dataset, config.resolved_run_key) if resumes_by_stamp(config) else None
        self.writer = LabelWriter(self.dataset, config, attempt=self.attempt, on_first_write=self._record)
        self._api_key = api_key
        self._progress = progress
        self._provenance = Provenance(model=config.model, run_key=config.resolved_run_key)
        self._recorded = False
        self._last_progress = 0.0
        # a run whose reviews were calibrated writes calibrated confidences from then on
        self._calibration = load_calibration(samples, config.resolved_run_key)

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
        """Records the run on the dataset (once, just before its first write), and has the App
        draw its labels by review status unless the dataset says otherwise."""
        if not self._recorded:
            record_run(self.samples, self.config)
            labelled = [name for name, kind in self.task.output_fields(self.config).items() if kind is not str]
            color_by_review_status(self.dataset, labelled)
            self._recorded = True

    def _count_selection(self) -> None:
        """Counts the samples of the job, and those skipped as done (by ``if_labeled``)."""
        index_selection(self.samples, self.config)
        selected, pending = count_selection(self.samples, self.config, self.attempt)
        self.summary.selected, self.summary.skipped = selected, selected - pending

    def _pending_pages(self) -> Iterator[list[Union[SampleSource, SampleResult]]]:
        """The samples still to send, a page at a time: what each image's request
        needs, or the failed result of a sample that is not an image."""
        # metadata.width tells which samples lack metadata (computed from the image sent)
        fields = list(dict.fromkeys([*self.builder.fields, "metadata.width"]))
        for page in iter_pending(self.samples, self.config, fields, PAGE_SIZE, self.attempt):
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
            return failed_result(source.sample_id, str(e))
        except GeminiError as e:
            self._check_stop(e)
            return failed_result(source.sample_id, f"upload failed: {e.message}")
        # every answer a consensus asks for costs the same input again
        self.summary.estimated_input_tokens += built.estimated_input_tokens * self.config.consensus
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

    def _result(self, work: SampleSource, answers: Sequence[Answer], image: PreparedImage) -> SampleResult:
        """The sample's result from its answers (:func:`~gemini_annotate.results.sample_result`),
        with the image's metadata when the sample had none."""
        context = ReplyContext(self.config, (image.display_width, image.display_height), self._provenance)
        result = sample_result(work.sample_id, answers, self.task, context)
        if self._calibration is not None:
            for value in (result.label, *result.fields.values()):
                calibrate_labels(labels_in(value), self._calibration)
        if work.values.get("metadata.width") is None and image.data:
            # computed from the image as shown, EXIF applied (not for images sent by URI)
            result = replace(result, fields={**result.fields, "metadata": image_metadata(image)})
        return result

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
            self.writer.declare_attributes()  # what the labels written carry; no scan of the dataset
            index_selection(self.samples, self.config)  # once, after a first run, for the next
            save_run_summary(self.dataset, summary, batch_job=batch_job)
        if isinstance(self.budget, SharedBudget):
            self.budget.end()  # not killed: once every shard has ended, a new run has a new budget
        if self.attempt is not None and not summary.stopped and message is None:
            # this shard went through its selection: once every shard has, a new run starts over
            finish_shard(self.dataset, summary.run_key, self.attempt, self.config.shard, self.config.num_shards)
        self._report_progress(force=True, message=message)
        if summary.stopped:
            raise AnnotationStopped(summary.stopped, summary)
        return summary




def image_metadata(image: PreparedImage) -> fo.ImageMetadata:
    """FiftyOne metadata of a prepared image's file, with its size as the App shows it."""
    return make_label(
        fo.ImageMetadata,
        size_bytes=image.source_size_bytes,
        mime_type=image.source_mime_type,
        width=image.display_width,
        height=image.display_height,
        num_channels=image.source_channels,
    )


def _not_an_image(sample_id: str, path: str) -> Optional[SampleResult]:
    """The failed result of a sample whose media Gemini is not sent (video, 3D), else ``None``."""
    media_type = fom.get_media_type(path) if path else None
    if media_type not in _NOT_IMAGES:
        return None
    return failed_result(
        sample_id, f"{media_type} samples are not supported; only images are sent to Gemini: {path}")


def _reason_kind(reason: Optional[str]) -> str:
    """A failure reason without its per-sample details, for counting."""
    if not reason:
        return "unknown"
    return reason.split(":", 1)[0].strip()

