"""What a run would send and cost, before it runs; and what it cost beside the estimate.

:func:`preview_run` counts samples, requests and estimated tokens;
:func:`estimate_run` prices them (:mod:`gemini_annotate.costs`);
:func:`compare_with_estimate` sets a finished run's reported usage beside its
estimate. The preview is cheap enough to recompute on every change of the App's form, and
its memory does not grow with the view: the samples to send are counted, and
their image sizes (from the samples' metadata) counted by size, in the
database; for samples without metadata at most ``header_budget`` image headers
are read (no pixels decoded) and the rest are extrapolated from the average of
the known ones, which the description says.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Optional, Union

import fiftyone as fo
from fiftyone import ViewField as F

from .config import AnnotateConfig
from .costs import PRICES_AS_OF, cost, estimate_text_tokens, price_for, typical_output_tokens, user_prices
from .media import ImageError, estimate_image_tokens, read_image_size
from .prompts import request_prompt
from .request_builder import is_uri
from .review.status import review_counts
from .run_attempts import resumes_by_stamp, unfinished_attempt
from .run_records import RunSummary
from .selection import pending_samples
from .vocabulary import UNREVIEWED

FALLBACK_TOKENS_PER_IMAGE = estimate_image_tokens(1024, 768)
"""Used for every image when no image size is known at all."""


@dataclass(frozen=True)
class RunPreview:
    """What a run of a configuration over a collection would send.

    Attributes:
        samples: samples in the collection.
        to_send: samples that would be sent.
        requests: requests they take, before retries (``consensus`` each).
        skipped: samples left alone (already labeled or finished, per ``if_labeled``).
        image_tokens: estimated input tokens for the images as sent (resized,
            capped by ``media_resolution``), reference images included.
        prompt_tokens: estimated input tokens for the prompt, over all requests.
        sized: samples to send whose image size was known or read.
        reviewed_labels: with ``if_labeled="overwrite"``, labels a person
            reviewed or drew in the samples to send, which the run would replace.
    """

    samples: int
    to_send: int
    requests: int
    skipped: int
    image_tokens: int
    prompt_tokens: int
    sized: int
    reviewed_labels: int

    @property
    def estimated_tokens(self) -> int:
        return self.image_tokens + self.prompt_tokens

    def describe(self) -> str:
        """One line for a form or a terminal."""
        exact = "" if self.sized == self.to_send else f"; sizes of {self.to_send - self.sized} image(s) extrapolated"
        return (f"{self.to_send} of {self.samples} sample(s) → {self.requests} request(s), about "
                f"{self.estimated_tokens:,} input tokens ({self.image_tokens:,} for images){exact}; "
                f"{self.skipped} skipped")


def header_size(path: str) -> Optional[tuple[int, int]]:
    """An image's displayed size from its header alone, or ``None`` if unreadable."""
    try:
        return read_image_size(path)
    except ImageError:  # unreadable images fail later, per sample, with their reason
        return None


def image_tokens_as_sent(width: int, height: int, config: AnnotateConfig) -> int:
    """The input tokens of a ``width`` × ``height`` image sent under ``config`` (resized, capped)."""
    return estimate_image_tokens(width, height, max_side=config.max_image_side,
                                 media_resolution=config.media_resolution, model=config.model)


def preview_run(
    samples: fo.core.collections.SampleCollection,
    config: AnnotateConfig,
    *,
    header_budget: int = 64,
) -> RunPreview:
    """Estimates what a run would send, without sending anything.

    Args:
        samples: the collection the run would cover.
        config: the run's configuration.
        header_budget: image headers read at most for samples without metadata.

    Returns:
        a :class:`RunPreview`
    """
    todo = pending_samples(samples, config, _resumed_attempt(samples, config))
    total = samples.count()
    sizes = _size_counts(todo)
    to_send = sum(sizes.values())
    known = {size: n for size, n in sizes.items() if size is not None}
    # samples without metadata: a bounded number of headers read, the rest extrapolated
    for path in todo.match(~(F("metadata.width") > 0) | ~(F("metadata.height") > 0)).limit(
            header_budget).values("filepath"):
        size = header_size(path)
        if size is not None:
            known[size] = known.get(size, 0) + 1
    sized = sum(known.values())
    tokens = sum(image_tokens_as_sent(w, h, config) * n for (w, h), n in known.items())
    per_unknown = (tokens / sized) if sized else FALLBACK_TOKENS_PER_IMAGE
    image_tokens = tokens + math.ceil(per_unknown * (to_send - sized))
    image_tokens += _reference_tokens(config) * to_send
    prompt = request_prompt(config)
    answers = config.consensus  # each answer of a consensus sends the image and prompt again
    return RunPreview(
        samples=total,
        to_send=to_send,
        requests=to_send * answers,
        skipped=total - to_send,
        image_tokens=int(image_tokens) * answers,
        prompt_tokens=estimate_text_tokens(prompt) * to_send * answers,
        sized=sized,
        reviewed_labels=_reviewed_labels(todo, config),
    )


