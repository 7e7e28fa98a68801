"""Tolerant JSON extraction from Gemini's reply text. Pure: text in, items out.

Real replies wrap their JSON in fences, put prose around it, wrap the list in an
object (``{"boxes": [...]}``), leave trailing commas, split items over several
fenced blocks, or stop mid-item when output tokens run out. The JSON is looked
for in layers, and the layer that worked is recorded:

1. ``whole``: the whole text (also a JSON string holding JSON, trailing commas,
   Python-style single quotes);
2. ``fenced``: fenced blocks (```` ```json ````, bare, upper case, indented,
   longer fences, ``~~~``); the item lists of several blocks are joined;
3. ``embedded``: the JSON values found between prose, string-aware;
4. ``salvaged``: the complete items of a list the text cuts off.

An unreadable reply is reported as such (``status="unreadable"``), never as an
image with no objects.

Replies holding one answer (a caption, a class) are read by
:func:`parse_answer`, which also takes plain text and a string cut short.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Optional

from .items import ITEM_KEYS

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
_TRUNCATED_STRING = re.compile(r'^\s*\{\s*"(?P<key>\w+)"\s*:\s*"(?P<text>(?:[^"\\]|\\.)*)\\?$', re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[\]}])")
_PYTHON_LITERAL_LIMIT = 1_000_000
"""Longest text tried as a Python literal (``[{'label': 'cat'}]``)."""


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

    value = _loads_lenient(stripped)
    if value is not _FAILED:
        return JsonExtraction(value, "whole")

    blocks = [_loads_lenient(m.group("body").strip()) for m in _FENCE.finditer(stripped)]
    blocks = [v for v in blocks if v is not _FAILED]
    if blocks:
        return JsonExtraction(_join_blocks(blocks), "fenced")

    complete, cut_at = _bracketed_values(stripped, prose=True)
    holders = [v for v in complete if _is_item_list(v) or _wraps_items(v)]
    if holders:
        return JsonExtraction(holders[0], "embedded")
    items = [v for v in complete if _is_item(v)]
    if cut_at is not None:
        salvaged = _salvage_items(stripped[cut_at:])
        if salvaged is not None:
            return JsonExtraction(items + salvaged, "salvaged", truncated=True)
    if items:
        return JsonExtraction(items, "embedded")
    return JsonExtraction(None, "none")


def parse_items(text: str, *, truncated: bool = False) -> ParsedReply:
    """Reads the list of item objects a spatial reply holds.

    Args:
        text: the reply text.
        truncated: the API reported the reply as cut short (``MAX_TOKENS``).

    Returns:
        a :class:`ParsedReply`. An empty list (``[]``, ``{"boxes": []}``) is a
        valid answer with no objects; text with no readable JSON (an empty
        text included) is ``unreadable``.

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
    if found and not items:
        return ParsedReply([], "unreadable", extraction.method,
                           (f"the reply's list holds no objects: {_preview(text)}",))
    if len(items) != len(found):
        warnings.append(f"dropped {len(found) - len(items)} list entries that are not objects")

    if extraction.truncated and not items:
        return ParsedReply([], "unreadable", extraction.method,
                           ("the reply was truncated before its first complete item",))
    status: ParseStatus = "ok"
    if extraction.truncated:
        status = "partial"
        warnings.append(
            f"the reply was truncated; kept the {len(items)} complete items before the cut"
        )
    return ParsedReply(items, status, extraction.method, tuple(warnings))


@dataclass(frozen=True)
class ParsedAnswer:
    """The value a one-answer reply holds, and how it was read.

    Attributes:
        value: the answer (a string, a list of strings, ...), or ``None`` when
            the reply is unreadable.
        status: ``ok``; ``partial`` (read, but not as asked: plain text, another
            key, cut short); ``unreadable``.
        warnings: what was not as asked.
    """

    value: Any
    status: ParseStatus
    warnings: tuple[str, ...]


def parse_answer(text: str, key: str, *, truncated: bool = False) -> ParsedAnswer:
    """Reads the value under ``key`` of a reply's JSON object, tolerating bare values and plain text.

    Args:
        text: the reply text.
        key: the property the schema asked for (``caption``, ``label``...).
        truncated: the API reported the reply as cut short (``MAX_TOKENS``).

    >>> parse_answer('```json\\n{"caption": "A dog."}\\n```', "caption").value
    'A dog.'
    """
    text = text.strip()
    warnings: list[str] = []
    if truncated:
        warnings.append("the reply was cut off by the output token limit")
    if not text:
        return ParsedAnswer(None, "unreadable", ("the reply was empty",))
    value = extract_json(text).value
    if isinstance(value, dict):
        if key in value:
            value = value[key]
        else:
            candidates = [v for v in value.values() if isinstance(v, (str, list))]
            if len(candidates) != 1:
                return ParsedAnswer(None, "unreadable", (f"the reply's JSON has no {key!r}: {_preview(text)}",))
            warnings.append(f"the answer was not under {key!r}")
            value = candidates[0]
    elif value is None and (cut := _truncated_string(text)) is not None and cut[0] == key:
        # a long answer cut mid-string: keep what was written
        value = cut[1]
    elif value is None:
        warnings.append("the reply was plain text, not JSON")
        value = text
    status: ParseStatus = "partial" if warnings else "ok"
    return ParsedAnswer(value, status, tuple(warnings))


