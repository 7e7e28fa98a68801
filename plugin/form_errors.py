"""Pydantic validation errors as the plain sentences a form shows.

A form must say what to change, in the words of its own labels, not pydantic's
report (``1 validation error for AnnotateConfig ... [type=value_error, ...]``)::

    >>> from pydantic import BaseModel, Field, ValidationError
    >>> class Options(BaseModel):
    ...     consensus: int = Field(1, ge=1)
    >>> try:
    ...     Options(consensus=0)
    ... except ValidationError as e:
    ...     print(plain_validation_error(e, {"consensus": "Answers per image"}))
    Answers per image: input should be greater than or equal to 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

from pydantic import ValidationError

_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


@dataclass(frozen=True)
class FormProblem:
    """One thing wrong with a form.

    Attributes:
        field: the parameter at fault, or ``None`` when the problem is the
            combination of several.
        sentence: what to change, as one plain sentence.
    """

    field: Optional[str]
    sentence: str


def _sentence(text: str) -> str:
    text = text.strip()
    for prefix in _PYDANTIC_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = text[:1].upper() + text[1:] if text else text
    return text if text.endswith((".", "!", "?")) else text + "."


def form_problems(error: ValidationError, labels: Mapping[str, str]) -> list[FormProblem]:
    """Each error of ``error`` as a :class:`FormProblem`, named by the form's label of its field.

    Args:
        error: what pydantic raised.
        labels: parameter name to the label the form shows for it.
    """
    problems = []
    for item in error.errors(include_url=False):
        field = str(item["loc"][0]) if item.get("loc") else None
        text = _sentence(item["msg"])
        if field is not None:
            text = f"{labels.get(field, field)}: {text[:1].lower() + text[1:]}"
        problems.append(FormProblem(field, text))
    return problems


def plain_validation_error(error: ValidationError, labels: Mapping[str, str]) -> str:
    """All of ``error``'s problems as one plain sentence (several joined by spaces)."""
    return " ".join(problem.sentence for problem in form_problems(error, labels))
