"""Model tiers: each request answered the way the model it names would answer.

Real Gemini tiers differ mostly where images are hard. A lite model misses
more small objects, boxes them more loosely and hallucinates more; a pro model
is better, slower and dearer. :class:`ByModel` gives each request to the
scenario of its model's tier, and :func:`tiered_oracle` builds one oracle per tier
with the tier's noise profile (:data:`~.noise.NOISE_PROFILES`) and its latency.
Comparing models or cascading from a cheap one to a strong one can then be
exercised and measured offline.

A model name's tier is read from the name: ``...-lite`` is ``lite``, ``...-pro...``
is ``pro``, and anything else (``...-flash...``) is ``flash``.

====== ======= ========================================================
tier   noise   latency (× the ``latency`` given to :func:`tiered_oracle`)
====== ======= ========================================================
lite   lite    0.6
flash  flash   1.0
pro    pro     3.0
====== ======= ========================================================

Prices are not the emulator's business: the client prices what the replies
report (their token counts) with its own price table.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Mapping, Optional, Sequence

from .noise import noise_profile
from .oracle import LabelIndex
from .scenarios import EmulatorReply, Oracle, Response, Scenario
from .wire import EmulatorRequest

TIER_NAMES = ("lite", "flash", "pro")


@dataclass(frozen=True)
class ModelTier:
    """How one tier of model behaves.

    Attributes:
        noise: the name of its noise profile (:data:`~.noise.NOISE_PROFILES`).
        relative_latency: its answer time, relative to a flash model's.
    """

    noise: str
    relative_latency: float


MODEL_TIERS: dict[str, ModelTier] = {
    "lite": ModelTier("lite", 0.6),
    "flash": ModelTier("flash", 1.0),
    "pro": ModelTier("pro", 3.0),
}
"""The tiers, from the cheapest to the strongest."""


def model_tier(model: str) -> str:
    """The tier a model name belongs to.

    >>> [model_tier(m) for m in ("gemini-2.5-flash-lite", "gemini-3-pro-preview", "gemini-3-flash-preview")]
    ['lite', 'pro', 'flash']
    """
    parts = model.lower().replace("_", "-").split("-")
    if "lite" in parts:
        return "lite"
    if "pro" in parts:
        return "pro"
    return "flash"


class ByModel(Scenario):
    """Answers each request with the scenario of its model's tier.

    Args:
        tiers: the scenario answering for each tier name (see :func:`model_tier`).
        delays: extra seconds each tier's answers take, by tier name.
    """

    def __init__(self, tiers: Mapping[str, Scenario], delays: Mapping[str, float] = ()):
        missing = set(TIER_NAMES) - set(tiers)
        if missing:
            raise ValueError(f"no scenario for the tier(s) {', '.join(sorted(missing))}")
        self.tiers = dict(tiers)
        self.delays = dict(delays)
        self.answered: dict[str, int] = dict.fromkeys(self.tiers, 0)
        self._lock = threading.Lock()

    def respond(self, request: EmulatorRequest) -> Response:
        tier = model_tier(request.model or "")
        with self._lock:
            self.answered[tier] += 1
        response = self.tiers[tier].respond(request)
        delay = self.delays.get(tier, 0.0)
        if delay and isinstance(response, EmulatorReply):
            response = replace(response, delay=response.delay + delay)
        return response


def tiered_oracle(index: LabelIndex, *, seed: int = 0, latency: float = 0.0,
                  confusions: Optional[Sequence[Sequence[str]]] = None) -> ByModel:
    """One oracle per tier, each with its tier's noise, answering by the request's model.

    Args:
        index: the known images and labels (the ground truth all tiers are wrong about).
        seed: the noise seed, the same for every tier.
        latency: a flash model's extra answer time in seconds; the other tiers take
            their :attr:`ModelTier.relative_latency` times it.
        confusions: the groups of look-alike classes every tier may confuse
            (default: :data:`~.noise.CONFUSABLE_CLASSES`, COCO's).
    """

    def noise(tier: ModelTier):
        profile = noise_profile(tier.noise, seed=seed)
        return profile if confusions is None else replace(profile, confusions=tuple(map(tuple, confusions)))

    return ByModel(
        {name: Oracle(index, noise=noise(tier)) for name, tier in MODEL_TIERS.items()},
        delays={name: latency * tier.relative_latency for name, tier in MODEL_TIERS.items()},
    )
