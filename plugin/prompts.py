"""All prompt text: each task's prompt, the sentences a run adds, and ``{field}`` templates.

The prompt of a request is assembled here and nowhere else
(:func:`request_prompt`): the task's own prompt (Google's wording from its
image-understanding guide, narrowed to the run's classes) or the user's, the
request for confidences when asked, what each class means
(``class_descriptions``), reviewers' notes (``hints``), and what the prompt
says about reference images. A prompt (or a VQA question) may hold ``{field}`` placeholders, filled
per sample with that sample's value::

    "Describe this photo taken in {location}. Its photographer tagged it {tags}."

A placeholder is a field name or an embedded path (``{ground_truth.label}``);
``{{`` and ``}}`` write literal braces. JSON in a prompt (``{"caption": ...}``)
is left alone: only bare names are placeholders. Pure: text and values in,
text out.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from .config import AnnotateConfig

DETECT_PROMPT = (
    "Detect all of the prominent items in the image. "
    "The box_2d should be [ymin, xmin, ymax, xmax] normalized to 0-1000."
)


DETECT_CLASSES_PROMPT = (
    "Detect every instance of the following classes in the image: {classes}. "
    "Label each item with exactly one of these class names. "
    "The box_2d should be [ymin, xmin, ymax, xmax] normalized to 0-1000."
)


# Google's segmentation prompt (the same for both mask forms; the polygon form
# adds the schema of the seed's guide, the PNG form follows Google's Gemini 2.5
# recipe, which asks for no schema)
SEGMENT_PROMPT = (
    "Give the segmentation masks for {subject}. "
    "Output a JSON list of segmentation masks where each entry contains the 2D "
    'bounding box in the key "box_2d", the segmentation mask in key "mask", and '
    'the text label in the key "label". {labels}'
)


# Google's pointing prompt
POINTS_PROMPT = (
    "Point to {subject}. The label returned should be {labels} "
    'The answer should follow the json format: [{{"point": <point>, "label": <label1>}}, ...]. '
    "The points are in [y, x] format normalized to 0-1000."
)


CAPTION_PROMPT = (
    "Write a caption for this image: one or two sentences describing its main subject, "
    "the setting and any notable details."
)


CLASSIFY_PROMPT = "Classify this image. Answer with exactly one of these classes: "


CLASSIFY_MULTI_PROMPT = (
    "Which of these classes apply to this image? List every class that applies, "
    "and none if none does: "
)


VQA_PROMPT = "Answer this question about the image concisely and factually.\nQuestion: "


CONFIDENCE_SENTENCE = " Give each item a confidence from 0 to 1 that it is right."


DESCRIPTIONS_LEAD = "\n\nWhat each class means (label with the class name only):"


HINTS_LEAD = "\n\nNotes from the people who reviewed earlier labels:"


def descriptions_sentence(descriptions: Mapping[str, str]) -> str:
    """The prompt's lines saying what each class means; the labels stay the names.

    >>> descriptions_sentence({"car": "a passenger car, not a van"})
    '\\n\\nWhat each class means (label with the class name only):\\n- car: a passenger car, not a van'
    """
    return DESCRIPTIONS_LEAD + "".join(f"\n- {_literal(name)}: {_literal(text)}" for name, text in descriptions.items())


def hints_sentence(hints: tuple[str, ...]) -> str:
    """The prompt's lines carrying reviewers' notes (negative hints, ...)."""
    return HINTS_LEAD + "".join(f"\n- {_literal(hint)}" for hint in hints)


def _literal(text: str) -> str:
    # the prompt is a {field} template: braces the user wrote here are text
    return text.replace("{", "{{").replace("}", "}}")



def _limit_sentence(config: AnnotateConfig) -> str:
    return f" Return at most {config.max_objects} items." if config.max_objects else ""


def detect_prompt(config: AnnotateConfig) -> str:
    """The detection prompt: Google's guide's wording, narrowed to ``classes`` if given."""
    if config.prompt:
        return config.prompt
    if config.classes:
        return DETECT_CLASSES_PROMPT.format(classes=", ".join(config.classes)) + _limit_sentence(config)
    return DETECT_PROMPT + _limit_sentence(config)


def _subject(config: AnnotateConfig) -> str:
    if config.classes:
        return f"every instance of the following classes in the image: {', '.join(config.classes)}"
    return "the prominent items in the image"


def segment_prompt(config: AnnotateConfig) -> str:
    """Google's segmentation prompt, narrowed to ``classes`` if given."""
    if config.prompt:
        return config.prompt
    labels = ("Label each item with exactly one of these class names."
              if config.classes else "Use descriptive labels.")
    return SEGMENT_PROMPT.format(subject=_subject(config), labels=labels) + _limit_sentence(config)


