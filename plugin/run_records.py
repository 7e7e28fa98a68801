"""Run records: each job recorded with FiftyOne's run machinery, and its summary.

A job is recorded with FiftyOne's own run machinery (``list_runs``,
``get_run_info``, ``load_run_results``), its configuration stored without any
secret. Each shard of a job records its summary separately in an execution
store; :func:`load_run_summary` adds them up. The same store keeps a run's
calibration, fitted from reviews (:mod:`gemini_annotate.review.calibration`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Optional

import fiftyone as fo
from fiftyone.operators.store import ExecutionStore

from .budget_store import reset_shared_budget
from .config import AnnotateConfig
from .run_attempts import forget_attempts
from .vocabulary import RUN_METHOD

SUMMARY_STORE = "gemini_annotate_runs"
"""The FiftyOne execution store (one per dataset) holding each shard's summary."""


@dataclass
class RunSummary:
    """What a run did, returned to the caller and saved as the run's results.

    The summary of one job covers one shard (``shard`` of ``num_shards``); the
    summary of a run, from :func:`load_run_summary`, adds up its shards
    (``shard`` is then ``None``).
    """

    run_key: str
    label_field: str
    selected: int = 0
    skipped: int = 0
    done: int = 0
    partial: int = 0
    failed: int = 0
    labels: int = 0
    requests: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    thought_tokens: int = 0
    estimated_input_tokens: int = 0
    files_uploaded: int = 0
    files_reused: int = 0
    batch_job: Optional[str] = None
    elapsed_seconds: float = 0.0
    stopped: Optional[str] = None
    failure_reasons: dict[str, int] = field(default_factory=dict)
    shard: Optional[int] = 0
    num_shards: int = 1
    lowest_concurrency: Optional[int] = None
    throttled: int = 0
    """Requests Gemini answered 429 (rate limited), retried or not."""
    requests_per_minute: Optional[float] = None
    """The rate achieved: requests answered per minute, from the first send to the last answered one's."""

    @property
    def finished(self) -> int:
        return self.done + self.failed

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: dict) -> "RunSummary":
        """A summary from :meth:`to_dict`, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in stored.items() if k in known})

    @classmethod
    def total(cls, parts: list["RunSummary"]) -> "RunSummary":
        """The shards' summaries added up (wall time: the slowest shard's)."""
        first = parts[0]
        total = cls(run_key=first.run_key, label_field=first.label_field, shard=None,
                    num_shards=first.num_shards)
        for part in parts:
            for name in ("selected", "skipped", "done", "partial", "failed", "labels", "requests",
                         "retries", "input_tokens", "output_tokens", "thought_tokens",
                         "estimated_input_tokens", "files_uploaded", "files_reused", "throttled"):
                setattr(total, name, getattr(total, name) + getattr(part, name))
            total.batch_job = total.batch_job or part.batch_job
            total.elapsed_seconds = max(total.elapsed_seconds, part.elapsed_seconds)
            for reason, count in part.failure_reasons.items():
                total.failure_reasons[reason] = total.failure_reasons.get(reason, 0) + count
            if part.stopped:
                prefix = f"shard {part.shard}: " if part.num_shards > 1 else ""
                total.stopped = "; ".join(filter(None, [total.stopped, prefix + part.stopped]))
            if part.requests_per_minute is not None:  # shards run side by side: their rates add up
                total.requests_per_minute = (total.requests_per_minute or 0.0) + part.requests_per_minute
            if part.lowest_concurrency is not None:
                total.lowest_concurrency = min(part.lowest_concurrency,
                                               total.lowest_concurrency or part.lowest_concurrency)
        return total

    def describe(self) -> str:
        """A few lines for a terminal or the App."""
        where = f" (shard {self.shard} of {self.num_shards})" if self.num_shards > 1 and self.shard is not None else ""
        lines = [
            f"run {self.run_key!r}{where} → field {self.label_field!r}: "
            f"{self.done} labeled ({self.partial} partial), {self.failed} failed, "
            f"{self.skipped} skipped, {self.labels} labels written",
            f"{self.requests} requests ({self.retries} retries), "
            f"tokens in/out {self.input_tokens}/{self.output_tokens} "
            f"(estimated input {self.estimated_input_tokens}), {self.elapsed_seconds:.1f} s",
        ]
        if self.requests_per_minute is not None or self.throttled:
            rate = f"{self.requests_per_minute:g} requests/min" if self.requests_per_minute is not None else "-"
            lines.append(f"pace: {rate} answered, {self.throttled} answered 429 (rate limited)")
        if self.thought_tokens:
            lines.append(f"thinking tokens {self.thought_tokens} (billed as output)")
        if self.files_uploaded or self.files_reused:
            lines.append(f"File API: {self.files_uploaded} images uploaded, {self.files_reused} reused")
        if self.batch_job:
            lines.append(f"batch job {self.batch_job}")
        for reason, count in sorted(self.failure_reasons.items(), key=lambda kv: -kv[1])[:5]:
            lines.append(f"  failed ×{count}: {reason}")
        if self.stopped:
            lines.append(f"STOPPED: {self.stopped}")
        return "\n".join(lines)


def record_run(samples: fo.core.collections.SampleCollection, config: AnnotateConfig) -> None:
    """Registers (or, for a resumed key, updates) the run and declares its status fields.

    Safe to call from several shards of one job: the configuration they store
    is the same, shard number aside.
    """
    dataset = samples._dataset
    key = config.resolved_run_key
    run_config = dataset.init_run(method=RUN_METHOD, **config.to_record())
    if dataset.has_run(key):
        dataset.update_run_config(key, run_config)
    else:
        try:
            samples.register_run(key, run_config)
        except ValueError:  # another shard registered it a moment ago
            dataset.reload()
            dataset.update_run_config(key, run_config)
    for name in (config.status_field, config.reason_field):
        if not dataset.has_field(name):
            dataset.add_sample_field(name, fo.StringField)


def _summary_store(dataset: fo.Dataset) -> ExecutionStore:
    return ExecutionStore.create(SUMMARY_STORE, dataset_id=dataset._doc.id)


def _shard_entry(run_key: str, shard: int, num_shards: int) -> str:
    return f"{run_key}/shard-{shard}-of-{num_shards}"


def _shard_entries(store, run_key: str) -> dict[str, dict]:
    prefix = f"{run_key}/shard-"
    return {k: store.get(k) for k in sorted(store.list_keys()) if k.startswith(prefix)}


def clear_shard_summaries(dataset: fo.Dataset, run_key: str) -> None:
    """Forgets the shard summaries of a run, and its shared budget's counts, before it is split afresh."""
    reset_shared_budget(dataset, run_key)
    store = _summary_store(dataset)
    for key in _shard_entries(store, run_key):
        store.delete(key)