def find_item_list(value: Any) -> Optional[list]:
    """The list of items inside a decoded reply: the value itself or a wrapper's list.

    Accepts a bare list, an object wrapping one under a usual key
    (``boxes``, ``detections``, ...) or its only list-valued key, an object
    wrapping such a wrapper (``{"result": {"boxes": [...]}}``), and a single
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
    if _is_item(value):
        return [value]
    if not value:
        return []
    inner = [v for v in value.values() if isinstance(v, dict)]
    if len(inner) == 1 and not lists:
        return find_item_list(inner[0])
    return None


_FAILED = object()


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _FAILED


def _loads_lenient(text: str) -> Any:
    """``json.loads``, also past trailing commas, Python literals and JSON inside a JSON string."""
    value = _loads(text)
    if value is _FAILED and _TRAILING_COMMA.search(text):
        value = _loads(_TRAILING_COMMA.sub(r"\1", text))
    if value is _FAILED and "'" in text and len(text) <= _PYTHON_LITERAL_LIMIT:
        value = _python_literal(text)
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        inner = _loads_lenient(value.strip())
        if inner is not _FAILED:
            return inner
    return value


def _python_literal(text: str) -> Any:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return _FAILED
    return value if isinstance(value, (list, dict)) else _FAILED


def _truncated_string(text: str) -> Optional[tuple[str, str]]:
    """``(key, text so far)`` of a ``{"key": "...`` object cut inside its string, fenced or not."""
    fenced = _FENCE.match(text)
    cut = _TRUNCATED_STRING.match(fenced["body"] if fenced else text)
    if cut is None:
        return None
    try:
        return cut["key"], json.loads(f'"{cut["text"]}"')
    except ValueError:
        return cut["key"], cut["text"]


def _is_item(value: Any) -> bool:
    return isinstance(value, dict) and any(k in value for k in ITEM_KEYS)


def _is_item_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


def _wraps_items(value: Any) -> bool:
    return isinstance(value, dict) and not _is_item(value) and find_item_list(value) is not None


def _join_blocks(blocks: list) -> Any:
    """One value for several decoded fenced blocks: their item lists joined."""
    if len(blocks) == 1:
        return blocks[0]
    lists = [found for found in map(find_item_list, blocks) if found]
    if not lists:
        return blocks[0]
    return [item for found in lists for item in found]


def _salvage_items(text: str) -> Optional[list]:
    """The complete objects of the first list in a truncated JSON text.

    Finds the first ``[`` whose entries are objects, and decodes each entry
    that closed before the text ends.
    """
    start = next((i for i, bracket, _ in _brackets(text)
                  if bracket == "[" and text[i + 1 :].lstrip().startswith("{")), None)
    if start is None:
        return None
    return _bracketed_values(text, start + 1)[0]


def _bracketed_values(text: str, start: int = 0, *, prose: bool = False) -> tuple[list, Optional[int]]:
    """The bracketed values of ``text`` from ``start``, outermost ones only.

    In ``prose``, quotes outside brackets are not strings and a closing bracket
    with nothing open is just a character; otherwise the text is the inside of
    a JSON list, which ends at such a bracket.

    Returns:
        the values that decode, and where a value left open by the text's end
        starts (``None`` when none is).
    """
    values: list = []
    opened: Optional[int] = None
    for i, bracket, depth in _brackets(text, start, quotes_at_top=not prose):
        if depth < 0:
            if prose:
                continue
            return values, None
        if bracket in "[{" and depth == 1:
            opened = i
        elif bracket in "]}" and depth == 0 and opened is not None:
            value = _loads_lenient(text[opened : i + 1])
            if value is not _FAILED:
                values.append(value)
            opened = None
    return values, opened


def _brackets(text: str, start: int = 0, *, quotes_at_top: bool = True) -> Iterator[tuple[int, str, int]]:
    """The brackets of ``text`` outside JSON strings, with the nesting depth after each.

    A closing bracket with nothing open gives depth -1. With ``quotes_at_top``
    false, quotes outside any bracket (prose) do not start strings.
    """
    depth = 0
    in_string = escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"' and (depth or quotes_at_top):
            in_string = True
        elif ch in "[{":
            depth += 1
            yield i, ch, depth
        elif ch in "]}":
            if depth == 0:
                yield i, ch, -1
                continue
            depth -= 1
            yield i, ch, depth


def _preview(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")
