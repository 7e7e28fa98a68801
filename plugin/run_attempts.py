"""Run attempts: what lets an ``overwrite`` or ``replace_unreviewed`` run resume where it stopped.

A ``skip`` run resumes by itself: what it wrote has a status, and a status
means done. An ``overwrite`` run sends samples that have a status anyway, so
the status cannot tell what *this* run already wrote. Each such run therefore
has an *attempt*: an id that the writer stamps on every sample it writes
(``<label_field>_attempt``, :func:`gemini_annotate.vocabulary.attempt_field`),
and that the selection excludes. A run stopped by anything (a budget, an
error, a SIGKILL) keeps its attempt, so running it again sends only what it
has not written; once every shard of the attempt has finished, the attempt is
finished and the next run of the key starts a new one, and starts over, as an
overwrite should.

Attempts live in a small collection of their own (one document per dataset
and run key), changed only by atomic updates, so the shards of one run,
in any process, join the same attempt.
"""

from __future__ import annotations

from typing import Optional

import fiftyone as fo
import fiftyone.core.odm as foo
from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from .config import AnnotateConfig

ATTEMPTS_COLLECTION = "gemini_annotate_attempts"
"""The collection holding each run's current attempt."""

RESUMING_BY_STAMP = ("overwrite", "replace_unreviewed")
"""The ``if_labeled`` policies that resend labeled samples, so resume by attempt stamps."""


def resumes_by_stamp(config: AnnotateConfig) -> bool:
    """Whether a job needs an attempt: it resends labeled samples (and is not a ``retry_failed``,
    which selects by status)."""
    return config.if_labeled in RESUMING_BY_STAMP and not config.retry_failed


def _collection():
    return foo.get_db_conn()[ATTEMPTS_COLLECTION]


def _attempt_id(dataset: fo.Dataset, run_key: str) -> str:
    return f"{dataset._doc.id}/{run_key}"


def _shard_name(shard: int, num_shards: int) -> str:
    return f"{shard}/{num_shards}"


def join_attempt(dataset: fo.Dataset, run_key: str) -> str:
    """The id of the run's unfinished attempt, or of a new one when it has none (or it finished).

    Safe to call from every shard at once: they all get the same id.
    """
    collection = _collection()
    key = _attempt_id(dataset, run_key)
    fresh = {"attempt": str(ObjectId()), "finished": False, "finished_shards": []}
    # a finished attempt is replaced atomically, so two shards starting together start one
    document = collection.find_one_and_update({"_id": key, "finished": True}, {"$set": fresh},
                                              return_document=ReturnDocument.AFTER)
    if document is None:
        try:
            collection.insert_one({"_id": key, **fresh})
        except DuplicateKeyError:  # an unfinished attempt exists (or another shard just made one)
            pass
        document = collection.find_one({"_id": key})
    return document["attempt"]


def unfinished_attempt(dataset: fo.Dataset, run_key: str) -> Optional[str]:
    """The id of the run's unfinished attempt, if it has one (read only, for estimates)."""
    document = _collection().find_one({"_id": _attempt_id(dataset, run_key), "finished": False})
    return document["attempt"] if document else None


def finish_shard(dataset: fo.Dataset, run_key: str, attempt: str, shard: int, num_shards: int) -> bool:
    """Notes that one shard of the attempt went through its selection; returns whether the
    attempt is now finished (every shard of ``num_shards`` has)."""
    collection = _collection()
    key = _attempt_id(dataset, run_key)
    document = collection.find_one_and_update(
        {"_id": key, "attempt": attempt}, {"$addToSet": {"finished_shards": _shard_name(shard, num_shards)}},
        return_document=ReturnDocument.AFTER)
    if document is None:
        return False  # the attempt was replaced meanwhile
    done = {_shard_name(s, num_shards) for s in range(num_shards)}
    if not done <= set(document["finished_shards"]):
        return False
    collection.update_one({"_id": key, "attempt": attempt}, {"$set": {"finished": True}})
    return True


def forget_attempts(dataset: fo.Dataset, run_key: str) -> None:
    """Forgets a run's attempt (when the run is deleted)."""
    _collection().delete_one({"_id": _attempt_id(dataset, run_key)})
