"""The one typed configuration of an annotation run.

Every front door (App operator, Python API, CLI) builds an :class:`AnnotateConfig`
and hands it to the pipeline; nothing below it takes loose keyword arguments.
The API key is deliberately not a field: it is resolved at call time and never
stored with a run.
"""

from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_MODEL = "gemini-3-flash-preview"
DEFAULT_LABEL_FIELD = "gemini"

ApiKind = Literal["generate_content", "interactions"]
UnknownLabelPolicy = Literal["drop", "keep"]
MaskFormChoice = Literal["polygon", "png"]
IfLabeledPolicy = Literal["skip", "replace_unreviewed", "overwrite"]

_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class AnnotateConfig(BaseModel):
    """What to ask Gemini, how, and where to put the answers.

    Attributes:
        task: the task name (see :data:`gemini_annotate.tasks.TASKS`).
        classes: class names to look for; labels are matched and normalised to
            them. ``None`` lets the model name what it sees.
        prompt: a prompt replacing the task's default one.
        label_field: the sample field that receives the pre-annotations.
        model: the Gemini model name.
        api: ``"generate_content"`` (default: about 5 ms of client CPU per request,
            and the only API with batch mode and Vertex AI) or ``"interactions"``
            (the API of Google's image-understanding guide, ~30 ms per request).
        base_url: send every request to this endpoint instead of Google's
            (an emulator, a gateway). ``GOOGLE_GEMINI_BASE_URL`` does the same.
        max_image_side: images larger than this (pixels, longer side) are
            downscaled before sending; labels are relative, so nothing moves.
        concurrency: requests in flight at once.
        timeout: seconds allowed for one request.
        max_attempts: attempts per request, retries included.
        unknown_labels: what to do with a label outside ``classes``.
        if_labeled: what to do with samples whose ``label_field`` already has
            labels: ``skip`` them, ``replace_unreviewed`` labels (labels a person
            accepted or edited are kept), or ``overwrite`` everything.
        retry_failed: send only the samples whose last attempt failed.
        run_key: the key of the FiftyOne run recording this job; defaults to
            ``label_field``. Re-running a key resumes it.
        thinking_level: Gemini's thinking level; ``None`` uses the task's default.
        max_objects: ask for at most this many objects per image.
        mask_form: for ``task="segment"``, ask for ``polygon`` masks or ``png``
            probability masks; ``None`` asks for the form the model's family
            produces best (see :func:`gemini_annotate.models.model_profile`).
            Both forms are read whatever was asked for.
        mask_threshold: PNG mask probabilities (0–255) above this are inside
            the object.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str = "detect"
    classes: Optional[tuple[str, ...]] = None
    prompt: Optional[str] = None
    label_field: str = DEFAULT_LABEL_FIELD
    model: str = DEFAULT_MODEL
    api: ApiKind = "generate_content"
    base_url: Optional[str] = None
    max_image_side: int = Field(1536, ge=64)
    concurrency: int = Field(8, ge=1, le=512)
    timeout: float = Field(120.0, gt=0)
    max_attempts: int = Field(5, ge=1, le=20)
    unknown_labels: UnknownLabelPolicy = "drop"
    if_labeled: IfLabeledPolicy = "skip"
    retry_failed: bool = False
    run_key: Optional[str] = None
    thinking_level: Optional[Literal["minimal", "low", "medium", "high"]] = None
    max_objects: Optional[int] = Field(None, ge=1)
    mask_form: Optional[MaskFormChoice] = None
    mask_threshold: int = Field(127, ge=0, le=254)

    @field_validator("classes", mode="before")
    @classmethod
    def _split_classes(cls, value):
        if value is None:
            return None
        if isinstance(value, str):
            value = value.split(",")
        names = tuple(dict.fromkeys(str(v).strip() for v in value if str(v).strip()))
        return names or None

    @field_validator("prompt", mode="before")
    @classmethod
    def _blank_prompt_is_none(cls, value):
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("label_field")
    @classmethod
    def _valid_field_name(cls, value: str) -> str:
        if not _FIELD_NAME.match(value):
            raise ValueError(
                f"label_field {value!r} must start with a letter and hold only "
                "letters, digits and underscores"
            )
        return value

    @model_validator(mode="after")
    def _known_task(self):
        from .tasks import TASKS

        if self.task not in TASKS:
            raise ValueError(
                f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}"
            )
        return self

    @property
    def resolved_run_key(self) -> str:
        """The run key, derived from the label field when not given."""
        return self.run_key or self.label_field

    @property
    def status_field(self) -> str:
        """The per-sample field holding ``ok`` / ``partial`` / ``failed``."""
        return f"{self.label_field}_status"

    @property
    def reason_field(self) -> str:
        """The per-sample field saying why a sample failed, is partial, or lost items."""
        return f"{self.label_field}_reason"

    @property
    def polylines_field(self) -> str:
        """The field receiving the outlines of ``segment`` runs (``fo.Polylines``)."""
        return f"{self.label_field}_polylines"

    def to_record(self) -> dict:
        """The JSON-serialisable configuration stored on the FiftyOne run.

        It holds no secret: the key is never a field, and credentials written
        into ``base_url`` are removed.
        """
        record = self.model_dump()
        record["classes"] = list(self.classes) if self.classes else None
        record["base_url"] = _without_userinfo(self.base_url)
        return record


def _without_userinfo(url: Optional[str]) -> Optional[str]:
    if not url:
        return url
    return re.sub(r"//[^/@]*@", "//", url)
