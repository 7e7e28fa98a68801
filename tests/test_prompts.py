"""Prompt templates: which fields a prompt names and how a sample's values fill it."""

from __future__ import annotations

import fiftyone as fo
import pytest

from gemini_annotate.prompts import PromptFieldError, fill_template, template_fields, value_as_text


@pytest.mark.parametrize("template, fields", [
    ("Describe the image.", ()),
    ("Taken in {city} by {author}; {city} again.", ("city", "author")),
    ("The boxes: {ground_truth.detections.label}", ("ground_truth.detections.label",)),
    ('Reply as {"caption": "..."} JSON.', ()),
    ("Literal {{braces}} stay.", ()),
    ("{ spaced } and {9lives} are not fields", ()),
])
def test_template_fields_are_the_bare_names_in_braces(template, fields):
    assert template_fields(template) == fields


@pytest.mark.parametrize("template, values, text", [
    ("Is this {kind}?", {"kind": "a cat"}, "Is this a cat?"),
    ("Tags: {tags}.", {"tags": ["beach", "sunset"]}, "Tags: beach, sunset."),
    ("Scene: {scene}.", {"scene": fo.Classification(label="indoor")}, "Scene: indoor."),
    ("Seen: {gt}.", {"gt": fo.Detections(detections=[fo.Detection(label="dog"), fo.Detection(label="cat")])},
     "Seen: dog, cat."),
    ("Year {year}, {{literal}}", {"year": 1999}, "Year 1999, {literal}"),
    ('JSON {"a": 1} and {x}', {"x": "y"}, 'JSON {"a": 1} and y'),
])
def test_fill_template_writes_values_as_text(template, values, text):
    assert fill_template(template, values) == text


@pytest.mark.parametrize("values", [{}, {"kind": None}, {"kind": ""}, {"kind": []}])
def test_a_missing_value_is_an_error_naming_the_field(values):
    with pytest.raises(PromptFieldError, match="'kind'"):
        fill_template("Is this {kind}?", values)


def test_value_as_text_reads_classifications():
    value = fo.Classifications(classifications=[fo.Classification(label="a"), fo.Classification(label="b")])
    assert value_as_text(value) == "a, b"
