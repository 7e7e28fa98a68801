"""What differs between Gemini model generations, as data.

The rest of the code asks :func:`model_profile` instead of testing model names,
so a new generation is one row here, not branches scattered through the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

MaskForm = Literal["polygon", "png"]


@dataclass(frozen=True)
class ModelProfile:
    """How to talk to one family of Gemini models.

    Attributes:
        family: a short name for the family.
        supports_thinking_level: accepts ``thinking_level`` (Gemini 3). Older
            thinking models take ``thinking_budget`` instead, and newer ones
            reject ``thinking_budget: 0`` with HTTP 400.
        thinking_budget_off: the ``thinking_budget`` that turns thinking off on
            models without ``thinking_level``, or ``None`` to leave it unset.
        mask_form: the segmentation form the family produces best: polygons
            over the whole image (Gemini 3) or PNG probability maps inside the
            box (Gemini 2.5).
    """

    family: str
    supports_thinking_level: bool
    thinking_budget_off: Optional[int]
    mask_form: MaskForm


_PROFILES: tuple[tuple[str, ModelProfile], ...] = (
    ("gemini-3", ModelProfile("gemini-3", True, None, "polygon")),
    ("gemini-2.5-pro", ModelProfile("gemini-2.5-pro", False, None, "png")),
    ("gemini-2.5", ModelProfile("gemini-2.5", False, 0, "png")),
    ("gemini-2.0", ModelProfile("gemini-2.0", False, None, "png")),
)

_LATEST = ModelProfile("latest", True, None, "polygon")


def model_profile(model: str) -> ModelProfile:
    """The profile of a model name (``models/`` prefix and version suffixes allowed).

    Unknown names are assumed to behave like the newest generation.

    >>> model_profile("gemini-2.5-flash").mask_form
    'png'
    """
    name = model.rsplit("/", 1)[-1].lower()
    for prefix, profile in _PROFILES:
        if name.startswith(prefix):
            return profile
    return _LATEST
