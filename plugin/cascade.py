"""The cheap → strong cascade: a first pass with the run's model, then the unsure samples again with a stronger one.

With ``escalate_to`` set, a run is two passes over the same label field:

1. **First pass**: a normal run with the configured (cheap) model, usually with
   ``consensus``, run key ``<run_key>``.
2. **Escalation**: :func:`gemini_annotate.escalation.escalation_reason` judges each
   sample the first pass answered (failed or partial; a kept label under
   ``escalate_below``; too few proposals with majority support, under
   ``escalate_support``). An escalated sample gets its reason in
   ``<label_field>_escalated`` and its status cleared, in one write per sample.
3. **Second pass**: the ``escalate_to`` model (one answer per sample) labels the
   escalated samples whose status is clear, run key ``<run_key>_escalated``; its
   answer replaces the first pass's unreviewed labels (``replace_unreviewed``:
   labels a person accepted, edited or drew stay). Every label's provenance
   (``gemini_model``, ``gemini_run``) names the model and pass that made it, and no
   sample holds labels of both models.

With ``escalate_majority_only``, the samples that stand with the first answer
keep its *majority* objects only: the objects at most half of its answers
proposed (``votes`` ≤ N / 2), which fusion keeps for ranking and review, are
removed by :func:`drop_minority_labels` (only unreviewed labels of the first
pass; a single-label classification is kept). It is off by default: on the
emulator it raises precision and F1 but costs recall and mAP, as many minority
objects are real ones the cheap model saw only once in three.

Resuming. The escalation marks are the plan, kept in the database: a sample
marked is never judged again nor sent to the first pass again, and the second
pass sends only marked samples whose status is still clear (its writer sets a
sample's labels and status in one write). Running an interrupted cascade again
therefore sends only what is left, in either pass. With ``if_labeled`` set to
``overwrite`` or ``replace_unreviewed`` a cascade starts afresh (marks cleared), as
those policies re-send everything anyway.

Each pass saves its own summary on its own run key; :func:`run_cascade` returns a
:class:`CascadeSummary` holding both, with the totals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Optional, Union

import fiftyone as fo
import fiftyone.core.labels as fol
import fiftyone.core.odm as foo
from bson import ObjectId
from pymongo import UpdateOne

from .config import AnnotateConfig
from .costs import cost, load_prices, price_for
from .escalation import EscalationRule, escalation_reason, reason_kind
from .estimate import CostEstimate, estimate_run
from .job import AnnotationStopped, ProgressCallback
from .labels import labels_in
from .run_records import RunSummary
from .selection import pending_samples
from .vocabulary import (
    ANSWERS_ATTRIBUTE,
    REVIEW_ATTRIBUTE,
    RUN_ATTRIBUTE,
    STATUS_FAILED,
    STATUS_PARTIAL,
    UNREVIEWED,
    VOTES_ATTRIBUTE,
)

SECOND_PASS_SUFFIX = "_escalated"
"""The second pass's run key is the cascade's with this suffix."""

ASSUMED_ESCALATION_RATE = 0.35
"""The share of samples an estimate assumes will escalate, when no earlier run measured it
(the emulator's lite → pro cascade escalated 30–37 % of its images, a quarter of them crowded;
see ``benchmarks/cascade.py``)."""

PAGE_SIZE = 1000

RunPass = Callable[..., RunSummary]
"""Runs one pass: ``run_pass(samples, config, api_key=..., progress=...)``
(:func:`gemini_annotate.pipeline.run_annotation`)."""


def escalated_field(label_field: str) -> str:
    """The per-sample field saying why a cascade sent the sample to its stronger model (``None``: it did not)."""
    return f"{label_field}_escalated"


def second_pass_key(run_key: str) -> str:
    """The run key of a cascade's second pass."""
    return run_key + SECOND_PASS_SUFFIX


def escalation_rule(config: AnnotateConfig) -> EscalationRule:
    return EscalationRule(below=config.escalate_below, support=config.escalate_support)


def first_pass_config(config: AnnotateConfig) -> AnnotateConfig:
    """The first pass: the cascade's configuration, without the escalation."""
    return _with(config, escalate_to=None, escalate_below=None, escalate_support=None, escalate_majority_only=False)


