"""Replies → one sample's result: the single place that decides a sample's status.

The online pipeline, Batch API ingest and :class:`~gemini_annotate.fiftyone_model.GeminiModel`
all turn a reply into a :class:`SampleResult` with :func:`reply_result` (or the
N replies of a consensus run with :func:`consensus_result`), so a refusal, an
unreadable reply or a reply cut off at the token limit gets the same status,
reason and labels whichever way the request was sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

from .fuse import fuse_segments, fuse_values
from .labels import labels_in
from .messages import GeminiReply
from .tasks import ReplyContext, TaskSpec
from .vocabulary import STATUS_FAILED, STATUS_OK, STATUS_PARTIAL

TRUNCATED_REASON = "reply cut off at the output token limit (MAX_TOKENS): objects after the cut are missing"


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


def failed_result(sample_id: str, reason: str) -> SampleResult:
    """The result of a sample that got no labels, and why."""
    return SampleResult(sample_id, STATUS_FAILED, reason=reason)


def reply_result(sample_id: str, reply: GeminiReply, task: TaskSpec, context: ReplyContext) -> SampleResult:
    """A sample's result from Gemini's reply to its request.

    A refusal fails the sample; otherwise the task reads the reply's text. A
    reply cut off at the output token limit is at best ``partial``: whatever
    the parser salvaged, objects after the cut are missing.

    Args:
        sample_id: the sample's id.
        reply: the reply.
        task: the run's task.
        context: the configuration, image size and provenance the labels need.
    """
    if reply.refused:
        return failed_result(sample_id, f"Gemini declined to answer (finish reason {reply.finish_reason})")
    outcome = task.interpret(reply.text, reply.truncated, context)
    reason = "; ".join(outcome.warnings) or None
    if outcome.status == "unreadable":
        return failed_result(sample_id, f"unreadable reply: {reason}")
    status = STATUS_PARTIAL if outcome.status == "partial" else STATUS_OK
    if reply.truncated and status == STATUS_OK:
        status = STATUS_PARTIAL
        reason = "; ".join(filter(None, [reason, TRUNCATED_REASON]))
    return SampleResult(sample_id, status, outcome.label, reason, outcome.label_count, fields=outcome.fields)


Answer = Union[GeminiReply, str]
"""What one request of a sample ended with: Gemini's reply, or why the request failed."""


def sample_result(sample_id: str, answers: Sequence[Answer], task: TaskSpec, context: ReplyContext) -> SampleResult:
    """A sample's result from what its request(s) ended with: one answer as it is, several fused.

    Args:
        sample_id: the sample's id.
        answers: one answer per request of the sample (several in a consensus run).
        task: the run's task.
        context: the configuration, image size and provenance the labels need.
    """
    if len(answers) == 1:
        answer = answers[0]
        if isinstance(answer, GeminiReply):
            return reply_result(sample_id, answer, task, context)
        return failed_result(sample_id, answer)
    return consensus_result(sample_id, answers, task, context)


def consensus_result(sample_id: str, replies: Sequence[Answer], task: TaskSpec,
                     context: ReplyContext) -> SampleResult:
    """A sample's result from the N answers of a consensus run, fused into one set of labels.

    Each answer is read as :func:`reply_result` reads a single one; a failed
    answer (given as the reason it failed) counts as an answer that proposed
    nothing. The labels are fused by agreement (:mod:`gemini_annotate.fuse`);
    the sample is ``failed`` when no answer could be read, ``partial`` when
    some could not or lost objects, with each distinct reason said once.

    Args:
        sample_id: the sample's id.
        replies: the N replies, or for a request that failed, why.
        task: the run's task.
        context: the configuration, image size and provenance the labels need.
    """
    results = [reply_result(sample_id, reply, task, context) if isinstance(reply, GeminiReply)
               else failed_result(sample_id, reply) for reply in replies]
    read = [r for r in results if r.status != STATUS_FAILED]
    reasons = list(dict.fromkeys(r.reason for r in results if r.reason))
    answers = len(results)
    if not read:
        return failed_result(sample_id, f"none of the {answers} answers could be used: " + "; ".join(reasons))
    values = [r.label if r.status != STATUS_FAILED else None for r in results]
    if task.name == "segment":
        label, outlines = fuse_segments(values, answers, frame_size=context.frame_size)
        fields = {context.config.polylines_field: outlines}
    else:
        label, fields = fuse_values(values, answers, frame_size=context.frame_size), {}
    failed = answers - len(read)
    status = STATUS_PARTIAL if failed or any(r.status == STATUS_PARTIAL for r in read) else STATUS_OK
    notes = ([f"{failed} of {answers} answers failed"] if failed else []) + reasons
    return SampleResult(sample_id, status, label, "; ".join(notes) or None, len(labels_in(label)), fields=fields)
