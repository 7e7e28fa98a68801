"""A run's request and token budget shared by its shards, kept in the database.

A :class:`~gemini_annotate.limits.Budget` counts in memory, which is right for a
run in one process. A run split into shards (delegated operations, worker
processes) must count in one place, or ``max_requests=1000`` over four shards
would allow 4000. :class:`SharedBudget` keeps the counts in one document per
dataset and run key, and changes them only by atomic conditional updates
(``$inc`` where the cap still allows it), so the caps hold across shards and
processes; like :class:`~gemini_annotate.limits.Budget`, each request in flight
reserves its estimated input tokens until its reply reports the real count.

The counts start at zero when a run is split afresh
(:func:`gemini_annotate.run_records.clear_shard_summaries` calls
:func:`reset_shared_budget`), and when a shard starts after every shard of the
run has ended (each calls :meth:`SharedBudget.end`), so running a run again
after its budget stopped it goes on with a new budget, as a run in one process
does; a shard that was killed never ends, and its run's budget holds on. A run
in one process keeps the in-memory budget: there is nothing to share, and it
costs no database round trip per request.
"""

from __future__ import annotations

import fiftyone as fo
import fiftyone.core.odm as foo
from pymongo import ReturnDocument

from .config import AnnotateConfig
from .limits import Budget, BudgetExhausted

BUDGETS_COLLECTION = "gemini_annotate_budgets"
"""The collection holding the shared counts of sharded runs with a budget."""


def _collection():
    return foo.get_db_conn()[BUDGETS_COLLECTION]


def _budget_id(dataset: fo.Dataset, run_key: str) -> str:
    return f"{dataset._doc.id}/{run_key}"


class SharedBudget(Budget):
    """A :class:`~gemini_annotate.limits.Budget` whose counts are shared by every shard of a run.

    Args:
        dataset: the run's dataset.
        run_key: the run whose shards share the budget.
        max_requests: requests (retries included) allowed to the whole run, or ``None``.
        max_tokens: tokens allowed to the whole run, or ``None``.
    """

    def __init__(self, dataset: fo.Dataset, run_key: str, max_requests=None, max_tokens=None, *,
                 shard: int = 0, num_shards: int = 1):
        super().__init__(max_requests, max_tokens)
        self._id = _budget_id(dataset, run_key)
        self._shard = _shard_name(shard, num_shards)
        fresh = {"requests": 0, "tokens": 0, "reserved": 0, "ended": []}
        every_shard = [_shard_name(s, num_shards) for s in range(num_shards)]
        # once every shard has ended, the next start is a new run of the key: its counts start over
        _collection().update_one({"_id": self._id, "ended": {"$all": every_shard}}, {"$set": fresh})
        _collection().update_one({"_id": self._id}, {"$setOnInsert": fresh}, upsert=True)

    def spend_request(self, estimated_tokens: int = 0) -> None:
        """Accounts for one request about to be sent, in the run's shared counts.

        Raises:
            BudgetExhausted: the request would go over a cap of the whole run; it must not be sent.
        """
        allowed: dict = {"_id": self._id}
        if self.max_requests is not None:
            allowed["requests"] = {"$lt": self.max_requests}
        if self.max_tokens is not None:
            allowed["$expr"] = {"$lte": [{"$add": ["$tokens", "$reserved", estimated_tokens]}, self.max_tokens]}
        counts = _collection().find_one_and_update(
            allowed, {"$inc": {"requests": 1, "reserved": estimated_tokens}}, return_document=ReturnDocument.AFTER)
        if counts is None:
            counts = _collection().find_one({"_id": self._id}) or {}
            self.requests, self.tokens = counts.get("requests", 0), counts.get("tokens", 0)
            if self.max_requests is not None and self.requests >= self.max_requests:
                raise BudgetExhausted(f"the request budget ({self.max_requests} requests) is used up "
                                      f"by the run's shards together")
            raise BudgetExhausted(f"the token budget ({self.max_tokens:,} tokens) is used up "
                                  f"({self.tokens:,} reported so far by the run's shards together)")
        self.requests, self.tokens = counts["requests"], counts["tokens"]

    def settle(self, estimated_tokens: int, reported_tokens: int) -> None:
        """Replaces a finished request's reservation with the tokens its reply reported."""
        _collection().update_one({"_id": self._id},
                                 {"$inc": {"reserved": -estimated_tokens, "tokens": reported_tokens}})
        self.tokens += reported_tokens

    def end(self) -> None:
        """Notes that this shard's job ended (finished or stopped), not killed."""
        _collection().update_one({"_id": self._id}, {"$addToSet": {"ended": self._shard}})


def _shard_name(shard: int, num_shards: int) -> str:
    return f"{shard}/{num_shards}"


def budget_for(dataset: fo.Dataset, config: AnnotateConfig) -> Budget:
    """The budget of a job: shared in the database by a sharded run with a cap, in memory otherwise."""
    if config.num_shards > 1 and (config.max_requests is not None or config.max_tokens is not None):
        return SharedBudget(dataset, config.resolved_run_key, config.max_requests, config.max_tokens,
                            shard=config.shard, num_shards=config.num_shards)
    return Budget(config.max_requests, config.max_tokens)


def reset_shared_budget(dataset: fo.Dataset, run_key: str) -> None:
    """Starts a run's shared counts from zero (when it is split afresh, or deleted)."""
    _collection().delete_one({"_id": _budget_id(dataset, run_key)})
