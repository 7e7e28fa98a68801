"""The runs on a dataset: list them, inspect one, delete one (and, if asked, what it wrote)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Optional

import fiftyone as fo

from .review.status import ReviewCounts, ReviewError, review_counts
from .run_records import RunSummary, forget_run, list_annotation_runs, load_run_summary
from .vocabulary import written_fields


@dataclass
class RunInfo:
    """What a run asked for and what it did, for listing and inspecting."""

    run_key: str
    label_field: str
    task: str
    model: str
    classes: Optional[list[str]]
    prompt: Optional[str]
    started: Any
    config: dict
    summary: Optional[RunSummary]
    review: Optional[ReviewCounts]

    def describe(self) -> str:
        lines = [
            f"run {self.run_key!r}: task {self.task}, model {self.model}, field {self.label_field!r}, "
            f"started {format_started(self.started)}",
            f"classes: {', '.join(self.classes) if self.classes else '(any)'}",
            f"prompt: {self.prompt or '(the task default)'}",
        ]
        if self.summary is not None:
            lines.append(self.summary.describe())
        if self.review is not None:
            lines.append(self.review.describe())
        return "\n".join(lines)


def format_started(started: Any) -> str:
    """A run's start as people read it: ``2026-11-30 15:33 UTC`` (FiftyOne stores naive UTC)."""
    if isinstance(started, datetime.datetime):
        return started.strftime("%Y-%m-%d %H:%M UTC")
    return str(started) if started is not None else "(unknown)"


def run_info(samples: fo.core.collections.SampleCollection, run_key: str) -> RunInfo:
    """The configuration, summary and review progress of one run.

    Raises:
        ReviewError: there is no gemini-annotate run with this key.
    """
    if run_key not in list_annotation_runs(samples):
        known = ", ".join(list_annotation_runs(samples)) or "none"
        raise ReviewError(f"no gemini-annotate run {run_key!r} on {samples._dataset.name!r} (runs: {known})")
    info = samples.get_run_info(run_key)
    config = {k: v for k, v in info.config.serialize().items() if not k.startswith("_")}
    label_field = config["label_field"]
    # the samples the run labeled, not the whole collection
    review = (review_counts(samples.exists(label_field), label_field)
              if samples._dataset.has_field(label_field) else None)
    return RunInfo(
        run_key=run_key, label_field=label_field, task=config.get("task"), model=config.get("model"),
        classes=config.get("classes"), prompt=config.get("prompt"), started=info.timestamp,
        config=config, summary=load_run_summary(samples, run_key), review=review,
    )


def list_runs(samples: fo.core.collections.SampleCollection) -> list[RunInfo]:
    """Every gemini-annotate run on a collection's dataset."""
    return [run_info(samples, key) for key in list_annotation_runs(samples)]


def delete_run(samples: fo.core.collections.SampleCollection, run_key: str, *, delete_labels: bool = False) -> list[str]:
    """Deletes a run's record and, if asked, the fields it wrote.

    With ``delete_labels``, the label field and its ``_polylines``, ``_status``,
    ``_reason``, ``_reviewed`` and ``_proposed`` fields go too, unless another
    run still writes into the same field.

    Returns:
        the fields deleted.
    """
    info = run_info(samples, run_key)
    dataset = samples._dataset
    dataset.delete_run(run_key)
    forget_run(dataset, run_key)
    if not delete_labels:
        return []
    still_used = {dataset.get_run_info(k).config.label_field for k in list_annotation_runs(dataset)}
    if info.label_field in still_used:
        return []
    names = written_fields(info.label_field)
    deleted = [name for name in names if dataset.has_field(name)]
    for name in deleted:
        dataset.delete_sample_field(name)
    return deleted

