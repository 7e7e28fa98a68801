"""Tolerant parsing: realistic replies in, the items a careful person would read out.

Each row is one kind of reply Gemini really sends (see GEMINI_REPLIES.md): the
labels of the items that must be read, the status (``partial`` when part of
the reply was lost), and the layer that found the JSON.
"""

from __future__ import annotations

import pytest

from gemini_annotate.parse import extract_json, parse_answer, parse_items

CAT = '{"box_2d": [120, 80, 560, 410], "label": "cat"}'
DOG = '{"box_2d": [300, 450, 880, 960], "label": "dog"}'
CUP = '{"box_2d": [10, 700, 140, 790], "label": "cup"}'

REPLIES = [
    # (id, reply text, labels read, status, layer)
    ("gemini3_structured_wrapper", f'{{"boxes": [{CAT}, {DOG}]}}', ["cat", "dog"], "ok", "whole"),
    ("bare_list", f"[{CAT}, {DOG}]", ["cat", "dog"], "ok", "whole"),
    ("json_fence_with_prose",
     f"Here are the bounding boxes for the objects I found:\n\n```json\n[\n  {CAT},\n  {DOG}\n]\n```\n\n"
     "Let me know if you need anything else!", ["cat", "dog"], "ok", "fenced"),
    ("upper_case_fence", f"```JSON\n[{CAT}]\n```", ["cat"], "ok", "fenced"),
    ("bare_fence", f"```\n[{CAT}, {CUP}]\n```", ["cat", "cup"], "ok", "fenced"),
    ("indented_fence_in_a_list",
     f"1. Detections:\n    ```json\n    [{CAT}]\n    ```\n2. Done.", ["cat"], "ok", "fenced"),
    ("four_backtick_fence", f"````json\n[{DOG}]\n````", ["dog"], "ok", "fenced"),
    ("tilde_fence", f"~~~json\n[{DOG}]\n~~~", ["dog"], "ok", "fenced"),
    ("two_fenced_blocks_are_joined",
     f"Cats:\n```json\n[{CAT}]\n```\nDogs:\n```json\n[{DOG}]\n```", ["cat", "dog"], "ok", "fenced"),
    ("prose_before_unfenced_json", f"The image shows two animals: [{CAT}, {DOG}]", ["cat", "dog"], "ok", "embedded"),
    ("stray_brackets_in_prose_before_json", f"Found them :] here ] [{CAT}]", ["cat"], "ok", "embedded"),
    ("prose_after_unfenced_json", f'{{"boxes": [{CUP}]}}\nI found one cup on the table.', ["cup"], "ok", "embedded"),
    ("detections_wrapper", f'{{"detections": [{CAT}]}}', ["cat"], "ok", "whole"),
    ("masks_wrapper", f'{{"masks": [{DOG}]}}', ["dog"], "ok", "whole"),
    ("unusual_wrapper_key", f'{{"found_objects": [{CAT}, {CUP}]}}', ["cat", "cup"], "ok", "whole"),
    ("wrapper_in_a_wrapper", f'{{"result": {{"boxes": [{DOG}]}}}}', ["dog"], "ok", "whole"),
    ("single_item_object", CAT, ["cat"], "ok", "whole"),
    ("objects_on_separate_lines", f"Found:\n{CAT}\n{DOG}\n{CUP}", ["cat", "dog", "cup"], "ok", "embedded"),
    ("trailing_commas", f"[{CAT}, {DOG},]", ["cat", "dog"], "ok", "whole"),
    ("json_inside_a_json_string", '"[' + CAT.replace('"', '\\"') + ']"', ["cat"], "ok", "whole"),
    ("python_style_quotes", "[{'box_2d': [1, 2, 300, 400], 'label': 'cat'}]", ["cat"], "ok", "whole"),
    ("byte_order_mark", f"\ufeff[{CUP}]", ["cup"], "ok", "whole"),
    ("brackets_and_quotes_inside_labels",
     '[{"box_2d": [1, 2, 30, 40], "label": "sign \\"STOP [x]\\" {red}"}]', ['sign "STOP [x]" {red}'], "ok", "whole"),
    ("extra_keys_kept", '[{"box_2d": [1, 2, 30, 40], "label": "cat", "confidence": 0.9, "id": 3}]',
     ["cat"], "ok", "whole"),
    # truncation: keep every complete item, report it
    ("truncated_bare_list", f'[{CAT}, {DOG}, {{"box_2d": [10, 20, 3', ["cat", "dog"], "partial", "salvaged"),
    ("truncated_wrapper", f'{{"boxes": [{CAT}, {{"box_2d": [5, 5, 9', ["cat"], "partial", "salvaged"),
    ("truncated_inside_an_open_fence",
     f'Sure!\n```json\n[\n  {CAT},\n  {CUP},\n  {{"box_2d": [1, 2, 3, 4], "label": "do', ["cat", "cup"], "partial", "salvaged"),
    ("truncated_in_a_polygon",
     '{"boxes": [{"box_2d": [1, 2, 300, 400], "mask": [[2, 1], [400, 1], [400, 300]], "label": "cat"}, '
     '{"box_2d": [5, 5, 90, 90], "mask": [[5, 5], [90, 5], [9', ["cat"], "partial", "salvaged"),
    ("truncated_in_a_label_with_brackets",
     f'[{CAT}, {{"box_2d": [1, 2, 3, 4], "label": "cup [blue", ', ["cat"], "partial", "salvaged"),
    ("truncated_in_a_png_mask",
     f'[{CAT}, {{"box_2d": [1, 2, 30, 40], "mask": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA', ["cat"],
     "partial", "salvaged"),
    ("truncated_after_the_list_closed", f'{{"boxes": [{CAT}, {DOG}], "note": "two anim', ["cat", "dog"],
     "partial", "salvaged"),
    # empty answers are empty label sets
    ("empty_list", "[]", [], "ok", "whole"),
    ("empty_wrapper", '{"boxes": []}', [], "ok", "whole"),
    ("empty_fenced_list", "No objects found.\n```json\n[]\n```", [], "ok", "fenced"),
    ("empty_object", "{}", [], "ok", "whole"),
    # unreadable replies are never "no objects"
    ("empty_text", "", [], "unreadable", "none"),
    ("whitespace_only", "  \n ", [], "unreadable", "none"),
    ("refusal_in_prose", "I'm sorry, but I can't help with identifying people in this image.", [], "unreadable", "none"),
    ("prose_with_brackets", 'The image [1] shows "two" {cats}.', [], "unreadable", "none"),
    ("truncated_before_the_first_item", '{"boxes": [{"box_2d": [10, 2', [], "unreadable", "salvaged"),
    ("list_without_objects", "[[120, 80, 560, 410], [300, 450, 880, 960]]", [], "unreadable", "whole"),
    ("json_without_a_list", '{"answer": "two cats"}', [], "unreadable", "whole"),
    ("seg_tokens_without_json", "cat <start_of_mask><seg_12><seg_80><seg_3>", [], "unreadable", "none"),
]


