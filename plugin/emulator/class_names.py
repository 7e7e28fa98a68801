"""Whether a phrase in a question names a known class, as the emulator reads it.

Deliberately simple and separate from the client's class matching: case and
separators do not count, and a plural ``s``/``es`` (or a few common irregular
plurals) names the singular class.
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s_-]+")
_IRREGULAR_PLURALS = {"people": "person", "men": "man", "women": "woman", "children": "child",
                      "mice": "mouse", "geese": "goose", "feet": "foot", "teeth": "tooth"}


def name_forms(name: str) -> frozenset[str]:
    """The forms a class name may take: folded as written, and without a plural ending.

    >>> sorted(name_forms("Wine-Glasses"))
    ['wine glass', 'wine glasse', 'wine glasses']
    """
    folded = _SEPARATORS.sub(" ", name.casefold()).strip()
    head, _, last = folded.rpartition(" ")
    lasts = {last, _IRREGULAR_PLURALS.get(last, last)}
    if last.endswith("s"):
        lasts.add(last[:-1])
    if last.endswith("es"):
        lasts.add(last[:-2])
    return frozenset(f"{head} {word}".strip() for word in lasts if word)


def names_class(phrase: str, class_name: str) -> bool:
    """Whether a phrase (``"Dogs"``) names a class (``"dog"``).

    >>> names_class("people", "person"), names_class("dogs", "dog"), names_class("cats", "dog")
    (True, True, False)
    """
    return bool(name_forms(phrase) & name_forms(class_name))
