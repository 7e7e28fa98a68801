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
        image_tokens_by_resolution: the most tokens one image costs at each
            ``media_resolution`` level (``low``, ``medium``, ``high``).
    """

    family: str
    supports_thinking_level: bool
    thinking_budget_off: Optional[int]
    mask_form: MaskForm
    image_tokens_by_resolution: tuple[tuple[str, int], ...] = ()

    def media_resolution_tokens(self, level: str) -> int:
        """The per-image token budget at a ``media_resolution`` level.

        Raises:
            ValueError: the level is not ``low``, ``medium`` or ``high``.
        """
        budgets = dict(self.image_tokens_by_resolution)
        if level not in budgets:
            raise ValueError(f"unknown media_resolution {level!r}; choose one of {', '.join(budgets)}")
        return budgets[level]


# Per-image token budgets of media_resolution, from Google's "Media resolution"
# guide (token counts section) as read in 2025: indicative, re-check when a new
# generation ships. Gemini 2.x spends the same budget at medium and high.
_GEMINI_3_MEDIA_TOKENS = (("low", 280), ("medium", 560), ("high", 1120))
_GEMINI_2_MEDIA_TOKENS = (("low", 64), ("medium", 256), ("high", 256))

_PROFILES: tuple[tuple[str, ModelProfile], ...] = (
    ("gemini-3", ModelProfile("gemini-3", True, None, "polygon", _GEMINI_3_MEDIA_TOKENS)),
    ("gemini-2.5-pro", ModelProfile("gemini-2.5-pro", False, None, "png", _GEMINI_2_MEDIA_TOKENS)),
    ("gemini-2.5", ModelProfile("gemini-2.5", False, 0, "png", _GEMINI_2_MEDIA_TOKENS)),
    ("gemini-2.0", ModelProfile("gemini-2.0", False, None, "png", _GEMINI_2_MEDIA_TOKENS)),
)

_LATEST = ModelProfile("latest", True, None, "polygon", _GEMINI_3_MEDIA_TOKENS)


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


KNOWN_MODEL_PREFIXES = ("gemini-3", "gemini-2.5", "gemini-2.0", "gemini-flash-latest", "gemini-flash-lite-latest",
                        "gemini-pro-latest")
"""Names of the Gemini families this tool has profiles for (and the ``-latest`` aliases)."""


def model_name_warning(model: str) -> Optional[str]:
    """A warning for a model name no profile knows (a typo, or a generation newer than this
    tool), or ``None`` for a known one. Not an error: Gemini itself says whether it serves it.

    >>> model_name_warning("gemini-2.5-flash") is None
    True
    """
    name = model.rsplit("/", 1)[-1].lower().strip()
    if name.startswith(KNOWN_MODEL_PREFIXES):
        return None
    return (f"{model!r} is not a Gemini model this tool knows (gemini-3-…, gemini-2.5-…, gemini-2.0-…): "
            "check the spelling. It will be treated like the newest generation, and if Gemini does not "
            "serve it the run stops at its first request.")
