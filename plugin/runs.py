"""Everything that touches the database: selection, run records, batched label writes.

A job is recorded with FiftyOne's own run machinery (``list_runs``,
``get_run_info``, ``load_run_results``), its configuration stored without any
secret. Labels are written in batches: one bulk write per batch that sets, for
each sample, its labels, its status (``ok`` / ``partial`` / ``failed``) and its
reason together, so a sample is never left labeled without a status (or the
reverse) and a crash loses at most the batch not yet written.

The samples still to send are read page by page in id order, so a run streams
over a view of any size, and a re-run of the same job finds only what is left.
A job may be split into shards by sample id (:func:`shard_of`); each shard
records its summary separately and :func:`load_run_summary` adds them up.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import fiftyone as fo
import fiftyone.core.odm as foo
import fiftyone.utils.iou as foui
import numpy as np
from bson import ObjectId
from fiftyone.core.odm.utils import get_implied_field_kwargs
from pymongo import UpdateOne

from .config import AnnotateConfig
from .convert import REVIEW_ATTRIBUTE, UNREVIEWED
from .tasks import get_task

RUN_METHOD = "gemini_annotate"

STATUS_OK = "ok"
STATUS_PARTIAL = "partial"
STATUS_FAILED = "failed"

SHARD_HEX_DIGITS = 4
"""A sample's shard is the last hex digits of its id modulo the shard count. An
ObjectId ends with a counter that grows by one per id, so they spread evenly."""

SUMMARY_STORE = "gemini_annotate_runs"
"""The FiftyOne execution store (one per dataset) holding each shard's summary."""


@dataclass(frozen=True)
class SampleResult:
    """One sample's outcome, ready to be written.

    Attributes:
        sample_id: the sample's id.
        status: ``ok``, ``partial`` or ``failed``.
        label: the value for the label field (``None`` when failed).
        reason: why it failed or is partial, or what was dropped; ``None`` when
            there is nothing to say.
        label_count: labels in ``label``.
        fields: values for other fields of the sample, by field name (a
            segmentation's outlines, computed metadata).
    """

    sample_id: str
    status: str
    label: Any = None
    reason: Optional[str] = None
    label_count: int = 0
    fields: Mapping[str, Any] = field(default_factory=dict)


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
                         "estimated_input_tokens", "files_uploaded", "files_reused"):
                setattr(total, name, getattr(total, name) + getattr(part, name))
            total.batch_job = total.batch_job or part.batch_job
            total.elapsed_seconds = max(total.elapsed_seconds, part.elapsed_seconds)
            for reason, count in part.failure_reasons.items():
                total.failure_reasons[reason] = total.failure_reasons.get(reason, 0) + count
            if part.stopped:
                prefix = f"shard {part.shard}: " if part.num_shards > 1 else ""
                total.stopped = "; ".join(filter(None, [total.stopped, prefix + part.stopped]))
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


# selection


def shard_of(sample_id: str, num_shards: int) -> int:
    """The shard a sample belongs to (the same rule the database query applies)."""
    return int(str(sample_id)[-SHARD_HEX_DIGITS:], 16) % num_shards


def _shard_match(shard: int, num_shards: int) -> dict:
    """A ``$match`` on ``shard_of(_id, num_shards) == shard``, evaluated by MongoDB."""
    digits = "0123456789abcdef"
    id_text = {"$toString": "$_id"}
    value: Any = 0
    for position in range(24 - SHARD_HEX_DIGITS, 24):
        digit = {"$indexOfBytes": [digits, {"$substrBytes": [id_text, position, 1]}]}
        value = {"$add": [{"$multiply": [value, 16]}, digit]} if value != 0 else digit
    return {"$expr": {"$eq": [{"$mod": [value, num_shards]}, shard]}}


def _pending_match(config: AnnotateConfig) -> dict:
    """The samples a job still has to send, as a MongoDB query.

    With ``if_labeled="skip"``, samples that have labels in the field or a status
    from an earlier run of it are done, which is what makes a re-run resume;
    ``retry_failed`` selects only the samples whose last attempt failed.
    """
    if config.retry_failed:
        return {config.status_field: STATUS_FAILED}
    if config.if_labeled == "skip":
        return {config.status_field: None, config.label_field: None}
    return {}


