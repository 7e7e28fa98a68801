"""Past one core: one online run split over ``workers`` local processes, one shard each.

One process spends 6–8 ms of CPU per 1-MP JPEG at full load (the SDK and
its transport take most of it), so it tops out near 110–180 images/s
whatever the concurrency (``benchmarks/throughput.py``). With ``workers=N``, :func:`run_in_workers` starts N processes
(the ``spawn`` start method: a forked FiftyOne with an open MongoDB client is
unsafe) and each runs one shard of the same run, so they never send the same
sample, resume like any run and share one run record
(:mod:`gemini_annotate.run_records` adds their summaries up).

How the parts are cut:

- A job that is itself shard ``s`` of ``M`` (``num_shards``) is split within
  that shard: worker ``i`` runs shard ``s + M * i`` of ``M * N``, and the
  samples of those N shards are exactly those of shard ``s`` of ``M``
  (:func:`gemini_annotate.selection.shard_of` takes the id modulo the count).
- ``concurrency``, ``max_requests`` and ``max_tokens`` are totals, split
  evenly between the workers; the request and token pace are split by
  ``num_shards`` (the workers run with ``num_shards = M * N``).

A cascade (``escalate_to``) is run by this process, one pass after the
other (:func:`gemini_annotate.cascade.run_cascade`): each pass runs in the
workers, and the first pass's answers are judged here in between, once every
worker has finished it. The second pass's budget is what the first left, and
it runs in fewer workers when that is less than a request per worker.

The workers start sending together: each loads its samples and sets its job
up (imports, database), says it is ready, and waits until every worker has
(or ended), so no worker's requests compete with another's start-up for the
cores (:data:`READY_TIMEOUT_SECONDS` bounds the wait).

Each worker's progress is sent to this process and added up; an error in one
worker is reported once the others finish (:class:`AnnotationStopped`,
with the summary of what was done), and Ctrl-C stops them all, each saving what
it finished.

Scripts that use workers need the usual ``if __name__ == "__main__":`` guard,
as with any ``spawn`` multiprocessing: each worker imports the main module.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
import traceback
from dataclasses import dataclass
from multiprocessing import connection
from typing import Any, Callable, Optional

import fiftyone as fo

from .config import AnnotateConfig
from .job import AnnotationStopped, ProgressCallback, RunProgress
from .online import OnlineAnnotationJob
from .output_fields import check_output_fields
from .run_records import RunSummary, clear_shard_summaries, record_run
from .sync import run_sync

STOP_GRACE_SECONDS = 30.0
"""How long workers asked to stop (Ctrl-C) may take to save what they finished."""

READY_TIMEOUT_SECONDS = 120.0
"""How long a ready worker waits for the others before it starts anyway."""


def _split(total: Optional[int], parts: int, index: int) -> Optional[int]:
    """Part ``index`` of ``total`` split into ``parts`` near-equal integers (``None`` stays ``None``)."""
    if total is None:
        return None
    return total // parts + (1 if index < total % parts else 0)


def worker_configs(config: AnnotateConfig) -> list[AnnotateConfig]:
    """The configuration each worker process runs: one shard of the job each.

    Example::

        >>> parts = worker_configs(AnnotateConfig(workers=2, concurrency=33))
        >>> [(c.shard, c.num_shards, c.concurrency, c.workers) for c in parts]
        [(0, 2, 17, 1), (1, 2, 16, 1)]
    """
    n, m = config.workers, config.num_shards
    return [config.model_copy(update={
        "workers": 1,
        "shard": config.shard + m * i,
        "num_shards": m * n,
        "concurrency": _split(config.concurrency, n, i),
        "max_requests": _split(config.max_requests, n, i),
        "max_tokens": _split(config.max_tokens, n, i),
    }) for i in range(n)]


@dataclass
class _WorkerState:
    """What this process knows of one worker."""

    progress: Optional[RunProgress] = None
    summary: Optional[RunSummary] = None
    error: Optional[str] = None
    ready: bool = False
    finished: bool = False


def run_in_workers(
    samples: fo.core.collections.SampleCollection,
    config: AnnotateConfig,
    *,
    api_key: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
) -> RunSummary:
    """Runs an online job in ``config.workers`` processes and returns their summaries added up.

    Args:
        samples: the dataset or view to annotate (it must be in the database:
            each worker loads it by name and rebuilds the view).
        config: the job; ``config.workers`` processes run one shard of it each.
        api_key: the API key, handed to the workers (never stored).
        progress: called with the workers' progress added up.

    Raises:
        AnnotationStopped: a worker stopped (bad key, budget) or failed; the
            others ran to their end and what every worker finished is saved.
        KeyboardInterrupt: the run was interrupted; every worker was asked to
            stop and saved what it finished.
    """
    check_output_fields(samples, config)  # refused here once, not by every worker
    record_run(samples, config)
    if config.num_shards == 1:  # a previous split's summaries would be added to this one's
        clear_shard_summaries(samples._dataset, config.resolved_run_key)
    dataset_name = samples._dataset.name
    stages = samples._serialize() if isinstance(samples, fo.DatasetView) else []

    context = multiprocessing.get_context("spawn")
    # a pipe per worker, not one shared queue: a worker killed while writing
    # would leave a queue's lock held, and the other workers blocked on it
    pipes = [context.Pipe(duplex=False) for _ in range(config.workers)]
    go = context.Event()
    processes = [
        context.Process(target=_worker_main, name=f"gemini-annotate-worker-{i}", daemon=True,
                        args=(i, dataset_name, stages, part.model_dump(), api_key, pipes[i][1], go))
        for i, part in enumerate(worker_configs(config))
    ]
    states = [_WorkerState() for _ in processes]
    readers = {reader: i for i, (reader, _) in enumerate(pipes)}
    try:
        for process, (_, writer) in zip(processes, pipes):
            process.start()
            writer.close()  # the worker holds its end: the pipe ends when the worker does
        _collect(readers, states, progress, go=go)
    except KeyboardInterrupt:
        _stop_all(processes, readers, states)
        raise
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join()
        for reader in readers:
            reader.close()
        samples._dataset.reload()  # the workers added fields and labels
    for process, state in zip(processes, states):
        if state.summary is None and state.error is None:
            # ended without a word: killed, out of memory, a crash in native code
            state.error = f"the worker process ended with exit code {process.exitcode}"
    return _total(config, states)


def _collect(readers: dict, states: list[_WorkerState], progress: Optional[ProgressCallback],
             until: Optional[float] = None, go=None) -> None:
    """Receives the workers' messages until every worker's pipe has ended (or ``until``, a
    ``time.monotonic()``); sets ``go`` once every worker is ready or has ended."""
    open_readers = [reader for reader, i in readers.items() if not states[i].finished]
    while open_readers and (until is None or time.monotonic() < until):
        for reader in connection.wait(open_readers, timeout=0.5):
            state = states[readers[reader]]
            try:
                kind, payload = reader.recv()
            except (EOFError, OSError):
                state.finished = True
                open_readers.remove(reader)
                kind, payload = "ended", None
            if kind == "ready":
                state.ready = True
            elif kind == "progress":
                state.progress = payload
                if progress is not None:
                    progress(_added_up([s.progress for s in states if s.progress is not None]))
            elif kind == "summary":
                state.summary = RunSummary.from_dict(payload)
            elif kind == "error":
                state.error = payload
            if go is not None and all(s.ready or s.finished for s in states):
                go.set()


def _added_up(parts: list[RunProgress]) -> RunProgress:
    message = next((p.message for p in parts if p.message), None)
    return RunProgress(total=sum(p.total for p in parts), done=sum(p.done for p in parts),
                       failed=sum(p.failed for p in parts), labels=sum(p.labels for p in parts),
                       message=message)


def _stop_all(processes, readers: dict, states: list[_WorkerState]) -> None:
    """Asks every worker to stop (SIGTERM) and lets them report while they save what they finished."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    _collect(readers, states, None, until=time.monotonic() + STOP_GRACE_SECONDS)


