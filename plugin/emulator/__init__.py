"""A local Gemini emulator: the real wire format, answers from scenarios.

Tests, benchmarks and the demo run on it, and users can dry-run a whole
labeling job offline::

    from gemini_annotate.emulator import EmulatorServer, LabelIndex, Oracle

    index = LabelIndex.from_samples(dataset, "ground_truth")
    with EmulatorServer(Oracle(index)) as emulator:
        gemini_annotate.annotate(dataset, base_url=emulator.url, api_key="emulator")
"""

from .oracle import KnownImage, KnownObject, LabelIndex, OracleNoise
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
from .wire import EmulatorRequest

__all__ = [
    "Canned", "DailyQuotaExhausted", "EmulatorFault", "EmulatorReply", "EmulatorRequest",
    "EmulatorServer", "Faults", "KnownImage", "KnownObject", "LabelIndex", "Oracle",
    "OracleNoise", "Refuse", "RequestRecord", "Scenario", "Styled",
]