def _shard_stages(config: AnnotateConfig) -> list[dict]:
    return [{"$match": _shard_match(config.shard, config.num_shards)}] if config.num_shards > 1 else []


def pending_samples(samples: fo.core.collections.SampleCollection,
                    config: AnnotateConfig) -> fo.core.collections.SampleCollection:
    """The view of the samples a job still has to send: its shard's, by its resume policy."""
    pending_match = _pending_match(config)
    return samples.mongo(_shard_stages(config) + ([{"$match": pending_match}] if pending_match else []))


def count_selection(samples: fo.core.collections.SampleCollection, config: AnnotateConfig) -> tuple[int, int]:
    """``(samples of this shard, those still to send)`` in a collection."""
    shard = _shard_stages(config)
    selected = samples.mongo(shard).count() if shard else samples.count()
    pending = pending_samples(samples, config).count() if _pending_match(config) else selected
    return selected, pending


def iter_pending(
    samples: fo.core.collections.SampleCollection,
    config: AnnotateConfig,
    fields: Sequence[str] = (),
    page_size: int = 1000,
) -> Iterator[list[tuple[str, str, dict[str, Any]]]]:
    """Pages of ``(sample id, filepath, {field: value})`` still to send, in id order.

    Each page is one query that resumes after the last id of the previous
    one, so no cursor stays open during a long run and memory holds one page.

    Args:
        samples: the collection.
        config: the job (its resume policy and shard).
        fields: other field paths to read for each sample.
        page_size: samples per page.
    """
    after: Optional[ObjectId] = None
    base = _shard_stages(config)
    pending_match = _pending_match(config)
    fields = list(fields)
    while True:
        match = dict(pending_match)
        if after is not None:
            match["_id"] = {"$gt": after}
        page = samples.mongo(base + [{"$match": match}, {"$sort": {"_id": 1}}, {"$limit": page_size}])
        ids, paths, *columns = page.values(["_id", "filepath", *fields])
        if not ids:
            return
        after = ids[-1]
        yield [(str(sample_id), path, {f: column[i] for f, column in zip(fields, columns)})
               for i, (sample_id, path) in enumerate(zip(ids, paths))]
        if len(ids) < page_size:
            return


def pending_paths(
    samples: fo.core.collections.SampleCollection, config: AnnotateConfig, ids: Sequence[str]
) -> dict[str, str]:
    """``{sample id: filepath}`` of those of ``ids`` a job still has to send.

    A Batch API job answers hours after its samples were chosen: a sample
    labeled or finished meanwhile is no longer pending, and keeps what it has.
    """
    if not ids:
        return {}
    view = samples._dataset.select(ids)
    pending_match = _pending_match(config)
    if pending_match:
        view = view.mongo([{"$match": pending_match}])
    return dict(zip(*view.values(["id", "filepath"])))


# the fields a job writes


def output_field_problem(samples: fo.core.collections.SampleCollection, config: AnnotateConfig) -> Optional[str]:
    """Why a field a job of ``config`` writes already holds something else, or ``None``.

    Writing detections into a classification field (or the other way round)
    would fail sample after sample; every front door asks this first.
    """
    expected = {**get_task(config.task).output_fields(config), config.status_field: str, config.reason_field: str}
    for name, kind in expected.items():
        schema_field = samples._dataset.get_field(name)  # a view may hide the field, not its contents
        if schema_field is None:
            continue
        if kind is str:
            if isinstance(schema_field, fo.StringField):
                continue
            wanted = "text (StringField)"
        else:
            if getattr(schema_field, "document_type", None) is kind:
                continue
            wanted = kind.__name__
        found = getattr(schema_field, "document_type", None) or type(schema_field)
        return (f"{name!r} already holds {found.__name__}, not {wanted}, which a {config.task} run "
                f"writes there: choose another label field")
    return None


def check_output_fields(samples: fo.core.collections.SampleCollection, config: AnnotateConfig) -> None:
    """Raises ``ValueError`` with :func:`output_field_problem`'s reason, if there is one."""
    problem = output_field_problem(samples, config)
    if problem:
        raise ValueError(problem)


# run records


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


def _summary_store(dataset: fo.Dataset):
    from fiftyone.operators.store import ExecutionStore

    return ExecutionStore.create(SUMMARY_STORE, dataset_id=dataset._doc.id)


