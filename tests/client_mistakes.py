"""Deliberate mistakes in the client's geometry, to prove the tests catch them.

``pytest --client-mistake=NAME`` (see ``conftest.py``) puts one into the
package before any test runs; ``test_client_mistakes_are_caught.py`` runs the
round-trip and fidelity tests that way and expects them to fail. The emulator
shares no code with the client, so it keeps answering right while the client
reads its answers wrong.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any


def replace_everywhere(module_name: str, name: str, replacement: Any) -> int:
    """Replaces ``module_name.name`` in that module and in every loaded ``gemini_annotate`` module holding it.

    Modules import names directly (``from .boxes import box_2d_to_relative``),
    so patching the defining module alone would leave their copies right;
    modules imported later take the replacement from the defining module.

    Returns:
        how many modules now hold the replacement.
    """
    original = getattr(importlib.import_module(module_name), name)
    holders = [module for loaded, module in list(sys.modules.items())
               if loaded.split(".")[0] == "gemini_annotate" and getattr(module, name, None) is original]
    for module in holders:
        setattr(module, name, replacement)
    return len(holders)


def shift_box_xmin_by_one() -> None:
    """``box_2d_to_relative`` reads every ``xmin`` one 0–1000 unit too far right (an off-by-one)."""
    from gemini_annotate.boxes import box_2d_to_relative

    def off_by_one(box: Sequence[float]) -> list[float]:
        ymin, xmin, ymax, xmax = box
        return box_2d_to_relative([ymin, xmin + 1, ymax, xmax])

    replace_everywhere("gemini_annotate.boxes", "box_2d_to_relative", off_by_one)


def swap_exif_6_and_8() -> None:
    """The client's EXIF table turns orientations 6 and 8 the wrong way (each gets the other's turn)."""
    from gemini_annotate.media import EXIF_TRANSPOSE

    # in place: every holder of the table sees the mistake
    EXIF_TRANSPOSE[6], EXIF_TRANSPOSE[8] = EXIF_TRANSPOSE[8], EXIF_TRANSPOSE[6]


MISTAKES: dict[str, Callable[[], None]] = {
    "box-off-by-one": shift_box_xmin_by_one,
    "exif-6-8": swap_exif_6_and_8,
}
"""Each mistake ``--client-mistake`` can put into the client, by name."""
