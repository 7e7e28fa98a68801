"""Tasks: for each, the response schema and how a reply's text becomes labels.

A task is data plus pure functions; adding one is adding an entry to
:data:`TASKS` (and its prompt to :mod:`gemini_annotate.prompts`). Schemas are
built with pydantic, as in Google's guide, and sent as structured output so
the reply has a known shape. Interpreters take the reply's text and whether
it was cut off, never the SDK's reply object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import fiftyone.core.labels as fol
from pydantic import Field, create_model

from .config import SPATIAL_TASKS, AnnotateConfig
from .items import ConversionReport, LabelPolicy, item_mask
from .label_factory import make_label
from .labels import (
    MaskOptions,
    adopt_confidence,
    items_to_detections,
    items_to_keypoints,
    items_to_segments,
    label_list,
    labels_in,
)
from .masks import is_mask_token_text
from .model_profiles import MaskForm, model_profile
from .parse import ParseStatus, parse_answer, parse_items
from .vocabulary import Provenance

BOX_2D_DESCRIPTION = "The 2D bounding box of the item as [ymin, xmin, ymax, xmax] normalized to 0-1000."
LABEL_DESCRIPTION = "A descriptive label for the item."
CONFIDENCE_DESCRIPTION = "How sure you are that this item is right, from 0 (a guess) to 1 (certain)."
CLASS_LABEL_DESCRIPTION = "The class of the item: exactly one of the allowed class names."


POLYGON_MASK_DESCRIPTION = (
    "The segmentation mask of the item as a polygon of [x,y] coordinates, normalized to 0-1000."
)

POINT_DESCRIPTION = "The point on the item as [y, x] normalized to 0-1000."


@dataclass(frozen=True)
class ReplyContext:
    """What a task needs besides the reply's text to build labels.

    Attributes:
        config: the run's configuration.
        frame_size: ``(width, height)`` in pixels of the image as a viewer shows
            it (masks are stored at its scale); ``(0, 0)`` when unknown.
        provenance: model and run written onto each label.
    """

    config: AnnotateConfig
    frame_size: tuple[int, int]
    provenance: Provenance


Interpreter = Callable[[str, bool, ReplyContext], "TaskOutcome"]
"""A task's reading of a reply: ``(text, truncated, context) → TaskOutcome``;
``truncated`` says the reply was cut off at the output token limit."""


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
        fields: values for other fields of the sample, by field name (the
            outlines of a ``segment`` run, in ``<label_field>_polylines``).
    """

    label: Any
    status: ParseStatus
    warnings: tuple[str, ...]
    label_count: int
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    """One task.

    Attributes:
        name: the task's name in the API, CLI and App.
        description: one line for forms and help.
        label_type: the FiftyOne type written to the label field (``str`` for
            a string field); see :meth:`output_fields` for a configuration's.
        build_schema: the structured-output JSON schema for a configuration.
        thinking_level: Gemini's thinking level for the task (``minimal`` for
            spatial tasks, as Google's guide advises), or ``None``.
        interpret: reply text + truncated flag + context → :class:`TaskOutcome`.
        multi_label_type: the type written instead when ``multi_label`` is set.
        extra_fields: the other label fields a run writes, as
            ``{AnnotateConfig property naming the field: type}``.
    """

    name: str
    description: str
    label_type: type
    build_schema: Callable[[AnnotateConfig], Optional[dict]]
    thinking_level: Optional[str]
    interpret: Interpreter
    multi_label_type: Optional[type] = None
    extra_fields: Mapping[str, type] = field(default_factory=dict)

    @property
    def spatial(self) -> bool:
        """Whether labels carry geometry (and so need the image's size)."""
        return self.name in SPATIAL_TASKS

    def output_fields(self, config: AnnotateConfig) -> dict[str, type]:
        """``{field: type}`` of the label fields a run of ``config`` writes."""
        label_type = self.multi_label_type if config.multi_label and self.multi_label_type else self.label_type
        return {config.label_field: label_type,
                **{getattr(config, name): kind for name, kind in self.extra_fields.items()}}


def label_annotation(classes: Optional[tuple[str, ...]]) -> tuple[Any, Any]:
    """The pydantic field for an item's label: free text, or one of ``classes``."""
    if classes:
        # an explicit enum: pydantic writes a one-value Literal as "const", which
        # Gemini's schema subset does not promise to honour
        return (str, Field(description=CLASS_LABEL_DESCRIPTION, json_schema_extra={"enum": list(classes)}))
    return (str, Field(description=LABEL_DESCRIPTION))


def item_list_schema(config: AnnotateConfig, list_key: str, list_name: str, item_name: str,
                     **geometry: Any) -> dict:
    """``{list_key: [{**geometry, "label": ...}]}`` as JSON schema, the label an enum of ``classes``,
    and a ``confidence`` when the configuration asks for one."""
    if config.confidence:
        geometry["confidence"] = (float, Field(ge=0, le=1, description=CONFIDENCE_DESCRIPTION))
    item = create_model(item_name, **geometry, label=label_annotation(config.classes))
    wrapper = create_model(list_name, **{list_key: (list[item], ...)})  # type: ignore[valid-type]
    return wrapper.model_json_schema()


