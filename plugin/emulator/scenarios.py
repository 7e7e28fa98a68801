"""Scenarios: how the emulator answers a request.

A scenario maps an :class:`EmulatorRequest` to an :class:`EmulatorReply` (text
and finish reason) or an :class:`EmulatorFault` (an HTTP error). Scenarios
compose: ``Faults(Oracle(index), rate_limit=0.2)`` is the oracle with one
request in five rate-limited; ``Styled(Oracle(index), "fenced")`` wraps its
JSON in a Markdown fence.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence, Union

from .noise import OracleNoise
from .oracle import LabelIndex, answer_form, oracle_answer
from .wire import EmulatorRequest, api_key_invalid, quota_failure, retry_info


@dataclass(frozen=True)
class EmulatorReply:
    """A successful answer: the model's text, how it finished, and when to send it."""

    text: str
    finish_reason: str = "STOP"
    delay: float = 0.0


@dataclass(frozen=True)
class EmulatorFault:
    """An error answer, in Google's error format.

    Attributes:
        status: the HTTP status.
        message: the error message.
        details: ``error.details`` entries (``RetryInfo``, ``ErrorInfo``, ...).
        retry_after_header: a ``Retry-After`` header value in seconds, if any.
        delay: seconds to wait before answering.
    """

    status: int
    message: str
    details: tuple = ()
    retry_after_header: Optional[float] = None
    delay: float = 0.0


Response = Union[EmulatorReply, EmulatorFault]


class Scenario:
    """Base class: answers one request."""

    def respond(self, request: EmulatorRequest) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError


class Canned(Scenario):
    """Answers with fixed texts, in turn, or with a function of the request.

    Args:
        replies: one text, a sequence used in turn (cycling), or a callable.
        finish_reason: the finish reason sent with each reply.
    """

    def __init__(self, replies: Union[str, Sequence[str], Callable[[EmulatorRequest], str]],
                 finish_reason: str = "STOP"):
        if isinstance(replies, str):
            replies = [replies]
        self._fn = replies if callable(replies) else None
        self._cycle = None if callable(replies) else itertools.cycle(list(replies))
        self._lock = threading.Lock()
        self.finish_reason = finish_reason

    def respond(self, request: EmulatorRequest) -> Response:
        if self._fn is not None:
            return EmulatorReply(self._fn(request), self.finish_reason)
        with self._lock:
            text = next(self._cycle)
        return EmulatorReply(text, self.finish_reason)


class Oracle(Scenario):
    """Answers from the labels known for the image received (see :mod:`.oracle`).

    With ``noise``, every answer draws its mistakes afresh: the ``k``-th request
    about an image is answered from a generator seeded by ``(seed, image, k)``,
    so asking again gets other misses and other hallucinations, and a run is
    reproducible when each image's requests come in the same order (concurrent
    requests for the same image may swap answers). See :mod:`.noise`.

    Args:
        index: the known images and labels.
        noise: imperfections to add (misses, jitter, hallucinations,
            confusions, drawn confidences), if any: an :class:`OracleNoise`,
            e.g. one of :data:`~.noise.NOISE_PROFILES`.
        unknown: the text answered for an image the index does not hold.
    """

    def __init__(self, index: LabelIndex, noise: Optional[OracleNoise] = None,
                 unknown: str = '{"boxes": []}'):
        self.index = index
        self.noise = noise
        self.unknown = unknown
        self.unmatched = 0
        self._draws: dict[str, int] = {}
        self._lock = threading.Lock()

    def respond(self, request: EmulatorRequest) -> Response:
        match = self.index.find(request.image_data) if request.image_data is not None else None
        if match is None:
            with self._lock:
                self.unmatched += 1
            return EmulatorReply(self.unknown)
        form = answer_form(request.schema, request.prompt)
        with self._lock:
            draw = self._draws.get(match.known.key, 0)
            self._draws[match.known.key] = draw + 1
        text = oracle_answer(match.known, form, match.sent_size, self.noise, request.prompt, draw=draw,
                             dataset_classes=self.index.classes if self.noise is not None else ())
        return EmulatorReply(text)


class Styled(Scenario):
    """Rewrites another scenario's text the way real replies come: messy.

    Styles: ``fenced`` (```` ```json ```` block), ``prose`` (sentences around the
    JSON), ``bare_list`` (a wrapper object unwrapped), ``not_json`` (no JSON at
    all), ``seg_tokens`` (masks as ``<seg_N>`` tokens), ``truncated`` (cut
    mid-item, finish reason ``MAX_TOKENS``), ``empty`` (no text).
    """

    STYLES = ("fenced", "prose", "bare_list", "not_json", "seg_tokens", "truncated", "empty")

    def __init__(self, inner: Scenario, style: str, truncate_at: float = 0.6):
        if style not in self.STYLES:
            raise ValueError(f"unknown style {style!r}; choose one of {', '.join(self.STYLES)}")
        self.inner = inner
        self.style = style
        self.truncate_at = truncate_at

    def respond(self, request: EmulatorRequest) -> Response:
        response = self.inner.respond(request)
        if not isinstance(response, EmulatorReply):
            return response
        return restyle(response, self.style, self.truncate_at)