def _total(config: AnnotateConfig, states: list[_WorkerState]) -> RunSummary:
    """The workers' summaries added up; raises :class:`AnnotationStopped` when one failed or stopped."""
    parts = [state.summary for state in states if state.summary is not None]
    total = RunSummary.total(parts) if parts else RunSummary(
        run_key=config.resolved_run_key, label_field=config.label_field, shard=None,
        num_shards=config.num_shards * config.workers)
    errors = [f"worker {i} (shard {config.shard + config.num_shards * i} of "
              f"{config.num_shards * config.workers}) failed: {state.error}"
              for i, state in enumerate(states) if state.error]
    if errors:
        total.stopped = "; ".join(filter(None, [total.stopped, *errors,
                                                "re-run the same job to go on where it stopped"]))
    if total.stopped:
        raise AnnotationStopped(total.stopped, total)
    return total


def _worker_main(index: int, dataset_name: str, stages: list[Any], config_fields: dict,
                 api_key: Optional[str], pipe, go) -> None:
    """One worker process: loads the samples, runs its shard, reports progress and its summary.

    Ctrl-C reaches the worker through the parent (a terminal sends it to
    every process of the group, the parent passes it on once): the worker
    ignores SIGINT and stops on SIGTERM, writing the results it finished.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with pipe:
        run_worker(dataset_name, stages, config_fields, api_key, pipe.send,
                   wait_for_others=lambda: go.wait(READY_TIMEOUT_SECONDS))


def run_worker(dataset_name: str, stages: list[Any], config_fields: dict, api_key: Optional[str],
               send: Callable[[tuple], None], wait_for_others: Callable[[], Any] = lambda: None) -> None:
    """Runs one worker's shard, sending ``(kind, payload)`` messages: ``ready`` once its job is
    set up (it then waits with ``wait_for_others``), ``progress`` snapshots, then its ``summary``
    or an ``error``."""
    try:
        dataset = fo.load_dataset(dataset_name)
        samples = fo.DatasetView._build(dataset, stages) if stages else dataset
        config = AnnotateConfig.model_validate(config_fields)

        def report(snapshot: RunProgress) -> None:
            send(("progress", snapshot))

        job = OnlineAnnotationJob(samples, config, api_key=api_key, progress=report)
        send(("ready", None))
        wait_for_others()
        try:
            summary = run_sync(job.run)
        except AnnotationStopped as e:
            summary = e.summary
        send(("summary", summary.to_dict()))
    except KeyboardInterrupt:
        send(("error", "interrupted"))
    except BaseException as e:  # reported to the parent, which says which worker failed
        traceback.print_exc()
        send(("error", f"{type(e).__name__}: {e}"))