_SIZE_KEY = 1_000_000
"""Width and height in one number (``width * _SIZE_KEY + height``), to count them in one aggregation."""


def _size_counts(todo: fo.core.collections.SampleCollection) -> dict[Optional[tuple[int, int]], int]:
    """``{(width, height): samples}`` from the samples' metadata, counted by the database
    (memory: one entry per distinct size); samples without a size are counted under ``None``."""
    key = F("metadata.width") * _SIZE_KEY + F("metadata.height")
    counts: dict[Optional[tuple[int, int]], int] = {}
    for value, n in todo.count_values(key).items():
        size = divmod(int(value), _SIZE_KEY) if value is not None else None
        if size is not None and not (size[0] > 0 and size[1] > 0):
            size = None
        counts[size] = counts.get(size, 0) + n
    return counts


def _resumed_attempt(samples: fo.core.collections.SampleCollection, config: AnnotateConfig) -> Optional[str]:
    """The unfinished attempt a run of ``config`` would resume, whose samples it would not send again."""
    if not resumes_by_stamp(config) or not samples._dataset.has_run(config.resolved_run_key):
        return None
    return unfinished_attempt(samples._dataset, config.resolved_run_key)


def _reference_tokens(config: AnnotateConfig) -> int:
    """Input tokens of the reference images every request carries; one whose size
    is unknown (an address, an unreadable file) counts as the smallest image."""
    sizes = [None if is_uri(path) else header_size(path) for path in config.reference_images]
    return sum(image_tokens_as_sent(*(size or (1, 1)), config) for size in sizes)


def _reviewed_labels(samples: fo.core.collections.SampleCollection, config: AnnotateConfig) -> int:
    # only an overwrite can lose a person's work, so only then is it counted; text fields
    # (captions, answers) carry no review status
    if config.if_labeled != "overwrite":
        return 0
    label_type = getattr(samples.get_field(config.label_field), "document_type", None)
    if label_type is None or not issubclass(label_type, fo.Label):
        return 0
    statuses = review_counts(samples, config.label_field).statuses
    return sum(n for status, n in statuses.items() if status != UNREVIEWED)


@dataclass(frozen=True)
class CostEstimate:
    """What a run is expected to send and cost, before it runs.

    Attributes:
        samples: samples in the collection.
        requests: requests a run would send (``consensus`` per sample to send).
        skipped: samples a run would leave alone (already labeled or finished).
        image_tokens: input tokens for images (reference images included).
        prompt_tokens: input tokens for prompt text (approximate).
        output_tokens: assumed output tokens (typical per task; thinking excluded).
        model: the model priced.
        batch: whether Batch API prices apply.
        input_cost: US dollars for input, or ``None`` if the model has no price.
        output_cost: US dollars for the assumed output, or ``None``.
        extrapolated: images whose size was not known, estimated from the others.
        to_send: samples a run would send (``requests`` / ``consensus``).
        other_mode_cost: US dollars with the other prices (Batch API if ``batch`` is off,
            standard if on), or ``None``.
    """

    samples: int
    requests: int
    skipped: int
    image_tokens: int
    prompt_tokens: int
    output_tokens: int
    model: str
    batch: bool
    input_cost: Optional[float]
    output_cost: Optional[float]
    extrapolated: int = 0
    to_send: int = 0
    other_mode_cost: Optional[float] = None

    @property
    def input_tokens(self) -> int:
        return self.image_tokens + self.prompt_tokens

    @property
    def total_cost(self) -> Optional[float]:
        if self.input_cost is None or self.output_cost is None:
            return None
        return self.input_cost + self.output_cost

    def to_dict(self) -> dict:
        return {**asdict(self), "input_tokens": self.input_tokens, "total_cost": self.total_cost}

    def describe(self) -> str:
        """A few lines for a terminal or the App."""
        mode = "Batch API" if self.batch else "standard"
        lines = [
            f"{self.to_send} of {self.samples} sample(s) → {self.requests} request(s) to {self.model} "
            f"({mode} prices); {self.skipped} skipped",
            f"input tokens ≈ {self.input_tokens:,} ({self.image_tokens:,} for images, "
            f"{self.prompt_tokens:,} for prompts)",
            f"output tokens ≈ {self.output_tokens:,} (a typical reply per task; thinking extra)",
        ]
        if self.total_cost is None:
            lines.append(f"cost: no price known for {self.model}; pass prices to estimate it")
        else:
            lines.append(f"cost ≈ ${self.total_cost:,.4f} (input ${self.input_cost:,.4f}, "
                         f"output ${self.output_cost:,.4f}); prices as of {PRICES_AS_OF}, indicative")
            if self.other_mode_cost is not None:
                other = "standard (online)" if self.batch else "Batch API"
                lines.append(f"with {other} prices instead ≈ ${self.other_mode_cost:,.4f}")
        if self.extrapolated:
            lines.append(f"sizes of {self.extrapolated} image(s) unknown, estimated from the others")
        return "\n".join(lines)