def _shard_entry(run_key: str, shard: int, num_shards: int) -> str:
    return f"{run_key}/shard-{shard}-of-{num_shards}"


def _shard_entries(store, run_key: str) -> dict[str, dict]:
    prefix = f"{run_key}/shard-"
    return {k: store.get(k) for k in sorted(store.list_keys()) if k.startswith(prefix)}


def clear_shard_summaries(dataset: fo.Dataset, run_key: str) -> None:
    """Forgets the shard summaries of a run, before it is split afresh."""
    store = _summary_store(dataset)
    for key in _shard_entries(store, run_key):
        store.delete(key)


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


def list_annotation_runs(samples: fo.core.collections.SampleCollection) -> list[str]:
    """Keys of the gemini-annotate runs on a collection."""
    return samples.list_runs(method=RUN_METHOD)


def is_kept_on_replace(label: fo.Label) -> bool:
    """Whether a label survives ``if_labeled="replace_unreviewed"``.

    Kept: labels a person made (no ``gemini_run``) and pre-annotations a
    person accepted, edited or otherwise reviewed.
    """
    if not label_attribute(label, "gemini_run"):
        return True
    return label_attribute(label, REVIEW_ATTRIBUTE, UNREVIEWED) != UNREVIEWED


def label_attribute(label: fo.Label, name: str, default: Any = None) -> Any:
    """A label's attribute, or ``default`` when the label does not have it."""
    return label.get_field(name) if label.has_field(name) else default


SAME_OBJECT_IOU = 0.7
"""A new label overlapping a kept one this much is the object a person already
reviewed, and is not added again."""


def merge_kept_labels(existing: Any, new: Any) -> Any:
    """The new labels plus the existing ones a person made or reviewed.

    New labels that cover an object a kept label already covers (IoU above
    :data:`SAME_OBJECT_IOU`, whatever its class) are left out: the person's
    version of that object stands. A single kept label (a reviewed
    ``Classification``) stands whole; so does existing text (a caption, an
    answer), which carries no review state to tell a person's edit from a
    past run's output: replace text with ``if_labeled="overwrite"``.
    """
    if isinstance(existing, str) and existing:
        return existing
    if isinstance(existing, fo.Label) and not isinstance(existing, fo.core.labels._HasLabelList):
        return existing if is_kept_on_replace(existing) else new
    if existing is None or not isinstance(existing, fo.core.labels._HasLabelList):
        return new
    list_field = existing._LABEL_LIST_FIELD
    kept = [label for label in existing[list_field] or [] if is_kept_on_replace(label)]
    if not kept:
        return new
    if new is None:
        return type(existing)(**{list_field: kept})
    fresh = list(new[list_field] or [])
    if fresh and isinstance(new, fo.Classifications):
        kept_classes = {label.label for label in kept}
        fresh = [label for label in fresh if label.label not in kept_classes]
    elif fresh:
        covered = _covers_same_object(fresh, kept)
        fresh = [label for label, row in zip(fresh, covered) if not row.any()]
    return type(new)(**{list_field: kept + fresh})


SAME_POINT_DISTANCE = 0.02
"""A new point this close to a kept one (relative to the image sides) marks the same object."""


def _covers_same_object(fresh: list, kept: list) -> np.ndarray:
    """For each fresh label, which kept labels cover the same object."""
    if isinstance(kept[0], fo.Keypoint):
        # one point has no extent, so FiftyOne's keypoint similarity is undefined
        a = np.array([np.nanmean(np.asarray(k.points, float), axis=0) for k in fresh])
        b = np.array([np.nanmean(np.asarray(k.points, float), axis=0) for k in kept])
        return np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2) < SAME_POINT_DISTANCE
    # box IoUs for every other label type: polygon IoUs would need shapely,
    # which FiftyOne does not install, and boxes suffice to recognise an object
    return foui.compute_ious(fresh, kept, error_level=2, use_boxes=True) > SAME_OBJECT_IOU


