"""Prompt templates that name sample fields. Pure: text and values in, text out.

A prompt (or a VQA question) may hold ``{field}`` placeholders, filled per sample
with that sample's value::

    "Describe this photo taken in {location}. Its photographer tagged it {tags}."

A placeholder is a field name or an embedded path (``{ground_truth.label}``);
``{{`` and ``}}`` write literal braces. JSON in a prompt (``{"caption": ...}``)
is left alone: only bare names are placeholders.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

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