@pytest.mark.parametrize("text, labels, status, method", [r[1:] for r in REPLIES], ids=[r[0] for r in REPLIES])
def test_realistic_reply_gives_the_items_a_careful_reader_would(text, labels, status, method):
    parsed = parse_items(text)

    assert [item.get("label") for item in parsed.items] == labels
    assert parsed.status == status
    assert parsed.method == method
    if status != "ok":
        assert parsed.warnings, "a lost or unreadable reply must say why"


def test_truncated_reply_keeps_complete_items_and_reports_the_cut():
    parsed = parse_items(f'[{CAT}, {DOG}, {{"box_2d": [1', truncated=True)

    assert parsed.status == "partial"
    assert "truncated; kept the 2 complete items" in parsed.warnings[0]


def test_unreadable_reply_cut_by_the_token_limit_says_so():
    parsed = parse_items("Let me think about the objects in this", truncated=True)

    assert parsed.status == "unreadable"
    assert "cut off by the output token limit" in parsed.warnings[0]


def test_non_object_entries_are_dropped_with_a_warning():
    parsed = parse_items(f"[{CAT}, 42, null, {DOG}]")

    assert [i["label"] for i in parsed.items] == ["cat", "dog"]
    assert parsed.warnings == ("dropped 2 list entries that are not objects",)


def test_extract_json_reads_the_first_list_between_prose():
    extraction = extract_json(f"Objects: [{CAT}] and also a note {{\"note\": 1}}")

    assert extraction.method == "embedded" and extraction.value[0]["label"] == "cat"


ANSWERS = [
    # (id, reply text, cut by the token limit, value read, status)
    ("structured", '{"caption": "A dog."}', False, "A dog.", "ok"),
    ("fenced", '```json\n{"caption": "A dog."}\n```', False, "A dog.", "ok"),
    ("under_another_key", '{"text": "A dog."}', False, "A dog.", "partial"),
    ("plain_text", "A dog on a beach.", False, "A dog on a beach.", "partial"),
    ("cut_inside_the_string", '{"caption": "A dog \\"Rex\\" runs', True, 'A dog "Rex" runs', "partial"),
    ("cut_inside_a_fence", '```json\n{"caption": "A dog', True, "A dog", "partial"),
    ("empty", "", False, None, "unreadable"),
    ("several_other_keys", '{"a": "x", "b": "y"}', False, None, "unreadable"),
]


@pytest.mark.parametrize("text, truncated, value, status", [a[1:] for a in ANSWERS], ids=[a[0] for a in ANSWERS])
def test_one_answer_replies_are_read_tolerantly(text, truncated, value, status):
    answer = parse_answer(text, "caption", truncated=truncated)

    assert (answer.value, answer.status) == (value, status)
    if status != "ok":
        assert answer.warnings