def restyle(reply: EmulatorReply, style: str, truncate_at: float = 0.6) -> EmulatorReply:
    """Applies one of :attr:`Styled.STYLES` to a reply (its finish reason and delay kept, but when truncated)."""
    text = reply.text
    if style == "fenced":
        return replace(reply, text=f"```json\n{text}\n```")
    if style == "prose":
        return replace(reply, text=f"Here are the objects I found in the image:\n\n{text}\n\n"
                                   "Let me know if you need more.")
    if style == "not_json":
        return replace(reply, text="I'm sorry, I can't determine the objects in this image.")
    if style == "empty":
        return replace(reply, text="")
    if style == "truncated":
        return replace(reply, text=text[:max(1, int(len(text) * truncate_at))], finish_reason="MAX_TOKENS")
    if style not in ("bare_list", "seg_tokens"):
        raise ValueError(f"unknown style {style!r}")
    try:
        value = json.loads(text)
    except ValueError:
        return reply
    if style == "bare_list" and isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        value = lists[0] if lists else value
    if style == "seg_tokens":
        items = value.get("boxes", value) if isinstance(value, dict) else value
        for i, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict) and "mask" in item:
                item["mask"] = f"<start_of_mask><seg_{i * 7 % 100}><seg_{i * 13 % 100}>"
    return replace(reply, text=json.dumps(value))


class Faults(Scenario):
    """Injects faults into another scenario, each request drawing its fate at random.

    Args:
        inner: the scenario answering when no fault is drawn.
        rate_limit: share of requests answered 429 with a ``RetryInfo`` delay.
        server_error: share answered 500 or 503.
        slow: share answered only after ``slow_seconds`` (beyond a client timeout).
        truncate: share whose reply is cut mid-item (``MAX_TOKENS``).
        retry_delay: the delay a 429 asks for, in seconds.
        retry_after_header: also send a ``Retry-After`` header with 429s.
        slow_seconds: how long slow replies take.
        seed: the random seed (runs are reproducible).
    """

    def __init__(self, inner: Scenario, *, rate_limit: float = 0.0, server_error: float = 0.0,
                 slow: float = 0.0, truncate: float = 0.0, retry_delay: float = 1.0,
                 retry_after_header: bool = False, slow_seconds: float = 30.0, seed: int = 0):
        self.inner = inner
        self.rates = {"rate_limit": rate_limit, "server_error": server_error, "slow": slow, "truncate": truncate}
        if sum(self.rates.values()) > 1:
            raise ValueError("fault rates must add up to at most 1")
        self.retry_delay = retry_delay
        self.retry_after_header = retry_after_header
        self.slow_seconds = slow_seconds
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.injected: dict[str, int] = dict.fromkeys(self.rates, 0)

    def _draw(self) -> Optional[str]:
        with self._lock:
            x = self._rng.random()
        edge = 0.0
        for name, rate in self.rates.items():
            edge += rate
            if x < edge:
                with self._lock:
                    self.injected[name] += 1
                return name
        return None

    def respond(self, request: EmulatorRequest) -> Response:
        fault = self._draw()
        if fault == "rate_limit":
            return EmulatorFault(
                429, "Resource has been exhausted (e.g. check quota).",
                details=(retry_info(self.retry_delay),),
                retry_after_header=self.retry_delay if self.retry_after_header else None,
            )
        if fault == "server_error":
            with self._lock:
                status = self._rng.choice((500, 503))
            message = "An internal error has occurred." if status == 500 else "The model is overloaded."
            return EmulatorFault(status, message)
        response = self.inner.respond(request)
        if fault == "slow" and isinstance(response, EmulatorReply):
            return EmulatorReply(response.text, response.finish_reason, self.slow_seconds)
        if fault == "truncate" and isinstance(response, EmulatorReply):
            return restyle(response, "truncated")
        return response


class DailyQuotaExhausted(Scenario):
    """Every request gets the 429 of a used-up daily quota (it does not clear by retrying)."""

    def respond(self, request: EmulatorRequest) -> Response:
        return EmulatorFault(
            429, "You exceeded your current quota, please check your plan and billing details.",
            details=(quota_failure("GenerateRequestsPerDayPerProjectPerModel-FreeTier"), retry_info(40000)),
        )


class Refuse(Scenario):
    """Every request is refused as invalid (HTTP 400), like a bad option or schema."""

    def __init__(self, message: str = "Invalid JSON payload received."):
        self.message = message

    def respond(self, request: EmulatorRequest) -> Response:
        return EmulatorFault(400, self.message)


def bad_key_fault() -> EmulatorFault:
    """Google's answer to a wrong API key."""
    return EmulatorFault(400, "API key not valid. Please pass a valid API key.",
                         details=(api_key_invalid(),))
