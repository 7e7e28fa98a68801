"""The only module that knows the google-genai SDK: one request in, one reply out.

Two Gemini APIs sit behind :class:`GeminiClient`:

- ``generate_content`` (default): ``client.aio.models.generate_content``. About
  5 ms of client CPU per request on the machines we measured, and the API that
  also carries the Batch API and Vertex AI.
- ``interactions``: ``client.aio.interactions.create``, the API of Google's
  image-understanding guide. About 30 ms of client CPU per request (the SDK
  builds pydantic models on every call), which caps throughput on small hosts.

Both honour ``GOOGLE_GEMINI_BASE_URL`` or an explicit ``base_url``, so every
request can go to the local emulator or a compatible gateway. The same client
uploads images through the File API, runs Batch API jobs, and reaches Vertex AI
(``vertexai=True``, project, location; Application Default Credentials). The SDK's own
retry loops are switched off (``attempts=1``): retries happen in one place,
:func:`gemini_annotate.retries.generate_with_retries`, which honours the server's retry delay.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import io
import json
import os
import re
from typing import Any, Iterator, Optional

import httpx2
from google import genai
from google.auth import exceptions as auth_errors
from google.genai import _interactions_errors as ierrors
from google.genai import errors, types

from .config import AnnotateConfig
from .messages import (
    BatchResult,
    BatchStatus,
    GeminiError,
    GeminiReply,
    GeminiRequest,
    TokenUsage,
    UploadedFile,
)
from .model_profiles import model_profile

API_KEY_ENV_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")

_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class MissingApiKeyError(GeminiError):
    """No API key was given and none is set in the environment."""

    def __init__(self):
        super().__init__(
            "No Gemini API key found. Set GEMINI_API_KEY (or GOOGLE_API_KEY), or "
            "the GEMINI_API_KEY secret of the FiftyOne plugin; to try the tool "
            "without a key, run `gemini-annotate demo`, which uses the local "
            "emulator.",
            fatal=True,
            reason="NO_API_KEY",
        )


def resolve_api_key(explicit: Optional[str] = None) -> str:
    """The API key to use: the explicit one, else GEMINI_API_KEY, else GOOGLE_API_KEY.

    Raises:
        MissingApiKeyError: none is available.
    """
    for candidate in (explicit, *(os.environ.get(v) for v in API_KEY_ENV_VARS)):
        if candidate and candidate.strip():
            return candidate.strip()
    raise MissingApiKeyError()


class _NamesAreNotMembers:
    """Answers ``name in model`` at once, as pydantic answers it: ``False``.

    A pydantic model's ``__iter__`` yields ``(name, value)`` pairs, so ``in``
    compares a name with every pair and never finds it. The SDK's request
    converters ask ``name in model`` before reading each field (then read it
    with ``getattr``): ~100 fields of a ``GenerateContentConfig`` each compared
    with ~100 pairs on every request. The same answer without the loop, and
    automatic function calling switched off, take the SDK's own work for a
    request (building it and reading the reply, without the network) from
    1.53 to 1.06 ms of CPU (1-MP JPEG, best of 20 rounds of 100); the body
    sent is the same, byte for byte.
    """

    def __contains__(self, item: object) -> bool:
        return isinstance(item, tuple) and any(pair == item for pair in self)  # type: ignore[attr-defined]


class _GenerateContentConfig(_NamesAreNotMembers, types.GenerateContentConfig):
    pass


class _Content(_NamesAreNotMembers, types.Content):
    pass


class _Part(_NamesAreNotMembers, types.Part):
    pass


class _Blob(_NamesAreNotMembers, types.Blob):
    pass


_NO_FUNCTION_CALLING = types.AutomaticFunctionCallingConfig(disable=True)


class GeminiClient:
    """An async Gemini client for one model through one API.

    Args:
        model: the model name.
        api: ``"generate_content"`` or ``"interactions"``.
        api_key: the key; resolved from the environment when ``None``.
        base_url: an endpoint replacing Google's; ``None`` leaves the SDK to
            read ``GOOGLE_GEMINI_BASE_URL``.
        timeout: seconds allowed for one request, from sending to the whole reply.
        vertexai: reach the model through Vertex AI; credentials then come
            from Application Default Credentials (``gcloud auth
            application-default login``, a service account), not an API key.
        project: the Google Cloud project (Vertex AI).
        location: the Vertex AI region (Vertex AI).
        max_connections: connections kept open to the endpoint; at least the
            run's concurrency, so no request waits for a connection and none
            is re-opened between requests.
    """

    def __init__(
        self,
        *,
        model: str,
        api: str = "generate_content",
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        timeout: float = 120.0,
        vertexai: bool = False,
        project: Optional[str] = None,
        location: Optional[str] = None,
        max_connections: int = 100,
    ):
        if api not in ("generate_content", "interactions"):
            raise ValueError(f"unknown Gemini API {api!r}")
        self.model = model
        self.api = api
        self.timeout = timeout
        self.vertexai = vertexai
        http_options = types.HttpOptions(
            base_url=base_url or None,
            timeout=int(timeout * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
            async_client_args={"limits": httpx2.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections,
            )},
        )
        if vertexai:
            self._key = api_key
            try:
                self._client = genai.Client(vertexai=True, api_key=api_key, project=project,
                                            location=location, http_options=http_options)
            except Exception as e:  # google.auth's DefaultCredentialsError, the SDK's ValueError
                raise GeminiError(
                    f"cannot reach Vertex AI: {e}. Set project and location and sign in with "
                    "`gcloud auth application-default login` (or GOOGLE_APPLICATION_CREDENTIALS).",
                    fatal=True, reason="VERTEX_AUTH",
                ) from None
        else:
            self._key = resolve_api_key(api_key)
            self._client = genai.Client(api_key=self._key, http_options=http_options)
        self._profile = model_profile(model)
        self._config_cache: dict[tuple, tuple] = {}

    @classmethod
    def from_config(cls, config: AnnotateConfig, api_key: Optional[str] = None) -> "GeminiClient":
        """A client for the model, API and endpoint a run's configuration names."""
        return cls(
            model=config.model,
            api=config.api,
            api_key=api_key,
            base_url=config.base_url,
            timeout=config.timeout,
            vertexai=config.vertexai,
            project=config.project,
            location=config.location,
            max_connections=max(100, config.concurrency),
        )

    async def generate(self, request: GeminiRequest) -> GeminiReply:
        """Sends one request, once.

        Raises:
            GeminiError: the request failed; see its ``retryable``/``fatal``.
        """
        # the SDK's timeout bounds each network read; this bounds the whole request
        with self._sdk_errors():
            async with asyncio.timeout(self.timeout):
                if self.api == "interactions":
                    return await self._create_interaction(request)
                return await self._generate_content(request)

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        self._client.close()

    async def __aenter__(self) -> "GeminiClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    # generateContent

    async def _generate_content(self, request: GeminiRequest) -> GeminiReply:
        response = await self._client.aio.models.generate_content(
            model=self.model,
            # one Content, not a list of one: the same request body, which the SDK builds
            # 0.3 ms faster (measured: 1.9 against 2.2 ms of CPU for a 260 KB JPEG)
            contents=self._content(request),
            config=self._generation_config(request),
        )
        return reply_from_generate_content(response)

    def _contents(self, request: GeminiRequest) -> list:
        return [self._content(request)]

    def _content(self, request: GeminiRequest):
        parts = [_Part(text=request.prompt)]
        for image in request.images:
            if image.data is not None:
                parts.append(_Part(inline_data=_Blob(data=image.data, mime_type=image.mime_type)))
            else:
                parts.append(_Part(file_data=types.FileData(file_uri=image.uri, mime_type=image.mime_type)))
        return _Content(role="user", parts=parts)

    def _generation_config(self, request: GeminiRequest):
        """The request's ``GenerateContentConfig``, built once for a run's requests.

        Validating the schema into SDK models costs about a millisecond per
        request, and every request of a run asks the same thing (the same
        schema object, which is never modified).
        """
        key = (id(request.response_schema), request.thinking_level, request.media_resolution, request.seed)
        cached = self._config_cache.get(key)
        if cached is not None and cached[0] is request.response_schema:
            return cached[1]
        if len(self._config_cache) >= 64:  # a run asks a few variants (its seeds); never grows past that
            self._config_cache.clear()
        built = self._build_generation_config(request)
        self._config_cache[key] = (request.response_schema, built)
        return built

    def _build_generation_config(self, request: GeminiRequest):
        config: dict[str, Any] = {}
        if request.response_schema is not None:
            config["response_mime_type"] = "application/json"
            config["response_json_schema"] = request.response_schema
        thinking = self._thinking_config(request)
        if thinking:
            config["thinking_config"] = types.ThinkingConfig(**thinking)
        if request.media_resolution:
            config["media_resolution"] = f"MEDIA_RESOLUTION_{request.media_resolution.upper()}"
        if request.seed is not None:
            config["seed"] = request.seed
        if not config:
            return None
        # no tools, so nothing for automatic function calling to do; switched off, the
        # SDK skips its loop (and the deep copy of the config that loop makes)
        return _GenerateContentConfig(automatic_function_calling=_NO_FUNCTION_CALLING, **config)

    # Interactions

    async def _create_interaction(self, request: GeminiRequest) -> GeminiReply:
        content: list[dict[str, Any]] = [{"type": "text", "text": request.prompt}]
        for image in request.images:
            part: dict[str, Any] = {"type": "image", "mime_type": image.mime_type}
            if image.data is not None:
                part["data"] = base64.b64encode(image.data).decode("ascii")
            else:
                part["uri"] = image.uri
            if request.media_resolution:
                # the Interactions API sets the resolution on each image
                part["resolution"] = request.media_resolution
            content.append(part)
        kwargs: dict[str, Any] = {"model": self.model, "input": content}
        if request.response_schema is not None:
            kwargs["response_format"] = {
                "type": "text",
                "mime_type": "application/json",
                "schema": request.response_schema,
            }
        generation_config: dict[str, Any] = dict(self._thinking_config(request))
        if request.seed is not None:
            generation_config["seed"] = request.seed
        if generation_config:
            kwargs["generation_config"] = generation_config
        interaction = await self._client.aio.interactions.create(**kwargs)
        return reply_from_interaction(interaction)

    def _thinking_config(self, request: GeminiRequest) -> dict[str, Any]:
        if not request.thinking_level:
            return {}
        if self._profile.supports_thinking_level:
            level = request.thinking_level
            return {"thinking_level": level.upper() if self.api == "generate_content" else level}
        if self._profile.thinking_budget_off is not None and request.thinking_level == "minimal":
            return {"thinking_budget": self._profile.thinking_budget_off}
        return {}

    # File API

    async def upload_file(self, data: bytes, mime_type: str, display_name: Optional[str] = None) -> UploadedFile:
        """Uploads bytes through the File API (resumable upload, one round trip for small files)."""
        config: dict[str, Any] = {"mime_type": mime_type}
        if display_name:
            config["display_name"] = display_name
        with self._sdk_errors():
            uploaded = await self._client.aio.files.upload(file=io.BytesIO(data), config=config)
        return _uploaded_file(uploaded)

    async def get_file(self, name: str) -> UploadedFile:
        """The File API's record of a file (raises :class:`GeminiError` when it is gone)."""
        with self._sdk_errors():
            return _uploaded_file(await self._client.aio.files.get(name=name))

    async def delete_file(self, name: str) -> None:
        """Deletes an uploaded file."""
        with self._sdk_errors():
            await self._client.aio.files.delete(name=name)

    # Batch API

    async def submit_batch(self, requests: list[tuple[str, GeminiRequest]], *, display_name: str,
                           via_file: bool = False) -> BatchStatus:
        """Creates a batch job answering ``requests`` (each under its key).

        Requests travel inline in the create call, or, with ``via_file``, as a
        JSONL file uploaded through the File API first (for jobs beyond the
        inline size limit).
        """
        with self._sdk_errors():
            if via_file:
                lines = (json.dumps({"key": key, "request": self._request_body(request)})
                         for key, request in requests)
                data = ("\n".join(lines) + "\n").encode()
                uploaded = await self.upload_file(data, "jsonl", display_name=f"{display_name}.jsonl")
                src: Any = uploaded.name
            else:
                src = [
                    {"contents": self._contents(request), "config": self._generation_config(request),
                     "metadata": {"key": key}}
                    for key, request in requests
                ]
            job = await self._client.aio.batches.create(
                model=self.model, src=src, config={"display_name": display_name})
        return BatchStatus(name=job.name, state=_job_state(job))

    async def get_batch(self, name: str) -> BatchStatus:
        """A batch job's state, with every result once it has succeeded."""
        with self._sdk_errors():
            job = await self._client.aio.batches.get(name=name)
            state = _job_state(job)
            if state not in ("SUCCEEDED", "PARTIALLY_SUCCEEDED"):
                error = job.error.message if job.error else None
                return BatchStatus(name=name, state=state, error=error)
            dest = job.dest
            if dest is not None and dest.file_name:
                data = await self._client.aio.files.download(file=dest.file_name)
                results = tuple(_batch_results_from_jsonl(data))
            else:
                results = tuple(
                    _batch_result((item.metadata or {}).get("key", str(i)), item.response, item.error)
                    for i, item in enumerate((dest.inlined_responses if dest else None) or [])
                )
        return BatchStatus(name=name, state=state, results=results)

    def _request_body(self, request: GeminiRequest) -> dict:
        """A ``GenerateContentRequest`` as the JSON of a batch input file."""
        body: dict[str, Any] = {
            "contents": [c.model_dump(mode="json", exclude_none=True, by_alias=True)
                         for c in self._contents(request)],
        }
        config = self._generation_config(request)
        if config is not None:
            body["generationConfig"] = config.model_dump(  # the SDK's own option, not the API's
                mode="json", exclude_none=True, by_alias=True, exclude={"automatic_function_calling"})
        return body

    # errors

    @contextlib.contextmanager
    def _sdk_errors(self) -> Iterator[None]:
        """Turns whatever the SDK raises inside into a :class:`GeminiError` naming no secret."""
        try:
            yield
        except GeminiError:
            raise
        except Exception as e:
            error = classify_sdk_error(e, model=self.model, timeout=self.timeout)
            error.message = scrub_secret(error.message, self._key)
            error.args = (error.message,)
            raise error from None