def second_pass_config(config: AnnotateConfig, first: Optional[RunSummary] = None) -> AnnotateConfig:
    """The second pass: the stronger model, one answer per sample, replacing unreviewed labels,
    within what the first pass left of the budgets."""
    spent_requests = first.requests if first else 0
    spent_tokens = (first.input_tokens + first.output_tokens + first.thought_tokens) if first else 0
    max_requests = None if config.max_requests is None else max(1, config.max_requests - spent_requests)
    max_tokens = None if config.max_tokens is None else max(1, config.max_tokens - spent_tokens)
    # the workers split the budget left: each needs a request of it at least
    workers = min([config.workers, *(left for left in (max_requests, max_tokens) if left is not None)])
    return _with(
        config, model=config.escalate_to, consensus=1, run_key=second_pass_key(config.resolved_run_key),
        if_labeled="replace_unreviewed", retry_failed=False, escalate_to=None, escalate_below=None,
        escalate_support=None, escalate_majority_only=False, max_requests=max_requests, max_tokens=max_tokens,
        workers=workers)


def _check_budget_left(config: AnnotateConfig, first: RunSummary, to_send: int) -> None:
    """Stops the cascade before its second pass when the first spent the whole budget.

    Raises:
        AnnotationStopped: with the first pass's summary (the caller adds the cascade's).
    """
    spent = [(config.max_requests, first.requests, "request"),
             (config.max_tokens, first.input_tokens + first.output_tokens + first.thought_tokens, "token")]
    for budget, used, kind in spent:
        if budget is not None and used >= budget:
            raise AnnotationStopped(
                f"the {kind} budget ({budget:,}) was spent by the first pass; {to_send} escalated sample(s) "
                f"still go to {config.escalate_to}: run again (with a budget) to send them", first)


def _with(config: AnnotateConfig, **changes: Any) -> AnnotateConfig:
    return AnnotateConfig.model_validate({**config.model_dump(), **changes})


# the plan, in the database


def _shard_view(samples: fo.core.collections.SampleCollection, config: AnnotateConfig):
    """The cascade's samples: its shard of ``samples`` (all of them, without shards)."""
    return pending_samples(samples, _with(config, if_labeled="overwrite", retry_failed=False))


def first_pass_samples(samples, config: AnnotateConfig):
    """The samples the first pass may send: those not escalated."""
    return _shard_view(samples, config).mongo([{"$match": {escalated_field(config.label_field): None}}])


def second_pass_samples(samples, config: AnnotateConfig):
    """The escalated samples the second pass has still to send: their status is clear
    (or failed, with ``retry_failed``)."""
    statuses = [None, STATUS_FAILED] if config.retry_failed else [None]
    return _shard_view(samples, config).mongo([{"$match": {
        escalated_field(config.label_field): {"$ne": None}, config.status_field: {"$in": statuses}}}])


def clear_escalations(samples, config: AnnotateConfig) -> None:
    """Forgets the escalation marks of the cascade's samples (a fresh start)."""
    marker = escalated_field(config.label_field)
    if samples._dataset.has_field(marker):
        ids = _shard_view(samples, config).mongo([{"$match": {marker: {"$ne": None}}}]).values("id")
        samples._dataset.set_values(marker, dict.fromkeys(ids), key_field="id")


@dataclass(frozen=True)
class Escalations:
    """What :func:`mark_escalations` marked: samples, of which first answers failed or partial,
    and the labels their first answers had."""

    samples: int = 0
    failed: int = 0
    partial: int = 0
    labels: int = 0