def points_prompt(config: AnnotateConfig) -> str:
    """Google's pointing prompt, narrowed to ``classes`` if given."""
    if config.prompt:
        return config.prompt
    limit = f"no more than {config.max_objects} items" if config.max_objects else "the items"
    if config.classes:
        subject = f"{limit} of the following classes in the image: {', '.join(config.classes)}"
        labels = "exactly one of these class names."
    else:
        subject = f"{limit} in the image" if config.max_objects else "the prominent items in the image"
        labels = "an identifying name for the object detected."
    return POINTS_PROMPT.format(subject=subject, labels=labels)


def caption_prompt(config: AnnotateConfig) -> str:
    """The captioning prompt (or the user's)."""
    return config.prompt or CAPTION_PROMPT


def classify_prompt(config: AnnotateConfig) -> str:
    """The classification prompt naming the classes (or the user's)."""
    if config.prompt:
        return config.prompt
    lead = CLASSIFY_MULTI_PROMPT if config.multi_label else CLASSIFY_PROMPT
    return lead + ", ".join(config.classes or ()) + "."


def vqa_question(config: AnnotateConfig) -> str:
    """The question asked: ``question``, or the prompt when only that is given."""
    return config.question or config.prompt or ""


def vqa_prompt(config: AnnotateConfig) -> str:
    """The question, wrapped in an instruction to answer it briefly."""
    # concatenated, not str.format: the question may hold {field} placeholders
    return VQA_PROMPT + vqa_question(config)


TASK_PROMPTS: dict[str, Callable[[AnnotateConfig], str]] = {
    "detect": detect_prompt,
    "segment": segment_prompt,
    "points": points_prompt,
    "caption": caption_prompt,
    "classify": classify_prompt,
    "vqa": vqa_prompt,
}
"""Each task's prompt for a configuration (the user's ``prompt`` when given)."""


def references_sentence(count: int) -> str:
    """What the prompt says about reference images following the sample's image."""
    return (f"\n\nThe first image is the one to answer about; the {count} image(s) after it are "
            "reference examples, not to be annotated.")


def request_prompt(config: AnnotateConfig) -> str:
    """The prompt of every request of ``config`` (placeholders still unfilled):
    the task's, the request for confidences if asked, and what it says about
    reference images if there are any."""
    prompt = TASK_PROMPTS[config.task](config)
    if config.confidence:
        prompt += CONFIDENCE_SENTENCE
    if config.class_descriptions:
        prompt += descriptions_sentence(config.class_descriptions)
    if config.hints:
        prompt += hints_sentence(config.hints)
    if config.reference_images:
        prompt += references_sentence(len(config.reference_images))
    return prompt


# templates naming sample fields

_TOKEN = re.compile(r"\{\{|\}\}|\{(?P<field>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}")


class PromptFieldError(ValueError):
    """A sample lacks a value the prompt template needs (the message names it)."""


def template_fields(template: str) -> tuple[str, ...]:
    """The sample fields a template names, in order of first use.

    >>> template_fields("A {kind} photo from {place.name}; {kind} again, {{literal}}")
    ('kind', 'place.name')
    """
    names = [m["field"] for m in _TOKEN.finditer(template) if m["field"]]
    return tuple(dict.fromkeys(names))


def fill_template(template: str, values: Mapping[str, Any]) -> str:
    """The template with each placeholder replaced by its value as text.

    Raises:
        PromptFieldError: a named field has no value (missing, ``None`` or empty).

    >>> fill_template("Is this {kind}? {{yes/no}}", {"kind": "a cat"})
    'Is this a cat? {yes/no}'
    """

    def replace(match: re.Match) -> str:
        name = match["field"]
        if name is None:
            return match.group(0)[0]
        text = value_as_text(values.get(name))
        if not text:
            raise PromptFieldError(f"the prompt needs field {name!r}, which is empty for this sample")
        return text

    return _TOKEN.sub(replace, template)


def value_as_text(value: Any) -> str:
    """A field value as prompt text: labels by their label, lists joined with commas.

    >>> value_as_text(["beach", "sunset"])
    'beach, sunset'
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    label = getattr(value, "label", None)
    if isinstance(label, str):
        return label
    for list_name in ("classifications", "detections", "polylines", "keypoints"):
        items = getattr(value, list_name, None)
        if isinstance(items, list):
            return value_as_text([getattr(item, "label", None) for item in items])
    if isinstance(value, (list, tuple)):
        return ", ".join(t for t in (value_as_text(v) for v in value) if t)
    return str(value)
