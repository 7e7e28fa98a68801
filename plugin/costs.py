"""Tokens and money: estimates before a run, and the run's reported usage beside them.

Input tokens are estimated with Google's documented image formula
(:func:`gemini_annotate.media.estimate_image_tokens`: 258 tokens up to 384 px a
side, else 258 per crop unit of ``floor(min(w, h) / 1.5)`` px, capped by
``media_resolution``) on each image as it will be sent (after ``max_image_side``),
plus about one token per four characters of prompt. Output tokens cannot be
known before the model answers; the estimate uses a typical count per task
(:data:`TYPICAL_OUTPUT_TOKENS`), stated as such.

Prices are indicative: the table below was copied from Google's pricing page
on the date it carries, this machine has no internet to check it, and prices
change. Pass your own with ``prices=`` (or ``--prices prices.json``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Mapping, Optional, Union

from .config import AnnotateConfig


@dataclass(frozen=True)
class ModelPrice:
    """What one model costs, in US dollars per million tokens.

    Attributes:
        input_per_million: price of a million input tokens (text and images).
        output_per_million: price of a million output tokens (thinking included).
        batch_discount: the share taken off by the Batch API (0.5 = half price).
    """

    input_per_million: float
    output_per_million: float
    batch_discount: float = 0.5


PRICES_AS_OF = "2025-12"
PRICES_SOURCE = (
    "Google's Gemini Developer API pricing page (ai.google.dev/gemini-api/docs/pricing), paid "
    "tier, prompts up to 200k tokens; copied by hand, indicative only: check the page before "
    "budgeting, and pass your own prices to override"
)
PRICES: dict[str, ModelPrice] = {
    "gemini-3-pro-preview": ModelPrice(2.00, 12.00),
    "gemini-3-flash-preview": ModelPrice(0.50, 3.00),
    "gemini-2.5-pro": ModelPrice(1.25, 10.00),
    "gemini-2.5-flash": ModelPrice(0.30, 2.50),
    "gemini-2.5-flash-lite": ModelPrice(0.10, 0.40),
    "gemini-2.0-flash": ModelPrice(0.10, 0.40),
    "gemini-2.0-flash-lite": ModelPrice(0.075, 0.30),
}
"""Indicative prices per model (see :data:`PRICES_AS_OF` and :data:`PRICES_SOURCE`)."""

TYPICAL_OUTPUT_TOKENS: dict[str, int] = {
    "detect": 400,
    "segment": 2000,
    "points": 250,
    "caption": 60,
    "classify": 10,
    "vqa": 30,
}
"""A rough output-token count per reply by task (a dozen boxes, a two-sentence
caption, ...), used only for estimates; thinking tokens come on top."""
DEFAULT_OUTPUT_TOKENS = 300


def typical_output_tokens(task: str) -> int:
    """The output tokens assumed per reply of a task (see :data:`TYPICAL_OUTPUT_TOKENS`)."""
    return TYPICAL_OUTPUT_TOKENS.get(task, DEFAULT_OUTPUT_TOKENS)

PriceTable = Mapping[str, ModelPrice]


def estimate_text_tokens(text: str) -> int:
    """About one token per four characters, as Google's token guide says for English."""
    return math.ceil(len(text) / 4)


def load_prices(source: Union[str, Mapping, None]) -> dict[str, ModelPrice]:
    """The price table with a user's prices laid over it.

    Args:
        source: ``None``; a mapping of model name to ``{"input_per_million",
            "output_per_million", "batch_discount"}`` (or a :class:`ModelPrice`);
            or the path of a JSON file holding such a mapping.
    """
    table = dict(PRICES)
    if source is None:
        return table
    if isinstance(source, str):
        with open(source) as f:
            source = json.load(f)
    for model, price in source.items():
        table[model] = price if isinstance(price, ModelPrice) else ModelPrice(**price)
    return table


def price_for(model: str, prices: Optional[PriceTable] = None) -> Optional[ModelPrice]:
    """A model's price: its own entry, else the longest table name it starts with."""
    table = prices if prices is not None else PRICES
    name = model.rsplit("/", 1)[-1]
    if name in table:
        return table[name]
    prefixes = [key for key in table if name.startswith(key)]
    return table[max(prefixes, key=len)] if prefixes else None


def cost(input_tokens: int, output_tokens: int, price: Optional[ModelPrice], *, batch: bool = False) -> Optional[float]:
    """US dollars for these tokens, or ``None`` when the price is unknown."""
    if price is None:
        return None
    factor = (1.0 - price.batch_discount) if batch else 1.0
    return factor * (input_tokens * price.input_per_million + output_tokens * price.output_per_million) / 1e6


@dataclass(frozen=True)
class CostEstimate:
    """What a run is expected to send and cost, before it runs.

    Attributes:
        samples: samples in the collection.
        requests: requests a run would send (one per sample to send).
        skipped: samples a run would leave alone (already labeled or finished).
        image_tokens: input tokens for images (reference images included).
        prompt_tokens: input tokens for prompt text (approximate).
        output_tokens: assumed output tokens (typical per task; thinking excluded).
        model: the model priced.
        batch: whether Batch API prices apply.
        input_cost: US dollars for input, or ``None`` if the model has no price.
        output_cost: US dollars for the assumed output, or ``None``.
        extrapolated: images whose size was not known, estimated from the others.
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
            f"{self.requests} of {self.samples} sample(s) → {self.requests} request(s) to {self.model} "
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
        if self.extrapolated:
            lines.append(f"sizes of {self.extrapolated} image(s) unknown, estimated from the others")
        return "\n".join(lines)


def estimate_run(samples, config: AnnotateConfig, *, prices: Union[str, Mapping, None] = None) -> CostEstimate:
    """The tokens and cost of annotating ``samples`` with ``config``, before sending anything.

    Counts what a run would send (see :func:`gemini_annotate.preview.preview_run`,
    which the App's form shows: images, reference images and prompts), adds the
    task's typical output, and prices it all. Prompt placeholders are counted
    as written.
    """
    from .preview import preview_run  # preview imports this module

    preview = preview_run(samples, config)
    images = preview.image_tokens
    outputs = typical_output_tokens(config.task) * preview.to_send
    price = price_for(config.model, load_prices(prices))
    return CostEstimate(
        samples=preview.samples, requests=preview.to_send, skipped=preview.skipped, image_tokens=images,
        prompt_tokens=preview.prompt_tokens, output_tokens=outputs, model=config.model, batch=config.batch,
        input_cost=cost(images + preview.prompt_tokens, 0, price, batch=config.batch),
        output_cost=cost(0, outputs, price, batch=config.batch),
        extrapolated=preview.to_send - preview.sized,
    )


def compare_with_estimate(summary, config: AnnotateConfig, *,
                          prices: Union[str, Mapping, None] = None) -> str:
    """A run's reported tokens and cost beside the estimate of the requests it sent, as a table.

    ``summary`` is a :class:`gemini_annotate.runs.RunSummary`. Input tokens are
    estimated per request as it was built; output tokens at the task's typical
    count per answered request. Reported output includes thinking tokens
    (billed as output).
    """
    price = price_for(config.model, load_prices(prices))
    answered = summary.done
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
