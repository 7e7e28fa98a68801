"""Matching the labels Gemini writes to the class names a user asked for.

Gemini writes "Dogs", "traffic-light" or "dining  table" where the user listed
"dog", "traffic light" and "dining table". Labels are compared after folding
case, separators and a plural ending; close misspellings match when ``fuzzy``.
"""

from __future__ import annotations

import difflib
import re
from typing import Iterable, Optional

_SEPARATORS = re.compile(r"[\s_\-]+")
_EDGE_PUNCTUATION = re.compile(r"^[\W_]+|[\W_]+$")
_IRREGULAR_PLURALS = {
    "people": "person", "men": "man", "women": "woman", "children": "child",
    "mice": "mouse", "geese": "goose", "teeth": "tooth", "feet": "foot",
    "knives": "knife", "wives": "wife", "leaves": "leaf", "shelves": "shelf",
    "wolves": "wolf", "halves": "half", "loaves": "loaf", "calves": "calf",
}


def normalize_label(label: str) -> str:
    """Folds case, separators and surrounding punctuation.

    >>> normalize_label("  Traffic_Light. ")
    'traffic light'
    """
    text = _SEPARATORS.sub(" ", str(label).casefold()).strip()
    return _EDGE_PUNCTUATION.sub("", text)


def singular(phrase: str) -> str:
    """The phrase with its last word made singular by common English rules.

    >>> singular("wine glasses"), singular("buses"), singular("knives"), singular("grass")
    ('wine glass', 'bus', 'knife', 'grass')
    """
    head, _, last = phrase.rpartition(" ")
    if last in _IRREGULAR_PLURALS:
        last = _IRREGULAR_PLURALS[last]
    elif len(last) > 3 and last.endswith("ies"):
        last = last[:-3] + "y"
    elif last.endswith(("sses", "shes", "ches", "xes", "zes")) or (
        last.endswith("uses") and len(last) > 4
    ):
        last = last[:-2]
    elif last.endswith("s") and not last.endswith(("ss", "us", "is")) and len(last) > 2:
        last = last[:-1]
    return f"{head} {last}" if head else last


class ClassMatcher:
    """Maps free-form labels onto a fixed list of class names.

    Args:
        classes: the canonical class names.
        fuzzy: also accept close misspellings (similarity ≥ ``cutoff``).
        cutoff: the similarity ratio a fuzzy match needs.

    >>> ClassMatcher(["dog", "traffic light"]).match("Traffic-Lights")
    'traffic light'
    """

    def __init__(self, classes: Iterable[str], *, fuzzy: bool = True, cutoff: float = 0.88):
        self.classes = tuple(classes)
        self._fuzzy = fuzzy
        self._cutoff = cutoff
        self._lookup: dict[str, str] = {}
        for name in self.classes:
            key = normalize_label(name)
            self._lookup.setdefault(key, name)
            self._lookup.setdefault(singular(key), name)

    def match(self, label: str) -> Optional[str]:
        """The class a label names, or ``None`` when it names none of them."""
        key = normalize_label(label)
        if not key:
            return None
        found = self._lookup.get(key) or self._lookup.get(singular(key))
        if found or not self._fuzzy:
            return found
        close = difflib.get_close_matches(singular(key), list(self._lookup), n=1, cutoff=self._cutoff)
        return self._lookup[close[0]] if close else None
