"""Large jobs through Gemini's Batch API: half the price, answers within 24 hours.

A batch run builds every sample's request exactly as an online run does
(:mod:`gemini_annotate.request_builder`), submits them as one batch job
(inline, or as a JSONL file through the File API when they are too large to
inline), then polls until the job ends and ingests the answers through the
task's usual interpreter and the batched writer.

The job's name is saved on the FiftyOne run the moment it is submitted. A
process that stops (killed, closed laptop, ``batch_wait=False``) loses nothing:
running the same configuration again finds the pending job on the run and
resumes polling it instead of submitting another, and a job is marked
ingested once its answers are written, so each answer is written once. An
answer whose sample was labeled while the job ran is dropped, as a rerun
would skip that sample.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import time
from dataclasses import replace
from typing import Optional

from .gemini import GeminiClient
from .job import MEDIA_THREADS, AnnotationJob, StopRun
from .media import ImageError, PreparedImage, fit_within, read_image_size
from .messages import BatchStatus, GeminiError, GeminiRequest
from .output_fields import check_output_fields
from .request_builder import SampleSource, answer_requests
from .results import Answer, SampleResult
from .retries import generate_with_retries
from .run_records import RunSummary, load_batch_job, load_run_summary, save_run_summary
from .selection import pending_paths
from .sync import gather_limited

INLINE_LIMIT_BYTES = 19_000_000
"""Above this request size (Google's limit for an inline batch is 20 MB) the
requests go as a JSONL file through the File API."""

PENDING, INGESTED, ENDED = "pending", "ingested", "ended"

# what a resumed job must share with the one that submitted it
_JOB_IDENTITY = ("task", "label_field", "classes", "prompt", "question", "multi_label", "model",
                 "unknown_labels", "if_labeled", "consensus")


class BatchJobMismatch(ValueError):
    """A run key has a pending batch job submitted with another configuration."""


class BatchAnnotationJob(AnnotationJob):
    """An annotation run through the Batch API. Use :meth:`run` once.

    Attributes:
        job: the run's batch job record (name, state, ...), saved with the
            summary; ``None`` until a job is submitted or found pending.
    """

    job: Optional[dict] = None

    async def run(self) -> RunSummary:
        started = time.monotonic()
        self.builder.check_fields(self.samples)
        check_output_fields(self.samples, self.config)
        client = self._client()
        waiting = None
        try:
            waiting = await self._submit_or_collect(client)
        except StopRun as e:
            self.summary.stopped = str(e)
        finally:
            await client.aclose()
        return self._finish(started, self.job, waiting)

    async def _submit_or_collect(self, client: GeminiClient) -> Optional[str]:
        """Submits a job (or finds the pending one) and ingests its answers once it has ended.

        Returns:
            what the run leaves waiting, when the job is still pending
        """
        job = load_batch_job(self.samples, self.config.resolved_run_key)
        if job and job.get("state") == PENDING:
            self._check_same_job(job)
            saved = load_run_summary(self.samples, self.config.resolved_run_key)
            if saved is not None:
                self.summary = replace(saved, stopped=None)  # going on where it stopped
            self.job = job
        else:
            if not await self._submit(client):
                return None
            if not self.config.batch_wait:
                return _waiting_for(self.job["name"], "submitted")
        status = await self._poll(client, self.job["name"], until_done=self.config.batch_wait)
        if not status.done:
            return _waiting_for(status.name, status.state)
        if status.state not in ("SUCCEEDED", "PARTIALLY_SUCCEEDED"):
            self.job = {**self.job, "state": ENDED, "ended_as": status.state}
            self._stop(f"batch job {status.name} ended {status.state}"
                       f"{': ' + status.error if status.error else ''}; run again to submit a new one")
        self._ingest(status)
        self.job = {**self.job, "state": INGESTED, "ingested": _now()}
        return None

    # submitting

    async def _submit(self, client: GeminiClient) -> bool:
        """Builds and submits the requests, and saves the job on the run; ``False``: nothing to send."""
        self._count_selection()
        todo: list[SampleSource] = []
        failures: list[SampleResult] = []
        for page in self._pending_pages():
            for item in page:
                (failures if isinstance(item, SampleResult) else todo).append(item)
        requests: list[tuple[str, GeminiRequest]] = []
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(MEDIA_THREADS, "gemini-media") as pool:
            async def build(source: SampleSource) -> None:
                built = await self._build(source, client, lambda fn, *args: loop.run_in_executor(pool, fn, *args))
                if isinstance(built, SampleResult):
                    failures.append(built)
                else:
                    answers = answer_requests(built.request, self.config.consensus)
                    requests.extend((_request_key(source.sample_id, i, len(answers)), request)
                                    for i, request in enumerate(answers, start=1))

            await gather_limited((build(source) for source in todo), self.config.concurrency)

        for result in failures:
            self._add_result(result)
        if self.uploads is not None:
            self.summary.files_uploaded = self.uploads.uploaded
            self.summary.files_reused = self.uploads.reused
        if not requests:
            return False

        size = sum(len(r.prompt) + sum(len(i.data or b"") * 4 // 3 for i in r.images) for _, r in requests)
        via_file = size > INLINE_LIMIT_BYTES
        display_name = f"gemini-annotate {self.dataset.name} {self.config.resolved_run_key}"
        async def submit() -> BatchStatus:
            return await client.submit_batch(requests, display_name=display_name, via_file=via_file)

        try:
            status = await generate_with_retries(submit, max_attempts=self.config.max_attempts)
        except GeminiError as e:
            self._check_stop(e)
            self._stop(f"the batch job could not be submitted: {e.message}")
        self.summary.requests += len(requests)
        self.summary.batch_job = status.name
        self.job = {"name": status.name, "state": PENDING, "submitted": _now(), "requests": len(requests),
                    "via_file": via_file, "config": {k: self.config.to_record()[k] for k in _JOB_IDENTITY}}
        # saved at once: a restarted process finds the job here
        self._record()
        self.writer.flush()
        save_run_summary(self.dataset, self.summary, batch_job=self.job)
        self._report_progress(force=True, message=f"batch job {status.name} submitted "
                                                   f"({len(requests)} requests)")
        return True

    def _check_same_job(self, record: dict) -> None:
        mine = {k: self.config.to_record()[k] for k in _JOB_IDENTITY}
        theirs = record.get("config", {})
        differing = [k for k in _JOB_IDENTITY if k in theirs and theirs[k] != mine[k]]
        if differing:
            raise BatchJobMismatch(
                f"run {self.config.resolved_run_key!r} has a pending batch job ({record['name']}) "
                f"submitted with other {', '.join(differing)}; rerun with that configuration to "
                f"collect it, or choose another run_key")

    # waiting

    async def _poll(self, client: GeminiClient, name: str, *, until_done: bool) -> BatchStatus:
        """The job's status: checked once, or polled until the job ends, reporting its state."""
        async def check() -> BatchStatus:
            return await client.get_batch(name)

        while True:
            try:
                status = await generate_with_retries(check, max_attempts=self.config.max_attempts)
            except GeminiError as e:
                self._check_stop(e)
                self._stop(f"could not check batch job {name}: {e.message}; "
                           "run again to resume waiting for it")
            self._report_progress(force=True, message=f"batch job {name}: {status.state}")
            if status.done or not until_done:
                return status
            await asyncio.sleep(self.config.batch_poll_interval)

    # ingesting

    def _ingest(self, status: BatchStatus) -> None:
        """Interprets every answer and buffers its result, through the same code as an online run."""
        answers_of: dict[str, list[tuple[int, Answer]]] = {}
        for result in status.results or ():
            sample_id, number = _sample_of(result.key)
            if result.reply is not None:
                self._count_tokens(result.reply.usage)
            answer = result.reply if result.reply is not None else (result.error or "the batch request failed")
            answers_of.setdefault(sample_id, []).append((number, answer))
        path_of = pending_paths(self.samples, self.config, [key for key in answers_of if _is_object_id(key)])
        for sample_id, numbered in answers_of.items():
            if sample_id not in path_of:
                self.summary.skipped += 1  # labeled meanwhile, or no longer in the dataset
                continue
            answers = [answer for _, answer in sorted(numbered, key=lambda pair: pair[0])]
            self._add_result(self._result(SampleSource(sample_id, path_of[sample_id]), answers,
                                          self._geometry(path_of[sample_id])))

    def _geometry(self, path: str) -> PreparedImage:
        """The image's size as it was sent (from its header), for tasks whose labels need it."""
        width = height = display_width = display_height = 0
        if self.task.spatial:
            try:
                display_width, display_height = read_image_size(path)
                width, height = fit_within(display_width, display_height, self.config.max_image_side)
            except ImageError:
                pass
        return PreparedImage(b"", "", width, height, display_width, display_height)


def _waiting_for(name: str, state: str) -> str:
    return f"batch job {name} is {state.lower()}; run again to collect its results"


def _request_key(sample_id: str, number: int, answers: int) -> str:
    """A request's key in the job: the sample's id, and the answer's number in a consensus."""
    return sample_id if answers == 1 else f"{sample_id}#{number}"


def _sample_of(key: str) -> tuple[str, int]:
    """The sample id and answer number of a request key (see :func:`_request_key`)."""
    sample_id, _, number = key.partition("#")
    return sample_id, int(number) if number.isdigit() else 1


def _is_object_id(value: str) -> bool:
    return len(value) == 24 and all(c in "0123456789abcdef" for c in value)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