def detect_schema(config: AnnotateConfig) -> dict:
    """``{"boxes": [{"box_2d": [int]*4, "label": str}]}``."""
    return item_list_schema(config, "boxes", "BoundingBoxes", "BoundingBox",
                            box_2d=(list[int], Field(description=BOX_2D_DESCRIPTION)))


def outcome_from_report(label: Any, parsed_status: ParseStatus, parse_warnings: tuple[str, ...],
                        report: ConversionReport,
                        fields: Optional[Mapping[str, Any]] = None) -> TaskOutcome:
    """Combines parsing and conversion notes into a :class:`TaskOutcome`."""
    return TaskOutcome(
        label=label,
        status=parsed_status,
        warnings=parse_warnings + tuple(report.warnings()),
        label_count=report.kept,
        fields=dict(fields or {}),
    )


def unreadable(*warnings: str) -> TaskOutcome:
    """The outcome of a reply no labels could be read from."""
    return TaskOutcome(None, "unreadable", tuple(warnings), 0)


def label_policy(config: AnnotateConfig) -> LabelPolicy:
    """How a configuration matches item labels to its classes."""
    return LabelPolicy.for_classes(config.classes, config.unknown_labels)


def adopt_confidences(config: AnnotateConfig, report: ConversionReport, *containers: Any) -> None:
    """When ``config`` asked for confidences, makes them the labels' ``confidence``
    (see :func:`gemini_annotate.labels.adopt_confidence`)."""
    if config.confidence:
        for container in containers:
            adopt_confidence(labels_in(container), report)


def item_interpreter(convert: Callable[..., tuple[Any, ConversionReport]]) -> Interpreter:
    """A task's ``interpret``: tolerant parsing, then ``convert(items, policy=, provenance=)``."""
    def interpret(text: str, truncated: bool, context: ReplyContext) -> TaskOutcome:
        parsed = parse_items(text, truncated=truncated)
        if parsed.status == "unreadable":
            return unreadable(*parsed.warnings)
        label, report = convert(parsed.items, policy=label_policy(context.config), provenance=context.provenance)
        adopt_confidences(context.config, report, label)
        return outcome_from_report(label, parsed.status, parsed.warnings, report)

    return interpret


interpret_detections = item_interpreter(items_to_detections)
"""Reply text → ``fo.Detections`` (tolerant parsing, per-item validation)."""


# segmentation


def resolve_mask_form(config: AnnotateConfig) -> MaskForm:
    """The mask form to ask for: the configured one, else the model family's."""
    return config.mask_form or model_profile(config.model).mask_form


def segment_schema(config: AnnotateConfig) -> Optional[dict]:
    """The seed's polygon schema for the polygon form; no schema for PNG masks.

    Google's PNG recipe sends no schema, leaving the mask to the model's own
    segmentation output.
    """
    if resolve_mask_form(config) == "png":
        return None
    return item_list_schema(config, "boxes", "BoundingBoxes", "BoundingBox",
                            box_2d=(list[int], Field(description=BOX_2D_DESCRIPTION)),
                            mask=(list[list[int]], Field(description=POLYGON_MASK_DESCRIPTION)))


MASK_TOKENS_REASON = (
    "the masks came as <seg_N> tokens instead of PNG images or polygons; "
    "ask for polygons (mask_form='polygon') or use a model that returns PNG masks"
)


def interpret_segments(text: str, truncated: bool, context: ReplyContext) -> TaskOutcome:
    """Reply text → ``fo.Detections`` with instance masks, and their outlines as ``fo.Polylines``.

    Masks are read in whichever form they came (PNG or polygon). A reply whose
    masks are raw ``<seg_N>`` tokens is unreadable: it holds no mask at all.
    """
    parsed = parse_items(text, truncated=truncated)
    if parsed.status == "unreadable":
        if is_mask_token_text(text):
            return unreadable(MASK_TOKENS_REASON)
        return unreadable(*parsed.warnings)
    if any(is_mask_token_text(item_mask(item)) for item in parsed.items):
        return unreadable(MASK_TOKENS_REASON)
    config = context.config
    masks = MaskOptions(frame_size=context.frame_size, threshold=config.mask_threshold)
    detections, polylines, report = items_to_segments(
        parsed.items, policy=label_policy(config), provenance=context.provenance, masks=masks)
    adopt_confidences(config, report, detections)
    adopt_confidences(config, ConversionReport(), polylines)  # their outlines: counted once, above
    return outcome_from_report(detections, parsed.status, parsed.warnings, report,
                               fields={config.polylines_field: polylines})


# points


def points_schema(config: AnnotateConfig) -> dict:
    """``{"points": [{"point": [y, x], "label": str}]}``."""
    return item_list_schema(config, "points", "Points", "Point",
                            point=(list[int], Field(description=POINT_DESCRIPTION)))