class LabelWriter:
    """Buffers sample results and writes them in batches.

    A flush is one bulk write: for every buffered sample, one update setting its
    label field(s), status and reason together. A crash loses at most the
    unflushed batch, and never separates a label from its status.

    Args:
        dataset: the dataset receiving the labels.
        config: the run's configuration (fields, overwrite policy).
        batch_size: results buffered before a flush.
        max_interval: seconds after which a non-empty buffer is due anyway.
        on_first_write: called once, just before anything is written (the run
            record is created then, so a run that writes nothing leaves nothing).
    """

    def __init__(
        self,
        dataset: fo.Dataset,
        config: AnnotateConfig,
        *,
        batch_size: int = 256,
        max_interval: float = 10.0,
        on_first_write: Optional[Callable[[], None]] = None,
    ):
        self._dataset = dataset
        self._config = config
        self._batch_size = batch_size
        self._max_interval = max_interval
        self._on_first_write = on_first_write
        self._buffer: list[SampleResult] = []
        self._last_flush = time.monotonic()
        self._fields: dict[str, Any] = {}
        self.written = 0

    def add(self, result: SampleResult) -> bool:
        """Buffers a result; returns whether a flush is now due."""
        self._buffer.append(result)
        return self.due()

    def due(self) -> bool:
        return bool(self._buffer) and (
            len(self._buffer) >= self._batch_size
            or time.monotonic() - self._last_flush >= self._max_interval
        )

    def take(self) -> list[SampleResult]:
        """Removes and returns the buffered results (to flush them elsewhere)."""
        batch, self._buffer = self._buffer, []
        self._last_flush = time.monotonic()
        return batch

    def flush(self) -> int:
        """Writes everything buffered; returns the number of samples written."""
        return self.write(self.take())

    def label_fields(self, result: SampleResult) -> dict[str, Any]:
        """The field values a result sets: its label (unless it failed) and its other fields."""
        values = dict(result.fields)
        if result.status != STATUS_FAILED:
            values[self._config.label_field] = result.label
        return values

    def write(self, batch: list[SampleResult]) -> int:
        """Writes a batch of results to the database with one bulk write."""
        if not batch:
            return 0
        config = self._config
        if self._on_first_write is not None:
            callback, self._on_first_write = self._on_first_write, None
            callback()
        labels = {r.sample_id: self.label_fields(r) for r in batch}
        if config.if_labeled == "replace_unreviewed":
            labels = self._merge_with_existing(labels)
        now = datetime.utcnow()
        ops, ids = [], []
        for result in batch:
            values = {}
            for name, value in labels[result.sample_id].items():
                if value is not None or name in self._fields or self._dataset.has_field(name):
                    # a None clears a field; FiftyOne cannot type a new field from Nones alone
                    values[name] = self._to_mongo(name, value)
            values[config.status_field] = result.status
            values[config.reason_field] = result.reason
            values["last_modified_at"] = now
            ids.append(ObjectId(result.sample_id))
            ops.append(UpdateOne({"_id": ids[-1]}, {"$set": values}))
        # one command for the whole batch (FiftyOne's default batcher may split it)
        foo.bulk_write(ops, self._dataset._sample_collection, batcher=False)
        fo.Sample._reload_docs(self._dataset._sample_collection_name, sample_ids=ids)
        self.written += len(batch)
        return len(batch)

    def _to_mongo(self, name: str, value: Any) -> Any:
        if value is None:
            return None
        if name not in self._fields:
            if not self._dataset.has_field(name):
                self._dataset.add_sample_field(name, **get_implied_field_kwargs(value))
            self._fields[name] = self._dataset.get_field(name)
        return self._fields[name].to_mongo(value)

    def _merge_with_existing(self, labels: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        names = sorted({name for values in labels.values() for name in values})
        ids = [sid for sid, values in labels.items() if values]
        if not ids or not names:
            return labels
        present = [n for n in names if self._dataset.has_field(n)]
        if not present:
            return labels
        existing_ids, *existing = self._dataset.select(ids).values(["id", *present])
        current = {name: dict(zip(existing_ids, column)) for name, column in zip(present, existing)}
        return {
            sid: {name: merge_kept_labels(current.get(name, {}).get(sid), value) for name, value in values.items()}
            for sid, values in labels.items()
        }

    def declare_attributes(self) -> None:
        """Adds the labels' attributes (review, provenance) to the schema, for the App's filters."""
        declared = [name for name, f in sorted(self._fields.items())
                    if isinstance(f, fo.EmbeddedDocumentField) and issubclass(f.document_type, fo.Label)]
        if self.written and declared:
            self._dataset.add_dynamic_sample_fields(fields=declared)
