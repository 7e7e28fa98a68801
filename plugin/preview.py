"""What a run would send, before it runs: samples, requests and estimated tokens.

Cheap enough to recompute on every change of the App's form: image sizes come
from the samples' metadata; for samples without metadata at most
``header_budget`` image headers are read (no pixels decoded) and the rest are
estimated from the average of the known ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import fiftyone as fo

from .config import AnnotateConfig
from .convert import UNREVIEWED
from .costs import estimate_text_tokens
from .media import ImageError, estimate_image_tokens, read_image_size
from .review import review_counts
from .request_builder import is_uri, request_prompt
from .runs import pending_samples
from .tasks import get_task

FALLBACK_TOKENS_PER_IMAGE = estimate_image_tokens(1024, 768)
"""Used for every image when no image size is known at all."""


@dataclass(frozen=True)
class RunPreview:
    """What a run of a configuration over a collection would send.

    Attributes:
        samples: samples in the collection.
        to_send: samples that would be sent (one request each, before retries).
        skipped: samples left alone (already labeled or finished, per ``if_labeled``).
        image_tokens: estimated input tokens for the images as sent (resized,
            capped by ``media_resolution``), reference images included.
        prompt_tokens: estimated input tokens for the prompt, over all requests.
        sized: samples to send whose image size was known or read.
        reviewed_labels: with ``if_labeled="overwrite"``, labels a person
            reviewed or drew in the samples to send, which the run would replace.
    """

    samples: int
    to_send: int
    skipped: int
    image_tokens: int
    prompt_tokens: int
    sized: int
    reviewed_labels: int

    @property
    def estimated_tokens(self) -> int:
        return self.image_tokens + self.prompt_tokens

    def describe(self) -> str:
        """One line for a form or a terminal."""
        exact = "" if self.sized == self.to_send else f"; sizes of {self.to_send - self.sized} image(s) extrapolated"
        return (f"{self.to_send} of {self.samples} sample(s) → {self.to_send} request(s), about "
                f"{self.estimated_tokens:,} input tokens ({self.image_tokens:,} for images){exact}; "
                f"{self.skipped} skipped")


def header_size(path: str) -> Optional[tuple[int, int]]:
    """An image's displayed size from its header alone, or ``None`` if unreadable."""
    try:
        return read_image_size(path)
    except ImageError:  # unreadable images fail later, per sample, with their reason
        return None


def image_tokens_as_sent(width: int, height: int, config: AnnotateConfig) -> int:
    """The input tokens of a ``width`` × ``height`` image sent under ``config`` (resized, capped)."""
    return estimate_image_tokens(width, height, max_side=config.max_image_side,
                                 media_resolution=config.media_resolution, model=config.model)


def preview_run(
    samples: fo.core.collections.SampleCollection,
    config: AnnotateConfig,
    *,
    header_budget: int = 64,
) -> RunPreview:
    """Estimates what a run would send, without sending anything.

    Args:
        samples: the collection the run would cover.
        config: the run's configuration.
        header_budget: image headers read at most for samples without metadata.

    Returns:
        a :class:`RunPreview`
    """
    todo = pending_samples(samples, config)
    total = len(samples)
    paths, widths, heights = todo.values(["filepath", "metadata.width", "metadata.height"])
    known = []
    unknown_paths = []
    for path, width, height in zip(paths, widths, heights):
        if width and height:
            known.append((width, height))
        else:
            unknown_paths.append(path)
    for path in unknown_paths[:header_budget]:
        size = header_size(path)
        if size is not None:
            known.append(size)
    tokens = [image_tokens_as_sent(w, h, config) for w, h in known]
    per_unknown = (sum(tokens) / len(tokens)) if tokens else FALLBACK_TOKENS_PER_IMAGE
    image_tokens = sum(tokens) + math.ceil(per_unknown * (len(paths) - len(known)))
    image_tokens += _reference_tokens(config) * len(paths)
    prompt = request_prompt(config, get_task(config.task))
    return RunPreview(
        samples=total,
        to_send=len(paths),
        skipped=total - len(paths),
        image_tokens=int(image_tokens),
        prompt_tokens=estimate_text_tokens(prompt) * len(paths),
        sized=len(known),
        reviewed_labels=_reviewed_labels(todo, config),
    )


def _reference_tokens(config: AnnotateConfig) -> int:
    """Input tokens of the reference images every request carries; one whose size
    is unknown (an address, an unreadable file) counts as the smallest image."""
    sizes = [None if is_uri(path) else header_size(path) for path in config.reference_images]
    return sum(image_tokens_as_sent(*(size or (1, 1)), config) for size in sizes)


def _reviewed_labels(samples: fo.core.collections.SampleCollection, config: AnnotateConfig) -> int:
    # only an overwrite can lose a person's work, so only then is it counted; text fields
    # (captions, answers) carry no review status
    if config.if_labeled != "overwrite":
        return 0
    label_type = getattr(samples.get_field(config.label_field), "document_type", None)
    if label_type is None or not issubclass(label_type, fo.Label):
        return 0
    statuses = review_counts(samples, config.label_field).statuses
    return sum(n for status, n in statuses.items() if status != UNREVIEWED)