def reply_from_generate_content(response: Any) -> GeminiReply:
    """Reads a ``GenerateContentResponse`` into a :class:`GeminiReply`."""
    tokens = _token_usage(response.usage_metadata, "prompt_token_count", "candidates_token_count",
                          "thoughts_token_count", "total_token_count")
    if not response.candidates:
        feedback = response.prompt_feedback
        reason = feedback.block_reason if feedback and feedback.block_reason else None
        return GeminiReply(
            text="",
            finish_reason="BLOCKED" if reason else "NO_CANDIDATES",
            usage=tokens,
            model_version=response.model_version,
        )
    candidate = response.candidates[0]
    parts = (candidate.content.parts or []) if candidate.content else []
    text = "".join(p.text for p in parts if p.text and not p.thought)
    finish = candidate.finish_reason
    finish_name = getattr(finish, "value", finish) or "STOP"
    return GeminiReply(text=text, finish_reason=str(finish_name), usage=tokens,
                       model_version=response.model_version)


def _token_usage(usage: Any, input_name: str, output_name: str, thought_name: str,
                 total_name: str) -> TokenUsage:
    """The token counts of an SDK usage object, read by each API's attribute names (missing: 0)."""
    if usage is None:
        return TokenUsage()
    return TokenUsage(*(getattr(usage, name) or 0 for name in (input_name, output_name, thought_name, total_name)))


