"""Gemini as a FiftyOne model, for ``dataset.apply_model(...)`` like any zoo model.

::

    import gemini_annotate

    model = gemini_annotate.GeminiModel(task="classify", classes=["indoor", "outdoor"])
    dataset.apply_model(model, label_field="scene", batch_size=16)

Each image becomes the same request an annotation run would send
(:mod:`gemini_annotate.request_builder`) and each reply goes through the
task's interpreter, so labels are identical to :func:`gemini_annotate.annotate`'s;
the images of a batch are sent concurrently. What ``apply_model`` does not
do — skip labeled samples, keep reviewed labels, record a run, resume, the
Batch API — is what :func:`gemini_annotate.annotate` is for.

A sample whose request fails gets no label (FiftyOne's ``apply_model`` writes
nothing for ``None``); the reason is logged and kept in :attr:`GeminiModel.failures`.
``apply_model`` decodes each image itself before calling the model (and skips
a whole batch when one file is unreadable); the model reads the file again to
send it unchanged when it can, as an annotation run does.
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any, Optional

import fiftyone.core.models as fom
import numpy as np
from PIL import Image

from .config import AnnotateConfig
from .gemini import GeminiClient
from .messages import GeminiError, GeminiReply, GeminiRequest, TokenUsage
from .request_builder import RequestBuilder, SampleError, SampleSource, answer_requests
from .results import Answer, SampleResult, sample_result
from .retries import generate_with_retries
from .sync import gather_limited, run_sync
from .tasks import ReplyContext, get_task
from .uploads import UploadCache, upload_endpoint
from .vocabulary import STATUS_FAILED, Provenance

logger = logging.getLogger(__name__)


class GeminiModel(fom.Model, fom.SamplesMixin):
    """A FiftyOne :class:`~fiftyone.core.models.Model` answering with Gemini.

    Args:
        config: the configuration (task, classes, prompt, model, ...); or give
            its fields as keyword arguments.
        api_key: the API key; by default ``GEMINI_API_KEY`` / ``GOOGLE_API_KEY``.
        **options: :class:`~gemini_annotate.config.AnnotateConfig` fields.

    Attributes:
        failures: sample id (or batch position) → why it got no label.
        results: sample id (or batch position) → the
            :class:`~gemini_annotate.results.SampleResult` of each sample that
            got labels: its status (``ok``, or ``partial`` when the reply was
            repaired or cut off) and reason, as an annotation run records them.
        usage: tokens the replies reported so far.
    """

    def __init__(self, config: Optional[AnnotateConfig] = None, *, api_key: Optional[str] = None,
                 **options: Any):
        fom.SamplesMixin.__init__(self)
        if config is not None and options:
            raise ValueError("pass either a config or its fields as keyword arguments, not both")
        self.config = config or AnnotateConfig(**options)
        if self.config.batch:
            raise ValueError("apply_model sends requests one by one; use gemini_annotate.annotate(..., "
                             "batch=True) for the Batch API")
        self.task = get_task(self.config.task)
        self._api_key = api_key
        self._provenance = Provenance(model=self.config.model, run_key=self.config.resolved_run_key)
        self._builders: dict[Optional[str], RequestBuilder] = {}
        self._fatal: Optional[GeminiError] = None
        self.failures: dict[str, str] = {}
        self.results: dict[str, SampleResult] = {}
        self.usage = TokenUsage()

    # what FiftyOne asks of a model

    @property
    def media_type(self) -> str:
        return "image"

    @property
    def ragged_batches(self) -> bool:
        return False  # images are sent one per request; a batch is a list, never a tensor

    @property
    def transforms(self):
        return None

    @property
    def preprocess(self) -> bool:
        return False

    @preprocess.setter
    def preprocess(self, value: bool) -> None:
        pass

    @property
    def needs_fields(self) -> dict:
        """The fields the prompt template (and ``uri_field``) read, plus any the caller set."""
        fields = dict(self._fields)
        for path in self._builder(None).fields:
            fields.setdefault(f"gemini:{path}", path.split(".", 1)[0])
        return fields

    @needs_fields.setter
    def needs_fields(self, fields: dict) -> None:
        self._fields = dict(fields or {})

    def predict(self, arg, sample=None):
        """The label for one image (a uint8 HWC array, as FiftyOne passes it)."""
        return self.predict_all([arg], samples=[sample] if sample is not None else None)[0]

    def predict_all(self, args, samples=None) -> list:
        """Labels for a batch of images, sent concurrently; ``None`` where a request failed.

        With ``samples`` (FiftyOne passes them to a ``SamplesMixin`` model),
        each image is read from its file as an annotation run reads it, and the
        prompt's ``{field}`` placeholders are filled from the sample.
        """
        if self._fatal is not None:
            raise self._fatal
        sources = [self._source(i, arg, samples[i] if samples else None) for i, arg in enumerate(args)]
        dataset = samples[0]._dataset if samples and getattr(samples[0], "_dataset", None) else None
        return run_sync(lambda: self._predict_sources(sources, dataset))

    # the work

    def _builder(self, dataset) -> RequestBuilder:
        """The request builder for a dataset's samples (its upload cache), or for bare images."""
        key = dataset.name if dataset is not None else None
        if key not in self._builders:
            uploads = None
            if self.config.image_transport == "file_api" and dataset is not None:
                uploads = UploadCache(dataset, upload_endpoint(self.config.base_url))
            self._builders[key] = RequestBuilder(self.config, self.task, uploads=uploads)
        return self._builders[key]

    def _source(self, position: int, arg: Any, sample) -> SampleSource:
        if sample is not None:
            values = {path: _sample_value(sample, path) for path in self._builder(None).fields}
            return SampleSource(sample.id, sample.filepath, values)
        if isinstance(arg, str):
            return SampleSource(str(position), arg)
        return SampleSource(str(position), "", image_bytes=_encode_array(arg))

    async def _predict_sources(self, sources: list[SampleSource], dataset) -> list:
        builder = self._builder(dataset)
        loop = asyncio.get_running_loop()
        async with GeminiClient.from_config(self.config, api_key=self._api_key) as client:
            # each sample sends `consensus` requests at once: the cap holds for requests
            samples_at_once = max(1, self.config.concurrency // self.config.consensus)
            labels = await gather_limited((self._predict_one(builder, client, source, loop) for source in sources),
                                          samples_at_once)
        if self._fatal is not None:
            raise self._fatal
        return labels

    async def _predict_one(self, builder: RequestBuilder, client: GeminiClient, source: SampleSource, loop):
        try:
            built = await builder.build(source, client, lambda fn, *a: loop.run_in_executor(None, fn, *a))
        except SampleError as e:
            return self._failed(source, str(e))
        except GeminiError as e:
            return self._failed(source, self._note_fatal(e))
        requests = answer_requests(built.request, self.config.consensus)
        answers = await asyncio.gather(*(self._answer(client, request) for request in requests))
        image = built.image
        context = ReplyContext(self.config, (image.display_width, image.display_height), self._provenance)
        result = sample_result(source.sample_id, answers, self.task, context)
        if result.status == STATUS_FAILED:
            return self._failed(source, result.reason)
        self.results[source.sample_id] = result
        if result.reason:
            logger.info("sample %s (%s): %s", source.sample_id, result.status, result.reason)
        return result.label

    async def _answer(self, client: GeminiClient, request: GeminiRequest) -> Answer:
        """One request's reply (retried), or why it failed."""
        async def send() -> GeminiReply:
            return await client.generate(request)

        try:
            reply = await generate_with_retries(send, max_attempts=self.config.max_attempts)
        except GeminiError as e:
            return self._note_fatal(e)
        self.usage = self.usage + reply.usage
        return reply

    def _note_fatal(self, error: GeminiError) -> str:
        """Remembers an error no later request can avoid (raised after the batch); returns its message."""
        if error.fatal:
            self._fatal = error
        return error.message

    def _failed(self, source: SampleSource, reason: str) -> None:
        self.failures[source.sample_id] = reason
        logger.warning("Gemini gave no label for sample %s: %s", source.sample_id, reason)
        return None


def _sample_value(sample, path: str) -> Any:
    """A sample's value at a field path; lists of labels give their labels."""
    value: Any = sample
    for part in path.split("."):
        if isinstance(value, list):
            value = [getattr(item, part, None) for item in value]
        else:
            value = getattr(value, part, None) if not hasattr(value, "get_field") else _get(value, part)
        if value is None:
            return None
    return value


def _get(document, name: str) -> Any:
    try:
        return document.get_field(name)
    except AttributeError:
        return None


def _encode_array(array: np.ndarray) -> bytes:
    """A uint8 HWC (or HW) image array as PNG bytes, losslessly."""
    out = io.BytesIO()
    Image.fromarray(np.asarray(array)).save(out, format="PNG")
    return out.getvalue()