def mark_escalations(samples, config: AnnotateConfig) -> Escalations:
    """Judges every sample the first pass answered and has not judged yet; marks those
    that escalate (their reason) and clears their status, in one write each.

    A sample is judged once: the marks are the plan the second pass follows.
    """
    dataset = samples._dataset
    marker, rule = escalated_field(config.label_field), escalation_rule(config)
    unjudged = _shard_view(samples, config).mongo([{"$match": {
        marker: None, config.status_field: {"$ne": None}}}])
    if not dataset.has_field(marker):
        dataset.add_sample_field(marker, fo.StringField)
    marked, after = Escalations(), None
    while True:
        match = {} if after is None else {"_id": {"$gt": after}}
        page = unjudged.mongo([{"$match": match}, {"$sort": {"_id": 1}}, {"$limit": PAGE_SIZE}])
        ids, statuses, values = page.values(["_id", config.status_field, config.label_field])
        if not ids:
            return marked
        after = ids[-1]
        now = datetime.now(timezone.utc)
        ops, written = [], []
        for sample_id, status, value in zip(ids, statuses, values):
            reason = escalation_reason(status, value, rule)
            if reason is None:
                continue
            ops.append(UpdateOne({"_id": ObjectId(sample_id), marker: None},
                                 {"$set": {marker: reason, config.status_field: None, "last_modified_at": now}}))
            written.append(ObjectId(sample_id))
            marked = Escalations(marked.samples + 1, marked.failed + (status == STATUS_FAILED),
                                 marked.partial + (status == STATUS_PARTIAL), marked.labels + len(labels_in(value)))
        if ops:
            # the mark and the cleared status land together, so a crash never leaves a sample
            # marked but not pending, or pending for the second pass without a mark
            foo.bulk_write(ops, dataset._sample_collection, batcher=False)
            fo.Sample._reload_docs(dataset._sample_collection_name, sample_ids=written)
        if len(ids) < PAGE_SIZE:
            return marked


def minority_noise(run_key: str) -> fo.core.expressions.ViewExpression:
    """Matches the unreviewed labels of run ``run_key`` that at most half of their answers proposed."""
    F = fo.ViewField
    reviewed = F(REVIEW_ATTRIBUTE).exists() & (F(REVIEW_ATTRIBUTE) != UNREVIEWED)
    return ((F(RUN_ATTRIBUTE) == run_key) & F(VOTES_ATTRIBUTE).exists() & F(ANSWERS_ATTRIBUTE).exists()
            & (2 * F(VOTES_ATTRIBUTE) <= F(ANSWERS_ATTRIBUTE)) & ~reviewed)


def drop_minority_labels(samples, config: AnnotateConfig) -> int:
    """Removes the first pass's minority objects from the samples that were not escalated;
    returns how many it removed.

    Fusion keeps them for ranking and review; a cascade's answer for a sample it did not
    send on is the first pass's majority. Only list fields (detections, polylines,
    keypoints, classifications) are filtered; a single-label classification is kept.
    Running it again removes nothing more.
    """
    dataset, field = samples._dataset, config.label_field
    schema_field = dataset.get_field(field)
    document_type = getattr(schema_field, "document_type", None)
    if document_type is None or not issubclass(document_type, fol._HasLabelList):
        return 0
    standing = _shard_view(samples, config).mongo([{"$match": {
        escalated_field(field): None, config.status_field: {"$ne": None}}}])
    noise = minority_noise(config.resolved_run_key)
    noisy = standing.filter_labels(field, noise)
    dropped = noisy.count(f"{field}.{document_type._LABEL_LIST_FIELD}")
    if dropped:
        standing.select(noisy.values("id")).filter_labels(field, ~noise, only_matches=False).save(fields=[field])
    return dropped


def escalation_counts(samples, config: AnnotateConfig) -> dict[str, int]:
    """``{reason kind: samples}`` escalated among the cascade's samples."""
    marker = escalated_field(config.label_field)
    if not samples._dataset.has_field(marker):
        return {}
    counts: dict[str, int] = {}
    for reason, n in _shard_view(samples, config).count_values(marker).items():
        if reason is not None:
            counts[reason_kind(reason)] = counts.get(reason_kind(reason), 0) + n
    return counts


# the run