def _uploaded_file(file: Any) -> UploadedFile:
    state = getattr(file.state, "name", file.state) or "ACTIVE"
    return UploadedFile(name=file.name, uri=file.uri, mime_type=file.mime_type or "",
                        state=str(state), expires_at=file.expiration_time)


def _job_state(job: Any) -> str:
    state = getattr(job.state, "name", job.state) or "JOB_STATE_PENDING"
    return str(state).replace("JOB_STATE_", "").replace("BATCH_STATE_", "")


def _batch_result(key: str, response: Any, error: Any) -> BatchResult:
    if response is not None:
        return BatchResult(key=str(key), reply=reply_from_generate_content(response))
    message = getattr(error, "message", None) or (error.get("message") if isinstance(error, dict) else None)
    return BatchResult(key=str(key), error=f"the batch request failed: {message or error or 'no details'}")


def _batch_results_from_jsonl(data: bytes):
    for line in data.decode().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        response = entry.get("response")
        yield _batch_result(
            entry.get("key", ""),
            types.GenerateContentResponse.model_validate(response) if response else None,
            entry.get("error"),
        )


_INTERACTION_FINISH = {
    "completed": "STOP",
    "incomplete": "MAX_TOKENS",
    "budget_exceeded": "MAX_TOKENS",
    "requires_continuation": "MAX_TOKENS",
    "failed": "ERROR",
    "cancelled": "ERROR",
}


