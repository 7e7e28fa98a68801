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
import os
from dataclasses import dataclass
from typing import Mapping, Optional, Union


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




PRICES_ENV = "GEMINI_ANNOTATE_PRICES"
"""Environment variable naming a JSON price table laid over :data:`PRICES` (the App reads it;
Python and the CLI also take ``prices=`` / ``--prices``)."""


def user_prices(source: Union[str, Mapping, None] = None) -> dict[str, ModelPrice]:
    """The price table: ``source`` if given, else the file :data:`PRICES_ENV` names, laid over :data:`PRICES`."""
    return load_prices(source if source is not None else (os.environ.get(PRICES_ENV) or None))


def online_and_batch_cost(input_tokens: int, output_tokens: int, model: str,
                          prices: Optional[PriceTable] = None) -> tuple[Optional[float], Optional[float]]:
    """US dollars for these tokens with the online API and with the Batch API (``None``: no price)."""
    price = price_for(model, prices)
    return (cost(input_tokens, output_tokens, price, batch=False),
            cost(input_tokens, output_tokens, price, batch=True))


def money(value: Optional[float]) -> str:
    """Dollars as people read them: cents for a few, fractions of a cent for very little.

    >>> money(0.004), money(1.5), money(None)
    ('$0.0040', '$1.50', 'unknown')
    """
    if value is None:
        return "unknown"
    return f"${value:,.2f}" if value >= 0.10 else f"${value:,.4f}"


def price_sentence(input_tokens: int, output_tokens: int, model: str, requests: int,
                   prices: Optional[PriceTable] = None) -> str:
    """What a run would cost, online and with the Batch API, as one sentence for a form or a terminal.

    >>> price_sentence(1000, 400, "gemini-2.5-flash", 1)
    '1 request(s), ≈ 1,000 input + 400 output tokens: ≈ $0.0013 online, $0.0006 with the Batch API (prices as of 2025-12, indicative)'
    """
    online, batch = online_and_batch_cost(input_tokens, output_tokens, model, prices)
    tokens = f"{requests:,} request(s), ≈ {input_tokens:,} input + {output_tokens:,} output tokens"
    if online is None:
        return f"{tokens}: no price known for {model} (add it to the price table in ${PRICES_ENV})"
    return (f"{tokens}: ≈ {money(online)} online, {money(batch)} with the Batch API "
            f"(prices as of {PRICES_AS_OF}, indicative)")
