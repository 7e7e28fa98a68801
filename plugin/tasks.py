"""Tasks: for each, the prompt, the response schema, and how a reply becomes a label.

A task is data plus two pure functions; adding one is adding an entry to
:data:`TASKS`. Schemas are built with pydantic, as in Google's guide, and sent
as structured output so the reply has a known shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import fiftyone as fo
from pydantic import Field, create_model

from .config import AnnotateConfig
from .convert import ConversionReport, LabelPolicy, Provenance, items_to_detections
from .gemini import GeminiReply
from .media import PreparedImage
from .parse import ParseStatus, parse_items

BOX_2D_DESCRIPTION = "The 2D bounding box of the item as [ymin, xmin, ymax, xmax] normalized to 0-1000."
LABEL_DESCRIPTION = "A descriptive label for the item."
CLASS_LABEL_DESCRIPTION = "The class of the item: exactly one of the allowed class names."

DETECT_PROMPT = (
    "Detect all of the prominent items in the image. "
    "The box_2d should be [ymin, xmin, ymax, xmax] normalized to 0-1000."
)
DETECT_CLASSES_PROMPT = (
    "Detect every instance of the following classes in the image: {classes}. "
    "Label each item with exactly one of these class names. "
    "The box_2d should be [ymin, xmin, ymax, xmax] normalized to 0-1000."
)


@dataclass(frozen=True)
class ReplyContext:
    """What a task needs besides the reply to build labels."""

    config: AnnotateConfig
    image: PreparedImage
    provenance: Provenance


@dataclass(frozen=True)
class TaskOutcome:
    """A sample's result: the value for its label field and how it was read.

    Attributes:
        label: the value to store (``fo.Detections``, a string, ...), or ``None``
            when the reply could not be read.
        status: ``ok``, ``partial`` (something was lost or repaired away) or
            ``unreadable``.
        warnings: what was repaired, dropped or could not be read.
        label_count: labels in ``label``.
    """

    label: Any
    status: ParseStatus
    warnings: tuple[str, ...]
    label_count: int


@dataclass(frozen=True)
class TaskSpec:
    """One task.

    Attributes:
        name: the task's name in the API, CLI and App.
        description: one line for forms and help.
        label_type: the FiftyOne type written to the label field.
        build_prompt: the prompt for a configuration.
        build_schema: the structured-output JSON schema for a configuration.
        thinking_level: Gemini's thinking level for the task (``minimal`` for
            spatial tasks, as Google's guide advises), or ``None``.
        interpret: reply + context → :class:`TaskOutcome`.
        spatial: whether labels carry geometry (and so need image geometry).
    """

    name: str
    description: str
    label_type: type
    build_prompt: Callable[[AnnotateConfig], str]
    build_schema: Callable[[AnnotateConfig], Optional[dict]]
    thinking_level: Optional[str]
    interpret: Callable[[GeminiReply, ReplyContext], TaskOutcome]
    spatial: bool = True


def _limit_sentence(config: AnnotateConfig) -> str:
    return f" Return at most {config.max_objects} items." if config.max_objects else ""


def detect_prompt(config: AnnotateConfig) -> str:
    """The detection prompt: Google's guide's wording, narrowed to ``classes`` if given."""
    if config.prompt:
        return config.prompt
    if config.classes:
        return DETECT_CLASSES_PROMPT.format(classes=", ".join(config.classes)) + _limit_sentence(config)
    return DETECT_PROMPT + _limit_sentence(config)


def label_annotation(classes: Optional[tuple[str, ...]]) -> tuple[Any, Any]:
    """The pydantic field for an item's label: free text, or one of ``classes``."""
    if classes:
        # an explicit enum: pydantic writes a one-value Literal as "const", which
        # Gemini's schema subset does not promise to honour
        return (str, Field(description=CLASS_LABEL_DESCRIPTION, json_schema_extra={"enum": list(classes)}))
    return (str, Field(description=LABEL_DESCRIPTION))


def detect_schema(config: AnnotateConfig) -> dict:
    """``{"boxes": [{"box_2d": [int]*4, "label": str}]}``, the label an enum of ``classes``."""
    box = create_model(
        "BoundingBox",
        box_2d=(list[int], Field(description=BOX_2D_DESCRIPTION)),
        label=label_annotation(config.classes),
    )
    boxes = create_model("BoundingBoxes", boxes=(list[box], ...))  # type: ignore[valid-type]
    return boxes.model_json_schema()


def outcome_from_report(label: Any, parsed_status: ParseStatus, parse_warnings: tuple[str, ...],
                        report: ConversionReport) -> TaskOutcome:
    """Combines parsing and conversion notes into a :class:`TaskOutcome`."""
    return TaskOutcome(
        label=label,
        status=parsed_status,
        warnings=parse_warnings + tuple(report.warnings()),
        label_count=report.kept,
    )


def interpret_detections(reply: GeminiReply, context: ReplyContext) -> TaskOutcome:
    """Reply text → ``fo.Detections`` (tolerant parsing, per-item validation)."""
    parsed = parse_items(reply.text, truncated=reply.truncated)
    if parsed.status == "unreadable":
        return TaskOutcome(None, "unreadable", parsed.warnings, 0)
    policy = LabelPolicy.for_classes(context.config.classes, context.config.unknown_labels)
    detections, report = items_to_detections(parsed.items, policy=policy, provenance=context.provenance)
    return outcome_from_report(detections, parsed.status, parsed.warnings, report)


TASKS: dict[str, TaskSpec] = {
    "detect": TaskSpec(
        name="detect",
        description="Object detection: boxes with labels → fo.Detections",
        label_type=fo.Detections,
        build_prompt=detect_prompt,
        build_schema=detect_schema,
        thinking_level="minimal",
        interpret=interpret_detections,
    ),
}


def get_task(name: str) -> TaskSpec:
    """The task called ``name``."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None