interpret_points = item_interpreter(items_to_keypoints)
"""Reply text → ``fo.Keypoints``, one keypoint per item."""


# caption, classify, vqa: one answer per image, no geometry


def caption_schema(config: AnnotateConfig) -> dict:
    """``{"caption": str}``."""
    return create_model(
        "Caption", caption=(str, Field(description="The caption of the image."))
    ).model_json_schema()


def classify_schema(config: AnnotateConfig) -> dict:
    """``{"label": <one of classes>}``, or ``{"labels": [<classes>]}`` when multi-label.

    The class list is an enum in the schema, so structured output cannot name
    anything else.
    """
    if config.multi_label:
        classes_enum = {"type": "string", "enum": list(config.classes or ())}
        return create_model("Classes", labels=(list[str], Field(
            description="Every class that applies to the image.",
            json_schema_extra={"items": classes_enum},
        ))).model_json_schema()
    return create_model("Class", label=label_annotation(config.classes)).model_json_schema()


def vqa_schema(config: AnnotateConfig) -> dict:
    """``{"answer": str}``."""
    return create_model(
        "Answer", answer=(str, Field(description="The answer to the question."))
    ).model_json_schema()


def interpret_text(key: str) -> Interpreter:
    """An interpreter storing the text under ``key`` (a caption, an answer) as a string."""

    def interpret(text: str, truncated: bool, context: ReplyContext) -> TaskOutcome:
        answer = parse_answer(text, key, truncated=truncated)
        if answer.status == "unreadable":
            return unreadable(*answer.warnings)
        value = answer.value
        if isinstance(value, list):
            value = " ".join(str(v) for v in value)
        stored = str(value).strip()
        if not stored:
            return unreadable(*answer.warnings, "the answer was empty")
        return TaskOutcome(stored, answer.status, answer.warnings, 1)

    return interpret


def interpret_classification(text: str, truncated: bool, context: ReplyContext) -> TaskOutcome:
    """Reply → ``fo.Classification`` (one class) or ``fo.Classifications`` (multi-label)."""
    config = context.config
    answer = parse_answer(text, "labels" if config.multi_label else "label", truncated=truncated)
    if answer.status == "unreadable":
        return unreadable(*answer.warnings)
    raw = answer.value if isinstance(answer.value, list) else [answer.value]
    if not config.multi_label and len(raw) != 1:
        return unreadable(*answer.warnings, f"expected one class, the reply named {len(raw)}")
    policy = label_policy(config)
    report = ConversionReport()
    labels = []
    for value in raw:
        label = policy.resolve(value, report)
        if label is None:
            continue
        if label in labels:
            report.dropped["duplicate class"] += 1
            continue
        labels.append(label)
    report.kept = len(labels)
    status = answer.status if not report.dropped else "partial"
    classifications = [make_label(fol.Classification, label=label, **context.provenance.attributes())
                       for label in labels]
    if config.multi_label:
        return outcome_from_report(label_list(fol.Classifications, classifications), status,
                                   answer.warnings, report)
    return outcome_from_report(classifications[0] if classifications else None, status,
                               answer.warnings, report)


TASKS: dict[str, TaskSpec] = {
    "detect": TaskSpec(
        name="detect",
        description="Object detection: boxes with labels → fol.Detections",
        label_type=fol.Detections,
        build_schema=detect_schema,
        thinking_level="minimal",
        interpret=interpret_detections,
    ),
    "segment": TaskSpec(
        name="segment",
        description=("Instance segmentation: boxes with masks → fol.Detections, "
                     "and their outlines → fol.Polylines in <label_field>_polylines"),
        label_type=fol.Detections,
        build_schema=segment_schema,
        thinking_level="minimal",
        interpret=interpret_segments,
        extra_fields={"polylines_field": fol.Polylines},
    ),
    "points": TaskSpec(
        name="points",
        description="Pointing: one [y, x] point per object with its label → fol.Keypoints",
        label_type=fol.Keypoints,
        build_schema=points_schema,
        thinking_level="minimal",
        interpret=interpret_points,
    ),
    "caption": TaskSpec(
        name="caption",
        description="Captioning: a sentence or two per image → string field",
        label_type=str,
        build_schema=caption_schema,
        thinking_level="low",
        interpret=interpret_text("caption"),
    ),
    "classify": TaskSpec(
        name="classify",
        description="Classification into the given classes → fo.Classification "
                    "(fo.Classifications when multi-label)",
        label_type=fol.Classification,
        build_schema=classify_schema,
        thinking_level="low",
        interpret=interpret_classification,
        multi_label_type=fol.Classifications,
    ),
    "vqa": TaskSpec(
        name="vqa",
        description="Visual question answering: the answer to a question → string field",
        label_type=str,
        build_schema=vqa_schema,
        thinking_level="low",
        interpret=interpret_text("answer"),
    ),
}


def get_task(name: str) -> TaskSpec:
    """The task called ``name``."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None
