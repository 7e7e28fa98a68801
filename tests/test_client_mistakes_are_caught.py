"""The round-trip and fidelity tests catch a mistake in the client's geometry.

Each row puts one deliberate mistake into the client (``--client-mistake``,
see ``client_mistakes.py``) and runs, in a fresh pytest against the local
emulator, the tests that should catch it: every one of them must fail. The
same tests run without the mistake must pass, so the failures are the
mistake's. They fail only because the emulator shares no code with the
client: had it turned images or converted boxes with the client's code, the
mistake would be on both sides and cancel out.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_TIMEOUT = 300
"""Seconds one pytest run may take (each takes under a minute)."""

DETECT_ROUND_TRIP = "tests/test_annotate_detect.py::test_oracle_round_trip_recovers_every_box_within_quantization"
FIDELITY = "tests/test_fidelity.py"

CATCHERS = [
    # (mistake, the tests that must catch it)
    ("box-off-by-one", [f"{DETECT_ROUND_TRIP}[generate_content]",
                        f"{FIDELITY}::test_every_form_recovers_the_known_labels[coco-boxes]",
                        f"{FIDELITY}::test_every_form_recovers_the_known_labels[synthetic-boxes]"]),
    ("exif-6-8", [f"{FIDELITY}::test_exif_rotated_copies_give_the_same_numbers[6]",
                  f"{FIDELITY}::test_exif_rotated_copies_give_the_same_numbers[8]"]),
]


def run_pytest(tests: list[str], mistake: str | None = None) -> subprocess.CompletedProcess:
    """Runs tests in a fresh pytest, with a client mistake put in when one is named."""
    option = [f"--client-mistake={mistake}"] if mistake else []
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *option, *tests],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )


def failed_tests(run: subprocess.CompletedProcess) -> set[str]:
    """The node ids pytest's short summary (``-rf``) lists as failed."""
    return set(re.findall(r"^FAILED (\S+)", run.stdout, flags=re.MULTILINE))


@pytest.mark.parametrize("mistake, tests", CATCHERS, ids=[row[0] for row in CATCHERS])
def test_every_catching_test_fails_with_the_mistake(mistake, tests):
    run = run_pytest(tests, mistake)

    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout[-3000:] + run.stderr[-2000:]
    assert failed_tests(run) == set(tests), run.stdout[-3000:]


@pytest.mark.parametrize("mistake, tests", CATCHERS, ids=[row[0] for row in CATCHERS])
def test_the_same_tests_pass_without_the_mistake(mistake, tests):
    run = run_pytest(tests)

    assert run.returncode == pytest.ExitCode.OK, run.stdout[-3000:] + run.stderr[-2000:]