def reply_from_interaction(interaction: Any) -> GeminiReply:
    """Reads an ``Interaction`` into a :class:`GeminiReply`.

    The text is the last model output step's text, as in Google's guide
    (``interaction.steps[-1].content[0].text``), joined when split in parts.
    """
    text = interaction.output_text
    if text is None:
        text = ""
        for step in reversed(interaction.steps or []):
            contents = getattr(step, "content", None) or []
            texts = [c.text for c in contents if getattr(c, "text", None)]
            if texts:
                text = "".join(texts)
                break
    tokens = _token_usage(interaction.usage, "total_input_tokens", "total_output_tokens",
                          "total_thought_tokens", "total_tokens")
    status = str(getattr(interaction.status, "value", interaction.status))
    return GeminiReply(
        text=text,
        finish_reason=_INTERACTION_FINISH.get(status, status.upper()),
        usage=tokens,
        model_version=str(interaction.model) if interaction.model else None,
    )


def classify_sdk_error(exc: Exception, *, model: str, timeout: float) -> GeminiError:
    """Turns any exception the SDK raises into a :class:`GeminiError`.

    Both APIs' error types are read: ``google.genai.errors.APIError`` (``code``,
    ``details``) and the Interactions client's ``APIStatusError``
    (``status_code``, ``body``), plus transport errors and timeouts.
    """
    if isinstance(exc, errors.APIError):
        return _status_error(exc.code, exc.details, _headers(exc.response), model)
    if isinstance(exc, ierrors.APITimeoutError):
        return _timeout_error(timeout)
    if isinstance(exc, ierrors.APIConnectionError):
        return GeminiError(f"could not reach Gemini: {exc.message}", retryable=True,
                           reason="CONNECTION")
    if isinstance(exc, ierrors.APIStatusError):
        return _status_error(exc.status_code, exc.body, _headers(exc.response), model)
    if isinstance(exc, ierrors.APIError) and exc.status_code:
        return _status_error(exc.status_code, exc.body, None, model)
    for transport in _transport_modules():
        if isinstance(exc, transport.TimeoutException):
            return _timeout_error(timeout)
        if isinstance(exc, transport.TransportError):
            return GeminiError(f"could not reach Gemini: {type(exc).__name__}: {exc}",
                               retryable=True, reason="CONNECTION")
    if isinstance(exc, TimeoutError):
        return _timeout_error(timeout)
    if isinstance(exc, auth_errors.GoogleAuthError):
        return GeminiError(
            f"Vertex AI credentials are missing or invalid ({type(exc).__name__}: {exc}). Sign in with "
            "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS.",
            fatal=True, reason="VERTEX_AUTH",
        )
    return GeminiError(f"unexpected error from the Gemini SDK: {type(exc).__name__}: {exc}")


