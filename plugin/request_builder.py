"""From one sample to one Gemini request: prompt, images (inline, File API or URI), schema.

The online pipeline, the Batch API path and the FiftyOne model wrapper all
build their requests here, so a request for a sample is the same whichever
way it is sent:

- the prompt is the task's, with ``{field}`` placeholders filled from the
  sample (see :mod:`gemini_annotate.prompts`);
- the sample's image goes inline (bytes), by File API URI (uploaded once, see
  :mod:`gemini_annotate.uploads`) or by the URI its media already has;
- reference images, if configured, follow it in every request (prepared and
  uploaded once per run).
"""

from __future__ import annotations

import asyncio
import mimetypes
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, Mapping, Optional

from .config import AnnotateConfig
from .costs import estimate_text_tokens
from .gemini import GeminiClient
from .media import ImageError, PreparedImage, estimate_image_tokens, prepare_image, prepare_image_bytes
from .messages import GeminiRequest, ImagePart
from .prompts import PromptFieldError, fill_template, request_prompt, template_fields
from .retries import generate_with_retries
from .tasks import TaskSpec
from .uploads import UploadCache

URI_SCHEMES = ("http://", "https://", "gs://")

RunBlocking = Callable[..., Awaitable[Any]]
"""Runs a blocking function off the event loop: ``await run_blocking(fn, *args)``."""


class SampleError(Exception):
    """A sample whose request cannot be built; the message says why, for that sample."""


@dataclass(frozen=True)
class SampleSource:
    """What a request needs from one sample.

    Attributes:
        sample_id: the sample's id.
        filepath: its media path (or URL).
        values: the values of the fields the builder asked for
            (:attr:`RequestBuilder.fields`), by field path.
        image_bytes: the encoded image, when it is not read from ``filepath``
            (an image in memory).
    """

    sample_id: str
    filepath: str
    values: Mapping[str, Any] = field(default_factory=dict)
    image_bytes: Optional[bytes] = None


@dataclass(frozen=True)
class BuiltRequest:
    """A request ready to send, with the sample's image as sent.

    Attributes:
        request: the request.
        image: the sample's image as sent; its ``data`` is empty when it went
            by a URI Gemini reads itself (geometry then comes from metadata,
            0 when unknown).
        estimated_input_tokens: the input-token estimate of the whole request.
    """

    request: GeminiRequest
    image: PreparedImage
    estimated_input_tokens: int


def answer_requests(request: GeminiRequest, consensus: int) -> list[GeminiRequest]:
    """The requests that ask for a sample's answer(s): the request itself, or for a consensus
    of N, N copies differing only by their sampling seed (1..N: independent, reproducible)."""
    if consensus <= 1:
        return [request]
    return [replace(request, seed=seed) for seed in range(1, consensus + 1)]


def is_uri(path: str) -> bool:
    """Whether a path is an address Gemini can read itself (http(s), gs://)."""
    return path.startswith(URI_SCHEMES)


