"""gemini-annotate: pre-annotate FiftyOne datasets with Google Gemini, for people to review.

Python::

    import gemini_annotate
    summary = gemini_annotate.annotate(dataset, task="detect", classes=["cat", "dog"])
    dataset.apply_model(gemini_annotate.GeminiModel(task="caption"), label_field="caption")

The same pipeline runs behind the FiftyOne App operators (this package is also
a FiftyOne plugin, see ``fiftyone.yml``) and the ``gemini-annotate`` command.
Names are imported on first use, so importing the package (or its pytest
fixtures) does not load FiftyOne or the SDK.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "annotate": ".pipeline",
    "run_annotation": ".pipeline",
    "AnnotationStopped": ".pipeline",
    "RunProgress": ".pipeline",
    "AnnotateConfig": ".config",
    "DEFAULT_MODEL": ".config",
    "GeminiError": ".messages",
    "RunSummary": ".run_records",
    "list_annotation_runs": ".run_records",
    "load_run_summary": ".run_records",
    "TASKS": ".tasks",
    "GeminiModel": ".fiftyone_model",
    "estimate_run": ".estimate",
    "compare_with_estimate": ".estimate",
    "PRICES": ".costs",
    "delete_uploaded_files": ".uploads",
    "compare": ".compare",
    "CompareReport": ".compare",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


def register(plugin) -> None:
    """FiftyOne's plugin entry point: registers the App operators."""
    from .operators import register_operators  # lazy: importing the package loads neither FiftyOne nor the SDK

    register_operators(plugin)
    from .compare_operator import register_compare_operator  # lazy: as above, and only the App needs it

    register_compare_operator(plugin)
    plugin.register(importlib.import_module(".review_panel", __name__).GeminiReviewPanel)