def _transport_modules() -> list:
    """The HTTP libraries the SDK may use (``httpx2`` in google-genai 3.6, else ``httpx``)."""
    modules = []
    for name in ("httpx2", "httpx"):
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            continue
    return modules


def _timeout_error(timeout: float) -> GeminiError:
    return GeminiError(
        f"Gemini did not answer within {timeout:g} s (raise `timeout` if images are large)",
        retryable=True,
        reason="TIMEOUT",
    )


def _headers(response: Any) -> dict:
    headers = getattr(response, "headers", None)
    return {k.lower(): v for k, v in headers.items()} if headers else {}


def _status_error(status: Optional[int], body: Any, headers: Optional[dict], model: str) -> GeminiError:
    error = body.get("error", body) if isinstance(body, dict) else {}
    message = error.get("message") if isinstance(error, dict) else None
    message = message or (str(body) if body else "no details")
    status_name = error.get("status") if isinstance(error, dict) else None
    details = error.get("details", []) if isinstance(error, dict) else []
    reasons = {d.get("reason") for d in details if isinstance(d, dict) and d.get("reason")}
    retry_after = _retry_delay(details, headers or {})
    status = int(status) if status else None

    if "API_KEY_INVALID" in reasons or status == 401:
        return GeminiError(
            "Gemini rejected the API key. Check GEMINI_API_KEY (or GOOGLE_API_KEY, or "
            f"the plugin secret). Server said: {message}",
            status=status, reason="API_KEY_INVALID", fatal=True,
        )
    if status in (403, 404) and "access the File" in message:
        # a file the request names is gone (expired or deleted): that sample's
        # problem, not the run's
        return GeminiError(
            f"Gemini cannot read an uploaded file the request names (expired or deleted): {message}",
            status=status, reason="FILE_NOT_FOUND",
        )
    if status == 403:
        return GeminiError(
            f"Gemini refused access (permission denied) for model {model!r}: {message}",
            status=status, reason=status_name or "PERMISSION_DENIED", fatal=True,
        )
    if status == 404:
        return GeminiError(
            f"Gemini does not know the model {model!r} (or this endpoint does not serve "
            f"it). Check the model name. Server said: {message}",
            status=status, reason="MODEL_NOT_FOUND", fatal=True,
        )
    if status == 429 and _is_daily_quota(details):
        return GeminiError(
            "The daily Gemini quota is used up; the run stopped and can be resumed "
            f"tomorrow or with another project's key. Server said: {message}",
            status=status, reason="QUOTA_EXHAUSTED", fatal=True, retry_after=retry_after,
        )
    if status in _RETRYABLE_STATUS:
        return GeminiError(
            f"Gemini returned {status} {status_name or ''}: {message}".replace("  ", " "),
            status=status, reason=status_name, retryable=True, retry_after=retry_after,
            quota_id=_quota_id(details),
        )
    return GeminiError(
        f"Gemini refused the request ({status} {status_name or ''}): {message}".replace("  ", " "),
        status=status, reason=status_name or (sorted(reasons)[0] if reasons else None),
    )


def _retry_delay(details: list, headers: dict) -> Optional[float]:
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            delay = detail.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    return float(delay[:-1])
                except ValueError:
                    pass
    value = headers.get("retry-after")
    if value is not None:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _quota_id(details: list) -> Optional[str]:
    """The id of the first quota a ``QuotaFailure`` detail names, if any."""
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("QuotaFailure"):
            for violation in detail.get("violations", []):
                if isinstance(violation, dict) and violation.get("quotaId"):
                    return str(violation["quotaId"])
    return None


def _is_daily_quota(details: list) -> bool:
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("QuotaFailure"):
            for violation in detail.get("violations", []):
                quota_id = str(violation.get("quotaId", ""))
                if "PerDay" in quota_id:
                    return True
    return False


def scrub_secret(text: str, secret: Optional[str]) -> str:
    """Removes a secret (and anything that looks like a Google API key) from text."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return re.sub(r"AIza[0-9A-Za-z_\-]{35}", "[redacted]", text)


