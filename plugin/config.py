"""The one typed configuration of an annotation run.

Every front door (App operator, Python API, CLI) builds an :class:`AnnotateConfig`
and hands it to the pipeline; nothing below it takes loose keyword arguments.
The API key is deliberately not a field: it is resolved at call time and never
stored with a run.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .vocabulary import polylines_field, reason_field, status_field

DEFAULT_MODEL = "gemini-3-flash-preview"
DEFAULT_LABEL_FIELD = "gemini"

ApiKind = Literal["generate_content", "interactions"]
UnknownLabelPolicy = Literal["drop", "keep"]
MaskFormChoice = Literal["polygon", "png"]
IfLabeledPolicy = Literal["skip", "replace_unreviewed", "overwrite"]
ImageTransport = Literal["inline", "file_api", "uri"]
MediaResolution = Literal["low", "medium", "high"]
ThinkingLevel = Literal["minimal", "low", "medium", "high"]

TASK_NAMES = ("detect", "segment", "points", "caption", "classify", "vqa")
"""The tasks a run can do (each one's schema and reading: :data:`gemini_annotate.tasks.TASKS`)."""

SPATIAL_TASKS = ("detect", "segment", "points")
"""Tasks whose labels carry geometry, and so can carry a confidence per object."""

CONSENSUS_TASKS = (*SPATIAL_TASKS, "classify")
"""Tasks whose answers can be fused by agreement (labels, not free text)."""

MAX_IMAGES_PER_REQUEST = 3600
"""Gemini accepts at most this many images in one request."""

_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class AnnotateConfig(BaseModel):
    """What to ask Gemini, how, and where to put the answers.

    Attributes:
        task: the task name, one of :data:`TASK_NAMES`.
        classes: class names to look for; labels are matched and normalised to
            them. ``None`` lets the model name what it sees. Given as
            ``{"name": "description"}`` (a mapping, or its JSON text), the names
            are the classes and the descriptions go to ``class_descriptions``.
        class_descriptions: what each class means, ``{"name": "description"}``:
            the prompt says it; the labels stay the names.
        hints: sentences the prompt adds as reviewers' notes, e.g. negative
            hints drafted from rejected labels
            (:func:`gemini_annotate.review.hints.draft_negative_hints`).
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
        concurrency: the most requests in flight at once; fewer while Gemini
            answers 429 for overload (the pipeline backs off and recovers by
            itself). Quotas are paced, not bounded by this: see
            ``requests_per_minute``.
        timeout: seconds allowed for one request.
        max_attempts: attempts per request, retries included.
        max_requests: a budget: stop cleanly (resumably) once this many
            requests, retries included, were sent.
        max_tokens: a budget: stop cleanly (resumably) once replies report
            this many tokens (input, output and thinking).
        requests_per_minute: your tier's requests-per-minute quota for the
            model: requests are paced to it (a token bucket, 2 % below), so
            Gemini never has to answer 429. ``None`` learns the quota from
            Gemini's 429s instead (see :mod:`gemini_annotate.pacing`). A run
            split into ``num_shards`` parts (shards, workers) gives each part
            ``1/num_shards`` of it; a learned quota is per process.
        tokens_per_minute: your tier's input-tokens-per-minute quota: requests
            are paced to it by their estimated input tokens, corrected by the
            usage each reply reports. Split between shards like
            ``requests_per_minute``.
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
            produces best (see :func:`gemini_annotate.model_profiles.model_profile`).
            Both forms are read whatever was asked for.
        mask_threshold: PNG mask probabilities (0–255) above this are inside
            the object.
        question: the question of the ``vqa`` task; may name sample fields as
            ``{field}`` placeholders, filled per sample (as in ``prompt``).
        multi_label: ``classify`` returns every class that applies
            (``fo.Classifications``) instead of exactly one.
        consensus: ask Gemini this many times per image (each request with its
            own sampling seed) and fuse the answers into one set of labels whose
            ``confidence`` comes from their agreement (``votes``, ``agreement``
            and ``self_confidence`` kept as attributes; see
            :mod:`gemini_annotate.fuse`). Costs N requests per image: the
            estimate, budgets and the Batch API count them all.
        confidence: ``detect``, ``segment`` and ``points`` ask Gemini for a
            0–1 confidence per object, stored as the labels' ``confidence``.
            It is the model's own estimate, not calibrated, but it ranks the
            labels: evaluation then reports mAP and FiftyOne can draw
            precision-recall curves.
        image_transport: how images travel: ``inline`` bytes in each request
            (default); ``file_api``, uploaded once through Gemini's File API
            and reused by URI across tasks and reruns until they expire; or
            ``uri``, the address the sample's media already has (http(s) or
            ``gs://``), read from ``uri_field`` or else the filepath.
        uri_field: the sample field holding each image's URI (``uri`` transport).
        reference_images: image files sent after each sample's image in every
            request (examples of the classes, a reference view); the prompt
            says that the first image is the one to label.
        media_resolution: Gemini's per-image token budget (``low``, ``medium``,
            ``high``): fewer tokens cost less and see less detail.
        batch: send the job through the Batch API (half price, results within
            24 h) instead of one request per sample.
        batch_poll_interval: seconds between two checks of a batch job.
        batch_wait: wait for the batch to finish and ingest it; when ``False``
            the run returns once the batch is submitted, and running it again
            collects the results.
        vertexai: use Vertex AI instead of the Gemini Developer API
            (credentials from Application Default Credentials).
        project: the Google Cloud project (Vertex AI).
        location: the Vertex AI region, e.g. ``us-central1`` or ``global``.
        shard: which part of a split job this run labels, ``0 <= shard <
            num_shards``. Samples are split by id, so shards never overlap
            and every sample belongs to exactly one.
        num_shards: how many parts the job is split into (one delegated
            operation, process or machine each).
        escalate_to: cascade: after this run's model (typically cheap, with
            ``consensus``), send the samples it was unsure about to this
            (stronger) model, whose answer replaces the first for them. A
            sample escalates when its reply is partial or failed, or by
            ``escalate_below`` / ``escalate_support``; see
            :mod:`gemini_annotate.cascade`.
        escalate_below: cascade: a sample escalates when a label its fused
            answer keeps (one most answers proposed) has a ``confidence``
            below this.
        escalate_support: cascade: a sample escalates when the share of the
            objects its answers proposed that most answers agree on is below
            this (needs ``consensus`` ≥ 2).
        escalate_majority_only: cascade: the samples that are not escalated
            keep only the objects most of the first pass's answers proposed
            (fusion's minority labels removed): higher precision and F1, lower
            recall and mAP (measured in ``benchmarks/cascade.py``).
        workers: run the job (or this shard of it) in this many local
            processes, for when one process's CPU is the bound (110–180
            images/s of 1-MP JPEGs a core, measured in
            ``benchmarks/throughput.py``). Each process runs one shard of it,
            so the run's shards are ``num_shards * workers``; ``concurrency``
            and the budgets are split between them. A cascade runs each of
            its passes in the workers, and judges the first in between (see
            :mod:`gemini_annotate.workers`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str = "detect"
    classes: Optional[tuple[str, ...]] = None
    class_descriptions: Optional[dict[str, str]] = None
    hints: tuple[str, ...] = ()
    prompt: Optional[str] = None
    label_field: str = DEFAULT_LABEL_FIELD
    model: str = DEFAULT_MODEL
    api: ApiKind = "generate_content"
    base_url: Optional[str] = None
    max_image_side: int = Field(1536, ge=64)
    concurrency: int = Field(8, ge=1, le=512)
    timeout: float = Field(120.0, gt=0)
    max_attempts: int = Field(5, ge=1, le=20)
    max_requests: Optional[int] = Field(None, ge=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    requests_per_minute: Optional[int] = Field(None, ge=1)
    tokens_per_minute: Optional[int] = Field(None, ge=1)
    unknown_labels: UnknownLabelPolicy = "drop"
    if_labeled: IfLabeledPolicy = "skip"
    retry_failed: bool = False
    run_key: Optional[str] = None
    thinking_level: Optional[ThinkingLevel] = None
    max_objects: Optional[int] = Field(None, ge=1)
    mask_form: Optional[MaskFormChoice] = None
    mask_threshold: int = Field(127, ge=0, le=254)
    question: Optional[str] = None
    multi_label: bool = False
    confidence: bool = False
    consensus: int = Field(1, ge=1, le=15)
    image_transport: ImageTransport = "inline"
    uri_field: Optional[str] = None
    reference_images: tuple[str, ...] = ()
    media_resolution: Optional[MediaResolution] = None
    batch: bool = False
    batch_poll_interval: float = Field(30.0, gt=0)
    batch_wait: bool = True
    vertexai: bool = False
    project: Optional[str] = None
    location: Optional[str] = None
    shard: int = Field(0, ge=0)
    num_shards: int = Field(1, ge=1, le=4096)
    escalate_to: Optional[str] = None
    escalate_below: Optional[float] = Field(None, gt=0, le=1)
    escalate_support: Optional[float] = Field(None, gt=0, le=1)
    escalate_majority_only: bool = False

    @model_validator(mode="before")
    @classmethod
    def _classes_with_descriptions(cls, data: Any) -> Any:
        # {"name": "description"} (or its JSON, from the CLI): names are the classes
        if not isinstance(data, dict):
            return data
        classes = data.get("classes")
        if isinstance(classes, str) and classes.strip().startswith("{"):
            try:
                classes = json.loads(classes)
            except json.JSONDecodeError as e:
                raise ValueError(f"classes look like JSON but do not parse: {e}") from e
        if isinstance(classes, Mapping):
            described = {str(k).strip(): str(v).strip() for k, v in classes.items() if v and str(v).strip()}
            data = {**data, "classes": list(classes), "class_descriptions": {**described,
                                                                              **(data.get("class_descriptions") or {})}}
        return data

    @field_validator("class_descriptions", mode="before")
    @classmethod
    def _no_empty_descriptions(cls, value):
        if isinstance(value, str) and value.strip():
            try:
                value = json.loads(value)
            except json.JSONDecodeError as e:
                raise ValueError(f"class_descriptions must be a JSON object: {e}") from e
        return dict(value) if value else None

    @field_validator("hints", mode="before")
    @classmethod
    def _hint_list(cls, value):
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        return tuple(str(v).strip() for v in value if str(v).strip())
    workers: int = Field(1, ge=1, le=64)

    @field_validator("classes", mode="before")
    @classmethod
    def _split_classes(cls, value):
        if value is None:
            return None
        if isinstance(value, str):
            value = value.split(",")
        names = tuple(dict.fromkeys(str(v).strip() for v in value if str(v).strip()))
        return names or None

    @field_validator("reference_images", mode="before")
    @classmethod
    def _split_paths(cls, value):
        if value is None:
            return ()
        if isinstance(value, str):
            value = value.split(",")
        return tuple(str(v).strip() for v in value if str(v).strip())

    @field_validator("prompt", "question", "uri_field", "project", "location", mode="before")
    @classmethod
    def _blank_is_none(cls, value):
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
    def _task_has_what_it_needs(self):
        if self.task not in TASK_NAMES:
            raise ValueError(f"unknown task {self.task!r}; choose one of {', '.join(TASK_NAMES)}")
        if self.task == "classify" and not self.classes:
            raise ValueError("the classify task needs classes: the closed set of labels to choose from")
        if self.task == "vqa":
            if self.question and self.prompt:
                raise ValueError("the vqa task takes a question; give it as `question` or as `prompt`, not both")
            if not (self.question or self.prompt):
                raise ValueError("the vqa task needs a question (`question`, or `prompt`)")
        if self.consensus > 1 and self.task not in CONSENSUS_TASKS:
            raise ValueError(f"consensus fuses labels: it applies to {', '.join(CONSENSUS_TASKS)}, not {self.task} "
                             "(its answers are free text)")
        if self.confidence and self.task not in SPATIAL_TASKS:
            raise ValueError(f"confidence is asked per object: it applies to {', '.join(SPATIAL_TASKS)}, "
                             f"not {self.task}")
        return self

    @model_validator(mode="after")
    def _descriptions_name_classes(self):
        unknown = sorted(set(self.class_descriptions or ()) - set(self.classes or ()))
        if unknown:
            raise ValueError(f"class_descriptions describe {', '.join(map(repr, unknown))}, which "
                             "are not among the classes")
        return self

    @model_validator(mode="after")
    def _consistent_options(self):
        if len(self.reference_images) + 1 > MAX_IMAGES_PER_REQUEST:
            raise ValueError(
                f"{len(self.reference_images)} reference images plus the sample's image exceed "
                f"Gemini's limit of {MAX_IMAGES_PER_REQUEST} images per request"
            )
        if self.vertexai and self.image_transport == "file_api":
            raise ValueError("Vertex AI has no File API: use image_transport='inline', or 'uri' "
                             "with gs:// addresses")
        if self.batch and self.vertexai:
            raise ValueError("batch mode runs on the Gemini Developer API only (Vertex AI batch "
                             "jobs read from Cloud Storage or BigQuery, which this tool does not write)")
        if self.batch and self.num_shards > 1:
            # the batch job record is the run's: every shard would find and collect the others' job
            raise ValueError(f"a batch run is one batch job and cannot be split into shards "
                             f"(num_shards={self.num_shards}); shards are for online runs")
        if self.batch and self.api == "interactions":
            raise ValueError("batch mode uses the generateContent API: set api='generate_content'")
        if self.vertexai and self.api == "interactions":
            raise ValueError("Vertex AI is reached through the generateContent API: set "
                             "api='generate_content'")
        if (self.project or self.location) and not self.vertexai:
            raise ValueError("project and location are Vertex AI options: set vertexai=True")
        return self

    @model_validator(mode="after")
    def _workers_can_split(self):
        if self.workers > 1 and self.batch:
            raise ValueError(f"a batch run is one batch job and cannot be split between processes "
                             f"(workers={self.workers}); workers are for online runs")
        for name in ("concurrency", "max_requests", "max_tokens"):
            value = getattr(self, name)
            if value is not None and value < self.workers:
                raise ValueError(f"{name}={value} is split between the {self.workers} workers: it must be "
                                 f"at least workers")
        return self

    @model_validator(mode="after")
    def _shard_in_range(self):
        if self.shard >= self.num_shards:
            raise ValueError(
                f"shard must be between 0 and num_shards - 1 = {self.num_shards - 1}, got {self.shard}"
            )
        return self

    @model_validator(mode="after")
    def _cascade_options(self):
        if self.escalate_to is None:
            if self.escalate_below is not None or self.escalate_support is not None:
                raise ValueError("escalate_below and escalate_support choose what goes to a stronger model: "
                                 "set escalate_to too")
            return self
        if self.escalate_to == self.model:
            raise ValueError(f"escalate_to names the model the run already uses ({self.model}): "
                             "escalate to a stronger one")
        if self.task not in CONSENSUS_TASKS:
            raise ValueError(f"a cascade judges labels: it applies to {', '.join(CONSENSUS_TASKS)}, not {self.task}")
        if self.escalate_support is not None and self.consensus < 2:
            raise ValueError("escalate_support counts the objects most answers agree on: it needs consensus >= 2")
        if self.escalate_below is not None and self.consensus < 2 and not self.confidence:
            raise ValueError("escalate_below compares the labels' confidence: it needs consensus >= 2 "
                             "or confidence=True")
        if self.batch and not self.batch_wait:
            raise ValueError("a cascade decides what to escalate from its first pass's answers: "
                             "it waits for its batch (batch_wait=True)")
        return self

    @property
    def resolved_run_key(self) -> str:
        """The run key, derived from the label field when not given."""
        return self.run_key or self.label_field

    @property
    def status_field(self) -> str:
        """The per-sample field holding ``ok`` / ``partial`` / ``failed``."""
        return status_field(self.label_field)

    @property
    def reason_field(self) -> str:
        """The per-sample field saying why a sample failed, is partial, or lost items."""
        return reason_field(self.label_field)

    @property
    def polylines_field(self) -> str:
        """The field receiving the outlines of ``segment`` runs (``fo.Polylines``)."""
        return polylines_field(self.label_field)

    def to_record(self) -> dict:
        """The JSON-serialisable configuration stored on the FiftyOne run.

        It holds no secret: the key is never a field, and credentials written
        into ``base_url`` are removed. The shard is left out: every shard of a
        job shares one run record.
        """
        record = self.model_dump(exclude={"shard"})
        record["classes"] = list(self.classes) if self.classes else None
        record["hints"] = list(self.hints)
        record["base_url"] = _without_userinfo(self.base_url)
        return record


def _without_userinfo(url: Optional[str]) -> Optional[str]:
    if not url:
        return url
    return re.sub(r"//[^/@]*@", "//", url)