def forget_run(dataset: fo.Dataset, run_key: str) -> None:
    """Forgets everything stored beside a run's record: its shard summaries, its calibration and
    its attempt."""
    clear_shard_summaries(dataset, run_key)
    forget_attempts(dataset, run_key)
    _summary_store(dataset).delete(_calibration_entry(run_key))


def save_run_summary(dataset: fo.Dataset, summary: RunSummary, batch_job: Optional[dict] = None) -> RunSummary:
    """Stores a job's summary as its shard's, and the run's total as the run's results.

    The run's results also keep the run's batch job record, if it has one
    (see :mod:`gemini_annotate.batch`).

    Each shard's summary is one key of FiftyOne's execution store (written
    atomically, whatever the other shards do); the total is recomputed from all
    of them and saved again until no other shard has reported meanwhile, so the
    last shard to finish leaves the complete total in the run's results.

    Returns:
        the run's total summary
    """
    store = _summary_store(dataset)
    if summary.num_shards == 1:
        clear_shard_summaries(dataset, summary.run_key)
    store.set(_shard_entry(summary.run_key, summary.shard or 0, summary.num_shards), summary.to_dict())
    entries = _shard_entries(store, summary.run_key)
    for _ in range(5):
        total = RunSummary.total([RunSummary.from_dict(v) for v in entries.values()])
        dataset.reload()  # the run document may have been saved by another shard
        extra = {"batch_job": batch_job} if batch_job is not None else {}
        results = dataset.init_run_results(summary.run_key, summary=total.to_dict(),
                                           shards=list(entries.values()), **extra)
        dataset.save_run_results(summary.run_key, results, overwrite=True)
        latest = _shard_entries(store, summary.run_key)
        if latest == entries:
            break
        entries = latest
    return total


def load_batch_job(samples: fo.core.collections.SampleCollection, run_key: str) -> Optional[dict]:
    """The batch job record saved with a run (see :mod:`gemini_annotate.batch`), if any."""
    if not samples._dataset.has_run(run_key):
        return None
    results = samples._dataset.load_run_results(run_key, cache=False)
    return getattr(results, "batch_job", None) if results is not None else None


def load_run_summary(samples: fo.core.collections.SampleCollection, run_key: str) -> Optional[RunSummary]:
    """The summary of a run, its shards added up; ``None`` when the run saved none."""
    dataset = samples._dataset
    entries = _shard_entries(_summary_store(dataset), run_key)
    if entries:
        return RunSummary.total([RunSummary.from_dict(v) for v in entries.values()])
    results = samples.load_run_results(run_key, cache=False)
    stored = getattr(results, "summary", None) if results is not None else None
    return RunSummary.from_dict(stored) if stored else None


def _calibration_entry(run_key: str) -> str:
    return f"{run_key}/calibration"


def save_calibration_entry(dataset: fo.Dataset, run_key: str, entry: dict) -> None:
    """Stores a run's calibration (plain JSON-like data) in the execution store, under
    ``"<run_key>/calibration"``; saving again replaces it."""
    _summary_store(dataset).set(_calibration_entry(run_key), entry)


def load_calibration_entry(dataset: fo.Dataset, run_key: str) -> Optional[dict]:
    """The calibration stored for a run by :func:`save_calibration_entry`, if any."""
    return _summary_store(dataset).get(_calibration_entry(run_key))


def list_annotation_runs(samples: fo.core.collections.SampleCollection) -> list[str]:
    """Keys of the gemini-annotate runs on a collection."""
    return samples.list_runs(method=RUN_METHOD)

