"""What goes to Gemini and what comes back, as plain values.

The SDK adapter (:mod:`gemini_annotate.gemini`) turns a :class:`GeminiRequest`
into an SDK call and the SDK's answer into a :class:`GeminiReply`; everything
else (request building, reply reading, jobs) works with these values only, so
no other module needs the SDK's types.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Optional

REFUSAL_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKED",
    }
)


@dataclass(frozen=True)
class ImagePart:
    """One image of a request: inline bytes or a URI (File API, http(s), gs://)."""

    mime_type: str
    data: Optional[bytes] = None
    uri: Optional[str] = None

    def __post_init__(self):
        if (self.data is None) == (self.uri is None):
            raise ValueError("an ImagePart holds exactly one of data or uri")


@dataclass(frozen=True)
class GeminiRequest:
    """What one call asks: the prompt, then the images, and the reply's shape."""

    prompt: str
    images: tuple[ImagePart, ...]
    response_schema: Optional[dict] = None
    thinking_level: Optional[str] = None
    media_resolution: Optional[str] = None
    """``low``, ``medium`` or ``high``: the per-image token budget; ``None`` for the model's default."""
    seed: Optional[int] = None
    """The sampling seed: requests that differ only by it are independent answers (consensus)."""


@dataclass(frozen=True)
class TokenUsage:
    """Token counts a reply reports."""

    input_tokens: int = 0
    output_tokens: int = 0
    thought_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: "TokenUsage") -> "TokenUsage":
        return TokenUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.thought_tokens + other.thought_tokens,
            self.total_tokens + other.total_tokens,
        )


@dataclass(frozen=True)
class GeminiReply:
    """The model's answer text and what came with it.

    ``finish_reason`` uses generateContent's names for both APIs: ``STOP``,
    ``MAX_TOKENS`` (the text is truncated), a refusal such as ``SAFETY``, ...
    """

    text: str
    finish_reason: str = "STOP"
    usage: TokenUsage = field(default_factory=TokenUsage)
    model_version: Optional[str] = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "MAX_TOKENS"

    @property
    def refused(self) -> bool:
        return self.finish_reason in REFUSAL_FINISH_REASONS


@dataclass(frozen=True)
class UploadedFile:
    """A file held by Gemini's File API.

    Attributes:
        name: its resource name, ``files/ID``.
        uri: the URI a request refers to it by.
        mime_type: its MIME type.
        state: ``ACTIVE`` once usable (``PROCESSING``, ``FAILED`` otherwise).
        expires_at: when Gemini deletes it (48 h after upload), if said.
    """

    name: str
    uri: str
    mime_type: str
    state: str = "ACTIVE"
    expires_at: Optional[datetime.datetime] = None


@dataclass(frozen=True)
class BatchResult:
    """One answer of a batch job: the reply, or the error of that one request."""

    key: str
    reply: Optional[GeminiReply] = None
    error: Optional[str] = None


BATCH_DONE_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED", "PARTIALLY_SUCCEEDED"})


@dataclass(frozen=True)
class BatchStatus:
    """Where a batch job stands.

    Attributes:
        name: the job's resource name, ``batches/ID``.
        state: ``PENDING``, ``RUNNING``, ``SUCCEEDED``, ``FAILED``, ``CANCELLED``
            or ``EXPIRED`` (Google's ``JOB_STATE_*`` without the prefix).
        results: every request's result once the job succeeded, else ``None``.
        error: why the job failed, when it did.
    """

    name: str
    state: str
    results: Optional[tuple[BatchResult, ...]] = None
    error: Optional[str] = None

    @property
    def done(self) -> bool:
        return self.state in BATCH_DONE_STATES

class GeminiError(Exception):
    """A request that failed; its message is safe to show and names no secret.

    Attributes:
        status: the HTTP status, when there was one.
        reason: Google's error reason (``API_KEY_INVALID``, ...) or status name.
        retryable: trying again later may succeed (429, 5xx, timeouts).
        fatal: no request of this run can succeed (bad key, unknown model, no
            permission, exhausted daily quota): the run must stop.
        retry_after: seconds the server asked us to wait, if it said.
        quota_id: the quota a 429 says was exceeded (its ``QuotaFailure``
            detail), e.g. ``GenerateRequestsPerMinutePerProjectPerModel``;
            ``None`` for a 429 that names no quota (capacity, overload).
    """

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        reason: Optional[str] = None,
        retryable: bool = False,
        fatal: bool = False,
        retry_after: Optional[float] = None,
        quota_id: Optional[str] = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.retryable = retryable
        self.fatal = fatal
        self.retry_after = retry_after
        self.quota_id = quota_id

