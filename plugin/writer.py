"""The batched writer: sample results into the database, a bulk write per batch.

A flush is one bulk write that sets, for each sample, its labels, its status
(``ok`` / ``partial`` / ``failed``) and its reason together, so a sample is
never left labeled without a status (or the reverse) and a crash loses at most
the batch not yet written: results answered in the last :data:`MAX_AGE` seconds
at most (see :data:`BATCH_SIZE` for why writes stay rare all the same). Runs
that resume by stamp (``overwrite``, ``replace_unreviewed``) also stamp each
written sample with their attempt (:mod:`gemini_annotate.run_attempts`).
With ``if_labeled="replace_unreviewed"`` the labels
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

from . import label_mongo
from .config import AnnotateConfig
from .label_schema import LabelAttributes
from .results import SampleResult
from .review_rules import merge_kept_labels
from .vocabulary import STATUS_FAILED, attempt_field

BATCH_SIZE = 256
"""Results that make a flush due, however young.

Chosen with :data:`MAX_AGE`: a flush is due when the oldest buffered result is
``MAX_AGE`` seconds old or when ``BATCH_SIZE`` results wait, whichever comes
first. At a steady ``r`` answers per second a write then carries
``min(BATCH_SIZE, MAX_AGE * r)`` samples, so at r >= 50/s there is at most one
write per 100 samples (50 * 2 s = 100), and at high rates one per 256; below
50/s writes stay at most one every ``MAX_AGE`` seconds, which the database
does not notice.
"""

MAX_AGE = 2.0
"""Seconds a result may wait in the buffer: what a SIGKILL can lose of answered work."""


class LabelWriter:
    """Buffers sample results and writes them in batches.

    A flush is one bulk write: for every buffered sample, one update setting its
    label field(s), status and reason together. A crash loses at most the
    unflushed batch, and never separates a label from its status.

    Args:
        dataset: the dataset receiving the labels.
        config: the run's configuration (fields, overwrite policy).
        batch_size: results buffered before a flush.
        max_age: seconds after which the oldest buffered result makes a flush due.
        attempt: the run attempt to stamp each written sample with
            (``<label_field>_attempt``), for runs that resume by stamp.
        on_first_write: called once, just before anything is written (the run
            record is created then, so a run that writes nothing leaves nothing).
    """

    def __init__(
        self,
        dataset: fo.Dataset,
        config: AnnotateConfig,
        *,
        batch_size: int = BATCH_SIZE,
        max_age: float = MAX_AGE,
        attempt: Optional[str] = None,
        on_first_write: Optional[Callable[[], None]] = None,
    ):
        self._dataset = dataset
        self._config = config
        self._batch_size = batch_size
        self._max_age = max_age
        self._attempt = attempt
        self._on_first_write = on_first_write
        self._buffer: list[SampleResult] = []
        self._oldest = 0.0
        self._fields: dict[str, Any] = {}
        self._attributes = LabelAttributes()
        self.written = 0

    def add(self, result: SampleResult) -> bool:
        """Buffers a result; returns whether a flush is now due."""
        if not self._buffer:
            self._oldest = time.monotonic()
        self._buffer.append(result)
        return self.due()

    def due(self) -> bool:
        """Whether the buffer holds :data:`BATCH_SIZE` results or one :data:`MAX_AGE` seconds old."""
        return bool(self._buffer) and (
            len(self._buffer) >= self._batch_size
            or time.monotonic() - self._oldest >= self._max_age
        )

    def take(self) -> list[SampleResult]:
        """Removes and returns the buffered results (to flush them elsewhere)."""
        batch, self._buffer = self._buffer, []
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
        stamp = attempt_field(config.label_field)
        if self._attempt is not None and stamp not in self._fields:
            if not self._dataset.has_field(stamp):
                self._dataset.add_sample_field(stamp, fo.StringField)
            self._fields[stamp] = self._dataset.get_field(stamp)
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
            if self._attempt is not None:
                values[attempt_field(config.label_field)] = self._attempt
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
        self.declare_attributes()  # new attributes only: usually a few dictionary lookups
        return len(batch)

    def _to_mongo(self, name: str, value: Any) -> Any:
        if value is None:
            return None
        if name not in self._fields:
            if not self._dataset.has_field(name):
                self._dataset.add_sample_field(name, **get_implied_field_kwargs(value))
            self._fields[name] = self._dataset.get_field(name)
        self._attributes.observe(name, value)
        if isinstance(value, foo.DynamicEmbeddedDocument):  # labels, metadata: 5x faster, same document
            return label_mongo.to_mongo(value)
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

    def declare_attributes(self) -> list[str]:
        """Declares the attributes of the labels written so far (review, provenance...) that the
        schema lacks, for the App's filters; returns their paths.

        The attributes are those noted on the labels as they were written
        (:class:`~gemini_annotate.label_schema.LabelAttributes`): no sample of
        the dataset is read, whatever its size.
        """
        return self._attributes.declare(self._dataset)
