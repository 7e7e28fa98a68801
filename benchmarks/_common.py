"""What every benchmark script sets before FiftyOne connects: a database of its own, quiet output."""

from __future__ import annotations

import os
import uuid


def use_own_database() -> str:
    """Points FiftyOne at a fresh database (unless ``FIFTYONE_DATABASE_NAME`` names one), without the
    database version check, usage tracking or progress bars; returns the database's name.

    Call it before anything imports FiftyOne.
    """
    os.environ.setdefault("FIFTYONE_DATABASE_NAME", f"gemini_annotate_bench_{uuid.uuid4().hex[:8]}")
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")
    return os.environ["FIFTYONE_DATABASE_NAME"]
