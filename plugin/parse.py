"""Tolerant JSON extraction from Gemini's reply text. Pure: text in, items out.

Real replies wrap their JSON in fences, put prose around it, wrap the list in an
object (``{"boxes": [...]}``) or stop mid-item when output tokens run out. The
JSON is looked for in layers, and the layer that worked is recorded:

1. the whole text;
2. fenced blocks (```` ```json ````, bare, upper case, indented, longer fences);
3. the first decodable value after prose;
4. string-aware salvage of the complete items of a truncated list.

An unreadable reply is reported as such (``status="unreadable"``), never as an
image with no objects.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

ParseStatus = Literal["ok", "partial", "unreadable"]

ITEM_LIST_KEYS = (
    "boxes", "detections", "objects", "items", "masks", "segmentations",
    "points", "keypoints", "results", "annotations", "predictions", "labels",
)

_FENCE = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[A-Za-z0-9_+-]*)[ \t]*\n"
    r"(?P<body>.*?)"
    r"(?:^[ \t]*(?P=fence)[ \t]*$|\Z)",
    re.DOTALL | re.MULTILINE,
)


@dataclass(frozen=True)
class JsonExtraction:
    """A JSON value found in reply text.

    Attributes:
        value: the decoded value (``None`` when nothing could be read).
        method: the layer that found it: ``whole``, ``fenced``, ``embedded``,
            ``salvaged`` or ``none``.
        truncated: the text ended inside the value; only complete items were kept.
    """

    value: Any
    method: str
    truncated: bool = False


@dataclass(frozen=True)
class ParsedReply:
    """The items of a reply, with how they were read.

    Attributes:
        items: the item objects (dicts) found, in reply order.
        status: ``ok``; ``partial`` (some of the reply was lost, e.g. truncated);
            ``unreadable`` (no items could be read: never "no objects").
        method: the extraction layer that worked.
        warnings: human-readable notes on what was repaired or dropped.
    """

    items: list[dict]
    status: ParseStatus
    method: str
    warnings: tuple[str, ...] = field(default_factory=tuple)


def extract_json(text: str) -> JsonExtraction:
    """Finds the JSON value in a reply's text, layer by layer.

    >>> extract_json('Sure! ```json\\n[{"label": "cat"}]\\n```').value
    [{'label': 'cat'}]
    """
    stripped = text.strip().lstrip("\ufeff")
    if not stripped:
        return JsonExtraction(None, "none")

    value = _loads(stripped)
    if value is not _FAILED:
        return JsonExtraction(value, "whole")

    truncated_fence: Optional[str] = None
    for match in _FENCE.finditer(stripped):
        body = match.group("body").strip()
        if not body:
            continue
        value = _loads(body)
        if value is not _FAILED:
            return JsonExtraction(value, "fenced")
        if truncated_fence is None:
            truncated_fence = body

    embedded = _first_embedded_value(stripped)
    if embedded is not _FAILED:
        return JsonExtraction(embedded, "embedded")

    salvaged = _salvage_items(truncated_fence if truncated_fence is not None else stripped)
    if salvaged is not None:
        return JsonExtraction(salvaged, "salvaged", truncated=True)
    return JsonExtraction(None, "none")


def parse_items(text: str, *, truncated: bool = False) -> ParsedReply:
    """Reads the list of item objects a spatial reply holds.

    Args:
        text: the reply text.
        truncated: the API reported the reply as cut short (``MAX_TOKENS``).

    Returns:
        a :class:`ParsedReply`. An empty list (``[]``, ``{"boxes": []}``) is a
        valid answer with no objects; text with no readable JSON is
        ``unreadable``.

    >>> parse_items('{"boxes": [{"box_2d": [1, 2, 3, 4], "label": "a"}]}').items
    [{'box_2d': [1, 2, 3, 4], 'label': 'a'}]
    """
    warnings: list[str] = []
    extraction = extract_json(text)
    if extraction.method == "none":
        reason = "the reply was empty" if not text.strip() else "the reply holds no readable JSON"
        if truncated:
            reason += " (it was cut off by the output token limit)"
        return ParsedReply([], "unreadable", "none", (f"{reason}: {_preview(text)}",))

    found = find_item_list(extraction.value)
    if found is None:
        return ParsedReply(
            [], "unreadable", extraction.method,
            (f"the reply's JSON holds no list of objects: {_preview(text)}",),
        )

    items = [item for item in found if isinstance(item, dict)]
    if len(items) != len(found):
        warnings.append(f"dropped {len(found) - len(items)} list entries that are not objects")

    status: ParseStatus = "ok"
    if extraction.truncated:
        status = "partial"
        warnings.append(
            f"the reply was truncated; kept the {len(items)} complete items before the cut"
        )
    if extraction.truncated and not items:
        return ParsedReply([], "unreadable", extraction.method,
                           ("the reply was truncated before its first complete item",))
    return ParsedReply(items, status, extraction.method, tuple(warnings))


def find_item_list(value: Any) -> Optional[list]:
    """The list of items inside a decoded reply: the value itself or a wrapper's list.

    Accepts a bare list, an object wrapping one under a usual key
    (``boxes``, ``detections``, ...) or its only list-valued key, and a single
    item object (returned as a one-item list).
    """
    if isinstance(value, list):
        return value
    if not isinstance(value, dict):
        return None
    for key in ITEM_LIST_KEYS:
        if isinstance(value.get(key), list):
            return value[key]
    lists = [v for v in value.values() if isinstance(v, list)]
    if len(lists) == 1 and all(isinstance(v, dict) for v in lists[0]):
        return lists[0]
    if any(k in value for k in ("box_2d", "bbox_2d", "point", "mask", "label")):
        return [value]
    if not value:
        return []
    return None


_FAILED = object()


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _FAILED


def _first_embedded_value(text: str) -> Any:
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except (ValueError, RecursionError):
            continue
        if isinstance(value, (list, dict)):
            return value
    return _FAILED


def _salvage_items(text: str) -> Optional[list]:
    """The complete objects of the first list in a truncated JSON text.

    Scans string-aware (brackets inside strings do not count) for the first
    ``[`` whose entries are objects, and decodes each entry that closed before
    the text ends.
    """
    start = _first_list_of_objects(text)
    if start is None:
        return None
    items: list = []
    depth = 0
    in_string = escaped = False
    item_start: Optional[int] = None
    for i in range(start + 1, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            if depth == 0:
                item_start = i
            depth += 1
        elif ch in "]}":
            if depth == 0:  # the list itself closed: not truncated after all
                break
            depth -= 1
            if depth == 0 and item_start is not None:
                value = _loads(text[item_start : i + 1])
                if value is not _FAILED:
                    items.append(value)
                item_start = None
    return items


def _first_list_of_objects(text: str) -> Optional[int]:
    in_string = escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch == "[":
            rest = text[i + 1 :].lstrip()
            if rest.startswith("{"):
                return i
    return None


def _preview(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")
