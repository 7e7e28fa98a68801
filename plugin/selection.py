"""Which samples a job sends: those still to do, in its shard, page by page.

The samples still to send are read page by page in id order, so a run streams
over a view of any size, and a re-run of the same job finds only what is left.
A job may be split into shards by sample id (:func:`shard_of`); the same rule
runs as a MongoDB query, so shards never overlap.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence

import fiftyone as fo
from bson import ObjectId

from .config import AnnotateConfig
from .vocabulary import STATUS_FAILED, attempt_field

SHARD_HEX_DIGITS = 4
"""A sample's shard is the last hex digits of its id modulo the shard count. An
ObjectId ends with a counter that grows by one per id, so they spread evenly."""


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


def _pending_match(config: AnnotateConfig, attempt: Optional[str] = None) -> dict:
    """The samples a job still has to send, as a MongoDB query.

    With ``if_labeled="skip"``, samples that have labels in the field or a status
    from an earlier run of it are done, which is what makes a re-run resume;
    ``retry_failed`` selects only the samples whose last attempt failed. An
    ``overwrite`` or ``replace_unreviewed`` job of a run ``attempt``
    (:mod:`gemini_annotate.run_attempts`) leaves out the samples the attempt
    already wrote, which is what makes it resume.
    """
    if config.retry_failed:
        return {config.status_field: STATUS_FAILED}
    if config.if_labeled == "skip":
        return {config.status_field: None, config.label_field: None}
    if attempt is not None:
        return {attempt_field(config.label_field): {"$ne": attempt}}
    return {}


def index_selection(samples: fo.core.collections.SampleCollection, config: AnnotateConfig) -> None:
    """Indexes the status field, which the selection of ``skip`` and ``retry_failed`` jobs filters on.

    With the index, finding the 10 samples a top-up still has to send reads
    those 10, not the whole dataset. Creating it is a no-op once it exists;
    a dataset without the field yet (no run wrote it) gets it after its first run.
    """
    dataset = samples._dataset
    if dataset.has_field(config.status_field):
        dataset.create_index(config.status_field)


def _shard_stages(config: AnnotateConfig) -> list[dict]:
    return [{"$match": _shard_match(config.shard, config.num_shards)}] if config.num_shards > 1 else []


def pending_samples(samples: fo.core.collections.SampleCollection, config: AnnotateConfig,
                    attempt: Optional[str] = None) -> fo.core.collections.SampleCollection:
    """The view of the samples a job still has to send: its shard's, by its resume policy."""
    pending_match = _pending_match(config, attempt)
    return samples.mongo(_shard_stages(config) + ([{"$match": pending_match}] if pending_match else []))


def count_selection(samples: fo.core.collections.SampleCollection, config: AnnotateConfig,
                    attempt: Optional[str] = None) -> tuple[int, int]:
    """``(samples of this shard, those still to send)`` in a collection."""
    shard = _shard_stages(config)
    selected = samples.mongo(shard).count() if shard else samples.count()
    pending = pending_samples(samples, config, attempt).count() if _pending_match(config, attempt) else selected
    return selected, pending


def iter_pending(
    samples: fo.core.collections.SampleCollection,
    config: AnnotateConfig,
    fields: Sequence[str] = (),
    page_size: int = 1000,
    attempt: Optional[str] = None,
) -> Iterator[list[tuple[str, str, dict[str, Any]]]]:
    """Pages of ``(sample id, filepath, {field: value})`` still to send, in id order.

    Each page is one query that resumes after the last id of the previous
    one, so no cursor stays open during a long run and memory holds one page.

    Args:
        samples: the collection.
        config: the job (its resume policy and shard).
        fields: other field paths to read for each sample.
        page_size: samples per page.
        attempt: the run attempt whose samples are done (``overwrite``, ``replace_unreviewed``).
    """
    after: Optional[ObjectId] = None
    base = _shard_stages(config)
    pending_match = _pending_match(config, attempt)
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

