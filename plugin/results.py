"""One reply → one sample's result: the single place that decides a sample's status.

The online pipeline, Batch API ingest and :class:`~gemini_annotate.fiftyone_model.GeminiModel`
all turn a reply into a :class:`SampleResult` with :func:`reply_result`, so a
refusal, an unreadable reply or a reply cut off at the token limit gets the
same status, reason and labels whichever way the request was sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

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