def estimate_run(samples, config: AnnotateConfig, *, prices: Union[str, Mapping, None] = None) -> CostEstimate:
    """The tokens and cost of annotating ``samples`` with ``config``, before sending anything.

    Counts what a run would send (see :func:`preview_run`,
    which the App's form shows: images, reference images and prompts), adds the
    task's typical output, and prices it all. Prompt placeholders are counted
    as written.
    """
    preview = preview_run(samples, config)
    images = preview.image_tokens
    outputs = typical_output_tokens(config.task) * preview.requests
    price = price_for(config.model, user_prices(prices))
    return CostEstimate(
        samples=preview.samples, requests=preview.requests, skipped=preview.skipped, image_tokens=images,
        prompt_tokens=preview.prompt_tokens, output_tokens=outputs, model=config.model, batch=config.batch,
        input_cost=cost(images + preview.prompt_tokens, 0, price, batch=config.batch),
        output_cost=cost(0, outputs, price, batch=config.batch),
        extrapolated=preview.to_send - preview.sized, to_send=preview.to_send,
        other_mode_cost=cost(images + preview.prompt_tokens, outputs, price, batch=not config.batch),
    )


def compare_with_estimate(summary: RunSummary, config: AnnotateConfig, *,
                          prices: Union[str, Mapping, None] = None) -> str:
    """A run's reported tokens and cost beside the estimate of the requests it sent, as a table.

    Input tokens are
    estimated per request as it was built; output tokens at the task's typical
    count per answered request. Reported output includes thinking tokens
    (billed as output).
    """
    price = price_for(config.model, user_prices(prices))
    answered = summary.done * config.consensus
    per_reply = typical_output_tokens(config.task)
    estimated_output = per_reply * answered
    reported_output = summary.output_tokens + summary.thought_tokens
    estimated_cost = cost(summary.estimated_input_tokens, estimated_output, price, batch=config.batch)
    reported_cost = cost(summary.input_tokens, reported_output, price, batch=config.batch)

    def ratio(reported: float, estimated: float) -> str:
        return f"{reported / estimated:.2f}" if estimated else "-"

    def money(value: Optional[float]) -> str:
        return "unknown" if value is None else f"${value:,.4f}"

    rows = [
        ("", "estimated", "reported", "reported/estimated"),
        ("input tokens", f"{summary.estimated_input_tokens:,}", f"{summary.input_tokens:,}",
         ratio(summary.input_tokens, summary.estimated_input_tokens)),
        ("output tokens", f"{estimated_output:,}", f"{reported_output:,}",
         ratio(reported_output, estimated_output)),
        ("cost", money(estimated_cost), money(reported_cost),
         ratio(reported_cost or 0.0, estimated_cost or 0.0)),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    table = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
    note = (f"({answered} answered requests; output estimate = {per_reply} tokens each; "
            f"reported output includes {summary.thought_tokens:,} thinking tokens; "
            f"prices as of {PRICES_AS_OF}, indicative)")
    return table + "\n" + note

