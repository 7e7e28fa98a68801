"""Everything that touches the database: run records and batched label writes.

A job is recorded with FiftyOne's own run machinery (``list_runs``,
``get_run_info``, ``load_run_results``), its configuration stored without any
secret. Labels are written in batches keyed by sample id (one bulk write per
field and batch, never one ``sample.save()`` per sample), together with each
sample's status (``ok`` / ``partial`` / ``failed``) and reason.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional

import fiftyone as fo
import fiftyone.utils.iou as foui
import numpy as np

from .config import AnnotateConfig
from .convert import REVIEW_ATTRIBUTE, UNREVIEWED

RUN_METHOD = "gemini_annotate"

STATUS_OK = "ok"
STATUS_PARTIAL = "partial"
STATUS_FAILED = "failed"


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
    """What a run did, returned to the caller and saved as the run's results."""

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

    @property
    def finished(self) -> int:
        return self.done + self.failed

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """A few lines for a terminal or the App."""
        lines = [
            f"run {self.run_key!r} → field {self.label_field!r}: "
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


def record_run(samples: fo.core.collections.SampleCollection, config: AnnotateConfig) -> None:
    """Registers (or, for a resumed key, updates) the FiftyOne run of a job."""
    dataset = samples._dataset
    key = config.resolved_run_key
    run_config = dataset.init_run(method=RUN_METHOD, **config.to_record())
    if dataset.has_run(key):
        dataset.update_run_config(key, run_config)
    else:
        samples.register_run(key, run_config)


def save_run_summary(dataset: fo.Dataset, summary: RunSummary, batch_job: Optional[dict] = None) -> None:
    """Stores a summary as the results of its run, with the run's batch job record if it has one."""
    extra = {"batch_job": batch_job} if batch_job is not None else {}
    results = dataset.init_run_results(summary.run_key, summary=summary.to_dict(), **extra)
    dataset.save_run_results(summary.run_key, results, overwrite=True)


def load_batch_job(samples: fo.core.collections.SampleCollection, run_key: str) -> Optional[dict]:
    """The batch job record saved with a run (see :mod:`gemini_annotate.batch`), if any."""
    if not samples._dataset.has_run(run_key):
        return None
    results = samples._dataset.load_run_results(run_key, cache=False)
    return getattr(results, "batch_job", None) if results is not None else None


def load_run_summary(samples: fo.core.collections.SampleCollection, run_key: str) -> Optional[RunSummary]:
    """The summary saved with a run, or ``None`` when the run saved none."""
    results = samples.load_run_results(run_key, cache=False)
    stored = getattr(results, "summary", None) if results is not None else None
    return RunSummary(**stored) if stored else None


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

    A flush writes the label, status and reason fields with one bulk write each,
    for every buffered sample, so a crash loses at most the unflushed batch.

    Args:
        dataset: the dataset receiving the labels.
        config: the run's configuration (fields, overwrite policy).
        batch_size: results buffered before a flush.
        max_interval: seconds after which a non-empty buffer is flushed anyway.
        on_first_write: called once, just before anything is written (the run
            record is created then, so a run that writes nothing leaves nothing).
    """

    def __init__(
        self,
        dataset: fo.Dataset,
        config: AnnotateConfig,
        *,
        batch_size: int = 256,
        max_interval: float = 5.0,
        on_first_write=None,
    ):
        self._dataset = dataset
        self._config = config
        self._batch_size = batch_size
        self._max_interval = max_interval
        self._on_first_write = on_first_write
        self._buffer: list[SampleResult] = []
        self._written_fields: set[str] = set()
        self._last_flush = time.monotonic()
        self.written = 0
        self.flushes = 0

    @property
    def pending(self) -> int:
        return len(self._buffer)

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

    def write(self, batch: list[SampleResult]) -> int:
        """Writes a batch of results to the database."""
        if not batch:
            return 0
        config = self._config
        if self._on_first_write is not None:
            callback, self._on_first_write = self._on_first_write, None
            callback()
            for name in (config.status_field, config.reason_field):
                if not self._dataset.has_field(name):
                    self._dataset.add_sample_field(name, fo.StringField)
        by_field: dict[str, dict[str, Any]] = {
            config.label_field: {r.sample_id: r.label for r in batch if r.status != STATUS_FAILED}
        }
        for result in batch:
            for name, value in result.fields.items():
                by_field.setdefault(name, {})[result.sample_id] = value
        for name, values in by_field.items():
            if not self._dataset.has_field(name):
                # nothing to clear yet, and FiftyOne cannot type a new field from Nones alone
                values = {sid: value for sid, value in values.items() if value is not None}
            if values and config.if_labeled == "replace_unreviewed":
                values = self._merge_with_existing(name, values)
            if values:
                self._dataset.set_values(name, values, key_field="id")
                self._written_fields.add(name)
        self._dataset.set_values(
            config.status_field, {r.sample_id: r.status for r in batch}, key_field="id"
        )
        self._dataset.set_values(
            config.reason_field, {r.sample_id: r.reason for r in batch}, key_field="id"
        )
        self.written += len(batch)
        self.flushes += 1
        return len(batch)

    def _merge_with_existing(self, name: str, labeled: dict[str, Any]) -> dict[str, Any]:
        if not self._dataset.has_field(name):
            return labeled
        ids = list(labeled)
        existing_ids, existing = self._dataset.select(ids).values(["id", name])
        current = dict(zip(existing_ids, existing))
        return {sid: merge_kept_labels(current.get(sid), label) for sid, label in labeled.items()}

    def declare_attributes(self) -> None:
        """Adds the labels' attributes (review, provenance) to the schema, for the App's filters."""
        fields = [name for name in sorted(self._written_fields)
                  if isinstance(self._dataset.get_field(name), fo.EmbeddedDocumentField)
                  and issubclass(self._dataset.get_field(name).document_type, fo.Label)]
        if self.written and fields:
            self._dataset.add_dynamic_sample_fields(fields=fields)
