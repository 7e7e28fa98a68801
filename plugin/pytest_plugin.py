"""Pytest fixtures for testing code that calls Gemini, registered by installing gemini-annotate.

``gemini_emulator`` starts an emulator (answering ``{"boxes": []}`` until a test
sets ``gemini_emulator.scenario``), points ``GOOGLE_GEMINI_BASE_URL`` at it, sets
a dummy ``GEMINI_API_KEY``, and stops it after the test. Nothing is imported
until a test asks for the fixture, so installing the package costs other test
suites nothing.
"""

from __future__ import annotations

import pytest

EMULATOR_API_KEY = "emulator-test-key"


@pytest.fixture
def gemini_emulator(monkeypatch):
    """A running emulator the google-genai SDK is pointed at, for one test."""
    from .emulator import Canned, EmulatorServer  # lazy: pytest loads this plugin in every run of the environment

    server = EmulatorServer(Canned('{"boxes": []}'), keep_requests=64).start()
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
    monkeypatch.setenv("GEMINI_API_KEY", EMULATOR_API_KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    try:
        yield server
    finally:
        server.stop()