@dataclass
class CascadeSummary(RunSummary):
    """What a cascade did: both passes' summaries, and their totals in the :class:`RunSummary` fields.

    Attributes:
        model: the first pass's model.
        escalate_to: the second pass's model.
        escalated: the samples escalated (by this run and earlier runs of it).
        escalation_reasons: ``{reason kind: samples}`` (see :data:`~gemini_annotate.escalation.REASONS`).
        minority_dropped: the first pass's minority labels removed from the samples that stood.
        first_pass: the first pass's summary.
        second_pass: the second pass's summary (``None`` when it did not run).
    """

    model: str = ""
    escalate_to: str = ""
    escalated: int = 0
    escalation_reasons: dict[str, int] = field(default_factory=dict)
    minority_dropped: int = 0
    first_pass: Optional[RunSummary] = None
    second_pass: Optional[RunSummary] = None

    @classmethod
    def of(cls, config: AnnotateConfig, first: Optional[RunSummary], second: Optional[RunSummary],
           marked: "Escalations", reasons: Mapping[str, int], dropped: int = 0) -> "CascadeSummary":
        """The cascade's summary: what each pass sent and spent, added up; the samples' outcomes
        as they stand (a sample the second pass answered counts once, by that answer; ``dropped``
        minority labels do not count)."""
        passes = [p for p in (first, second) if p is not None]
        total = RunSummary.total(passes) if passes else RunSummary(config.resolved_run_key, config.label_field)
        values = {f: getattr(total, f) for f in RunSummary.__dataclass_fields__}
        values.update(run_key=config.resolved_run_key, shard=config.shard, num_shards=config.num_shards)
        if first is not None:  # the job's samples are the first pass's; escalated ones count by their second answer
            values.update(
                selected=first.selected, skipped=first.skipped,
                done=max(0, first.done - (marked.samples - marked.failed)) + (second.done if second else 0),
                failed=max(0, first.failed - marked.failed) + (second.failed if second else 0),
                partial=max(0, first.partial - marked.partial) + (second.partial if second else 0),
                labels=max(0, first.labels - marked.labels - dropped) + (second.labels if second else 0))
        return cls(**values, model=config.model, escalate_to=config.escalate_to or "",
                   escalated=sum(reasons.values()), escalation_reasons=dict(reasons), minority_dropped=dropped,
                   first_pass=first, second_pass=second)

    def pass_costs(self, prices: Union[str, Mapping, None] = None, *, batch: bool = False) -> list[Optional[float]]:
        """US dollars each pass's reported tokens cost (thinking billed as output); ``None`` if unpriced."""
        table = load_prices(prices)
        return [cost(p.input_tokens, p.output_tokens + p.thought_tokens, price_for(model, table), batch=batch)
                if p is not None else None
                for model, p in ((self.model, self.first_pass), (self.escalate_to, self.second_pass))]

    def describe(self) -> str:
        reasons = ", ".join(f"{kind} {n}" for kind, n in sorted(self.escalation_reasons.items(), key=lambda kv: -kv[1]))
        lines = [super().describe(),
                 f"cascade {self.model} → {self.escalate_to}: {self.escalated} sample(s) escalated"
                 + (f" ({reasons})" if reasons else "")
                 + (f"; {self.minority_dropped} minority label(s) dropped from the samples that stood"
                    if self.minority_dropped else "")]
        for number, (model, part, price) in enumerate(
                zip((self.model, self.escalate_to), (self.first_pass, self.second_pass), self.pass_costs()), 1):
            if part is None:
                lines.append(f"  pass {number} ({model}): not run")
                continue
            money = "unpriced" if price is None else f"${price:,.4f}"
            lines.append(f"  pass {number} ({model}): {part.done} labeled, {part.failed} failed, "
                         f"{part.requests} requests, tokens in/out {part.input_tokens}/"
                         f"{part.output_tokens + part.thought_tokens}, {money}")
        return "\n".join(lines)


def run_cascade(samples: fo.core.collections.SampleCollection, config: AnnotateConfig, *, run_pass: RunPass,
                api_key: Optional[str] = None, progress: Optional[ProgressCallback] = None) -> CascadeSummary:
    """Runs a cascade (``config.escalate_to``) to its end: first pass, escalation, second pass.

    Args:
        samples: the collection.
        config: the cascade's configuration.
        run_pass: runs one pass (:func:`gemini_annotate.pipeline.run_annotation`).
        api_key: the API key (used for the requests only).
        progress: called as each pass advances.

    Raises:
        AnnotationStopped: a pass stopped; its ``summary`` is a :class:`CascadeSummary`
            of what was done. Running the cascade again resumes it.
    """
    if config.if_labeled != "skip":
        clear_escalations(samples, config)
    first = second = None
    marked, dropped = Escalations(), 0
    try:
        first = run_pass(first_pass_samples(samples, config), first_pass_config(config), api_key=api_key,
                         progress=progress)
        marked = mark_escalations(samples, config)
        dropped = drop_minority_labels(samples, config) if config.escalate_majority_only else 0
        escalated = second_pass_samples(samples, config)
        to_send = escalated.count()
        if to_send:
            _check_budget_left(config, first, to_send)
            second = run_pass(escalated, second_pass_config(config, first), api_key=api_key, progress=progress)
    except AnnotationStopped as e:
        if first is None:
            first = e.summary
        elif e.summary is not first:
            second = e.summary
        summary = CascadeSummary.of(config, first, second, marked, escalation_counts(samples, config), dropped)
        raise AnnotationStopped(str(e), summary) from e
    return CascadeSummary.of(config, first, second, marked, escalation_counts(samples, config), dropped)


