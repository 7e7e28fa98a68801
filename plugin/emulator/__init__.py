"""A local Gemini emulator: the real wire format, answers from scenarios.

Tests, benchmarks and the demo run on it, and users can dry-run a whole
labeling job offline::

    from gemini_annotate.emulator import EmulatorServer, LabelIndex, Oracle

    index = LabelIndex.from_samples(dataset, "ground_truth")
    with EmulatorServer(Oracle(index)) as emulator:
        gemini_annotate.annotate(dataset, base_url=emulator.url, api_key="emulator")

To be wrong the way real models are, give the oracle noise: a named profile,
``Oracle(index, noise=noise_profile("lite", seed=1))`` (``perfect``, ``pro``,
``flash``, ``lite``: :mod:`.noise` says what each does, with its numbers), or
an :class:`OracleNoise` of your own. Each answer draws its mistakes afresh.
``tiered_oracle(index)`` answers each request with the noise of the model it
names (lite, flash or pro: :mod:`.tiers`), to compare models or cascade offline.

The emulator imports nothing from the rest of the package: its geometry,
image turning, class-name matching and token counts are its own
(:mod:`.geometry`, :mod:`.orientation`, :mod:`.class_names`, :mod:`.tokens`),
so tests that read its answers back grade the client's code against an
independent one, not against itself.
"""

from .noise import CONFUSABLE_CLASSES, NOISE_PROFILES, OracleNoise, confusion_groups, noise_profile
from .oracle import KnownImage, KnownObject, LabelIndex
from .quota import Quota
from .scenarios import (
    Canned,
    DailyQuotaExhausted,
    EmulatorFault,
    EmulatorReply,
    Faults,
    Oracle,
    Refuse,
    Scenario,
    Styled,
)
from .server import EmulatorServer, RequestRecord
from .tiers import MODEL_TIERS, ByModel, ModelTier, model_tier, tiered_oracle
from .wire import EmulatorRequest

__all__ = [
    "CONFUSABLE_CLASSES", "MODEL_TIERS", "NOISE_PROFILES", "ByModel", "Canned", "DailyQuotaExhausted",
    "EmulatorFault", "EmulatorReply", "EmulatorRequest", "EmulatorServer", "Faults", "KnownImage", "KnownObject",
    "LabelIndex", "ModelTier", "Oracle", "OracleNoise", "Quota", "Refuse", "RequestRecord", "Scenario", "Styled",
    "confusion_groups", "model_tier", "noise_profile", "tiered_oracle",
]
