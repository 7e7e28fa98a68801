"""The batched writer: sample results into the database, a bulk write per batch.

A flush is one bulk write that sets, for each sample, its labels, its status
(``ok`` / ``partial`` / ``failed``) and its reason together, so a sample is
never left labeled without a status (or the reverse) and a crash loses at most
the batch not yet written. With ``if_labeled="replace_unreviewed"`` the labels
people made or reviewed are merged in by the review rules
(:func:`gemini_annotate.review_rules.merge_kept_labels`).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable, Optional

import fiftyone as fo
import fiftyone.core.odm as foo
from bson import ObjectId
from fiftyone.core.odm.utils import get_implied_field_kwargs
from pymongo import UpdateOne

from .config import AnnotateConfig
from .results import SampleResult
from .review_rules import merge_kept_labels
from .vocabulary import STATUS_FAILED


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
        now = datetime.now(timezone.utc)
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
        # one command for the whole batch (FiftyOne's default batcher may split it). FiftyOne's
        # public writers (set_values) write one field per call, and a sample's label, status
        # and reason must land together; so the dataset's collection is written directly and
        # in-memory samples refreshed as FiftyOne's own writers do
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