# the estimate


@dataclass(frozen=True)
class CascadeEstimate:
    """What a cascade is expected to cost: the first pass on every sample to send, the
    second on the share expected to escalate.

    Attributes:
        first: the first pass's estimate.
        second: the second pass's, were every sample to send escalated (the most it can cost).
        escalation_rate: the share of samples expected to escalate.
        rate_source: where that share comes from (measured on an earlier run, or assumed).
    """

    first: CostEstimate
    second: CostEstimate
    escalation_rate: float
    rate_source: str

    @property
    def expected_cost(self) -> Optional[float]:
        if self.first.total_cost is None or self.second.total_cost is None:
            return None
        return self.first.total_cost + self.escalation_rate * self.second.total_cost

    @property
    def total_cost(self) -> Optional[float]:
        """The expected cost (at :attr:`escalation_rate`)."""
        return self.expected_cost

    @property
    def requests(self) -> int:
        return self.first.requests + round(self.escalation_rate * self.second.requests)

    def to_dict(self) -> dict:
        return {"first": self.first.to_dict(), "second_if_all_escalate": self.second.to_dict(),
                "escalation_rate": self.escalation_rate, "rate_source": self.rate_source,
                "expected_cost": self.expected_cost, "requests": self.requests}

    def describe(self) -> str:
        second_all = self.second.total_cost
        lines = ["pass 1: " + self.first.describe(),
                 f"pass 2 (escalated samples only), if all {self.second.to_send} escalated: " + self.second.describe(),
                 f"escalation rate {self.escalation_rate:.0%} ({self.rate_source}): ≈ "
                 f"{round(self.escalation_rate * self.second.requests)} request(s) to {self.second.model}"]
        if self.expected_cost is not None and second_all is not None:
            lines.append(f"cascade cost ≈ ${self.expected_cost:,.4f} expected "
                         f"(at most ${self.first.total_cost + second_all:,.4f} if every sample escalates)")
        return "\n".join(lines)


def measured_escalation_rate(samples, config: AnnotateConfig) -> Optional[float]:
    """The share of judged samples an earlier run of this cascade escalated, if it judged any."""
    marker = escalated_field(config.label_field)
    if not samples._dataset.has_field(marker):
        return None
    view = _shard_view(samples, config)
    escalated = view.mongo([{"$match": {marker: {"$ne": None}}}]).count()
    judged = escalated + view.mongo([{"$match": {marker: None, config.status_field: {"$ne": None}}}]).count()
    return escalated / judged if judged else None


def estimate_cascade(samples, config: AnnotateConfig, *, prices: Union[str, Mapping, None] = None,
                     escalation_rate: Optional[float] = None) -> CascadeEstimate:
    """The two passes' estimates: the first on what it would send, the second at an escalation rate.

    The rate is, in order: ``escalation_rate`` if given; the one an earlier run of this
    cascade measured on these samples; else :data:`ASSUMED_ESCALATION_RATE`.
    """
    first_config = first_pass_config(config)
    first = estimate_run(first_pass_samples(samples, config), first_config, prices=prices)
    # every sample without an answer yet (those the first pass will send, and escalated ones still to send)
    unanswered = _shard_view(samples, config)
    if config.if_labeled == "skip":
        unanswered = unanswered.mongo([{"$match": {config.status_field: None}}])
    second = estimate_run(unanswered, _with(second_pass_config(config), if_labeled="overwrite"), prices=prices)
    if escalation_rate is not None:
        source = "given"
    else:
        escalation_rate = measured_escalation_rate(samples, config)
        source = "measured on this cascade's earlier run"
        if escalation_rate is None:
            escalation_rate, source = ASSUMED_ESCALATION_RATE, "assumed"
    return CascadeEstimate(first, second, escalation_rate, source)