class RequestBuilder:
    """Builds the requests of one configuration.

    Args:
        config: the run's configuration.
        task: its task.
        uploads: the upload cache, needed for ``image_transport="file_api"``.
    """

    def __init__(self, config: AnnotateConfig, task: TaskSpec, *, uploads: Optional[UploadCache] = None):
        self.config = config
        self.task = task
        self.uploads = uploads
        prompt = request_prompt(config)
        self.prompt = prompt
        self.schema = task.build_schema(config)
        self.prompt_fields = template_fields(prompt)
        self._references: Optional[tuple[tuple[ImagePart, int], ...]] = None
        self._references_lock = asyncio.Lock()

    @property
    def fields(self) -> list[str]:
        """The sample fields each :class:`SampleSource` must carry."""
        fields = list(self.prompt_fields)
        if self.config.image_transport == "uri":
            if self.config.uri_field:
                fields.append(self.config.uri_field)
            fields += ["metadata.width", "metadata.height"]
        return list(dict.fromkeys(fields))

    def check_fields(self, samples) -> None:
        """Raises ``ValueError`` when a field the prompt or ``uri_field`` names does not exist."""
        names = list(self.prompt_fields)
        if self.config.uri_field:
            names.append(self.config.uri_field)
        missing = [name for name in names if samples.get_field(name) is None]
        if missing:
            raise ValueError(
                f"the prompt or options name field(s) {', '.join(map(repr, missing))} that the "
                f"dataset does not have; its fields are: {', '.join(samples.get_field_schema())}"
            )

    def prompt_for(self, source: SampleSource) -> str:
        """The prompt for one sample (placeholders filled).

        Raises:
            SampleError: the sample lacks a value the prompt needs.
        """
        if not self.prompt_fields:
            return self.prompt
        try:
            return fill_template(self.prompt, source.values)
        except PromptFieldError as e:
            raise SampleError(str(e)) from None

    async def build(self, source: SampleSource, client: GeminiClient, run_blocking: RunBlocking) -> BuiltRequest:
        """The request for one sample.

        Raises:
            SampleError: the sample's image or field values cannot make a request.
            GeminiError: a File API upload failed (after retries).
        """
        prompt = self.prompt_for(source)
        image, part = await self._sample_image(source, client, run_blocking)
        references = await self._reference_parts(client, run_blocking)
        config = self.config
        tokens = estimate_text_tokens(prompt) + self._image_tokens(image.width, image.height)
        tokens += sum(t for _, t in references)
        request = GeminiRequest(
            prompt=prompt,
            images=(part, *(p for p, _ in references)),
            response_schema=self.schema,
            thinking_level=config.thinking_level or self.task.thinking_level,
            media_resolution=config.media_resolution,
        )
        return BuiltRequest(request, image, tokens)

    def _image_tokens(self, width: int, height: int) -> int:
        if width <= 0 or height <= 0:
            width = height = 1  # unknown size: the smallest image's cost
        return estimate_image_tokens(width, height, media_resolution=self.config.media_resolution,
                                     model=self.config.model)

    async def _sample_image(self, source: SampleSource, client: GeminiClient,
                            run_blocking: RunBlocking) -> tuple[PreparedImage, ImagePart]:
        config = self.config
        if config.image_transport == "uri":
            uri = source.values.get(config.uri_field) if config.uri_field else source.filepath
            if not uri or not is_uri(str(uri)):
                where = f"field {config.uri_field!r}" if config.uri_field else "its filepath"
                raise SampleError(
                    f"image_transport='uri' needs an http(s):// or gs:// address, and {where} holds "
                    f"{uri!r}; use image_transport='inline' for local files")
            mime_type = _image_mime_type(str(uri))
            width = source.values.get("metadata.width") or 0
            height = source.values.get("metadata.height") or 0
            return (PreparedImage(b"", mime_type, width, height, width, height),
                    ImagePart(mime_type, uri=str(uri)))
        if source.image_bytes is None and is_uri(source.filepath):
            raise SampleError(f"the image is at a URL ({source.filepath}): use image_transport='uri'")
        try:
            if source.image_bytes is not None:
                image = await run_blocking(prepare_image_bytes, source.image_bytes, config.max_image_side)
            else:
                image = await run_blocking(prepare_image, source.filepath, config.max_image_side)
        except ImageError as e:
            raise SampleError(str(e)) from None
        if config.image_transport == "file_api":
            uri = await self._upload(client, image, source.sample_id)
            return image, ImagePart(image.mime_type, uri=uri)
        return image, ImagePart(image.mime_type, data=image.data)

    async def _upload(self, client: GeminiClient, image: PreparedImage, name: str) -> str:
        uploads = self.uploads
        if uploads is None:
            raise SampleError("image_transport='file_api' needs the samples' dataset (it remembers "
                              "the uploads); images given alone are sent inline")

        async def upload() -> str:
            return await uploads.uri_for(client, image.data, image.mime_type, display_name=name)

        return await generate_with_retries(upload, max_attempts=self.config.max_attempts)

    async def _reference_parts(self, client: GeminiClient,
                               run_blocking: RunBlocking) -> tuple[tuple[ImagePart, int], ...]:
        if not self.config.reference_images:
            return ()
        async with self._references_lock:
            if self._references is None:
                parts = []
                for path in self.config.reference_images:
                    parts.append(await self._reference_part(path, client, run_blocking))
                self._references = tuple(parts)
        return self._references

    async def _reference_part(self, path: str, client: GeminiClient,
                              run_blocking: RunBlocking) -> tuple[ImagePart, int]:
        if is_uri(path):
            return ImagePart(_image_mime_type(path), uri=path), self._image_tokens(0, 0)
        try:
            image = await run_blocking(prepare_image, path, self.config.max_image_side)
        except ImageError as e:
            raise SampleError(f"reference image: {e}") from None
        tokens = self._image_tokens(image.width, image.height)
        if self.config.image_transport == "file_api":
            return ImagePart(image.mime_type, uri=await self._upload(client, image, path)), tokens
        return ImagePart(image.mime_type, data=image.data), tokens


def _image_mime_type(uri: str) -> str:
    mime_type, _ = mimetypes.guess_type(uri.split("?", 1)[0])
    if not mime_type or not mime_type.startswith("image/"):
        raise SampleError(f"cannot tell the image type of {uri} from its name (expected .jpg, .png, "
                          ".webp, .heic or .heif)")
    return mime_type
