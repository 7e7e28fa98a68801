"""Gemini's wire format, as google-genai 3.6 speaks it: request bodies in, reply bodies out.

Requests of both APIs are read into one :class:`EmulatorRequest`; replies and
errors are written in each API's own JSON. Field names are accepted in both
camelCase and snake_case, as the SDK mixes them (``inlineData.mime_type``).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any, Optional

GENERATE_CONTENT = "generate_content"
INTERACTIONS = "interactions"


class EmulatedImage:
    """An image part of a request: its bytes, or a URI the emulator cannot fetch.

    An inline image keeps the base64 it came in (checked, URL-safe) and decodes
    it the first time :attr:`data` is read: a canned reply never needs the
    pixels, and decoding 350 KB costs a millisecond of the emulator's CPU, which
    a benchmark's client shares the machine with. Its digest and header are
    read without decoding the whole image.
    """

    __slots__ = ("mime_type", "uri", "_data", "_encoded", "_digest")

    def __init__(self, mime_type: str, data: Optional[bytes] = None, uri: Optional[str] = None, *,
                 encoded: Optional[bytes] = None):
        self.mime_type = mime_type
        self.uri = uri
        self._data = data
        self._encoded = encoded
        self._digest: Optional[str] = None

    @property
    def inline(self) -> bool:
        """Whether the image's bytes are here (sent inline, or resolved from an upload)."""
        return self._data is not None or self._encoded is not None

    @property
    def data(self) -> Optional[bytes]:
        """The image's bytes (``None`` for a URI not resolved)."""
        if self._data is None and self._encoded is not None:
            self._data = base64.urlsafe_b64decode(self._encoded)
        return self._data

    @property
    def encoded(self) -> Optional[bytes]:
        """The image's URL-safe, padded base64."""
        if self._encoded is None and self._data is not None:
            self._encoded = base64.urlsafe_b64encode(self._data)
        return self._encoded

    @property
    def digest(self) -> Optional[str]:
        """Which image this is (:func:`encoded_digest` of its base64); ``None`` for a URI not resolved."""
        if self._digest is None and self.inline:
            self._digest = encoded_digest(self.encoded)
        return self._digest

    def header(self, size: int = 16384) -> Optional[bytes]:
        """The first ``size`` bytes of the image or so, enough to read its format and size."""
        if self._data is not None or self._encoded is None:
            return self._data
        return base64.urlsafe_b64decode(self._encoded[:4 * (size // 3)])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EmulatedImage) and (self.mime_type, self.uri, self.data) == (
            other.mime_type, other.uri, other.data)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        size = None if not self.inline else len(self.encoded) * 3 // 4
        return f"EmulatedImage(mime_type={self.mime_type!r}, uri={self.uri!r}, bytes~{size})"


def encoded_digest(encoded: bytes) -> str:
    """A 64-bit digest of an image's URL-safe base64: the CRC-32s of its two halves.

    It tells the images of a test or benchmark apart (two of a million images
    share one with odds of 1 in 36 million) at a fifth of SHA-1's cost; the
    emulator digests every image it receives, on the cores its client runs on.
    """
    view, middle = memoryview(encoded), len(encoded) // 2
    return f"{zlib.crc32(view[:middle]):08x}{zlib.crc32(view[middle:]):08x}"


@dataclass(frozen=True)
class EmulatorRequest:
    """A model request, whichever API it came through.

    Attributes:
        api: ``generate_content`` or ``interactions``.
        model: the model name (without ``models/``).
        prompt: the text parts, joined by newlines.
        images: the image parts, in order.
        schema: the structured-output JSON schema, if any.
        generation_config: the request's generation options as sent.
        api_key: the ``x-goog-api-key`` header (held in memory only, never
            shown in the request's repr).
    """

    api: str
    model: str
    prompt: str
    images: tuple[EmulatedImage, ...] = ()
    schema: Optional[dict] = None
    generation_config: dict = field(default_factory=dict)
    api_key: Optional[str] = field(default=None, repr=False)

    @property
    def image_data(self) -> Optional[bytes]:
        """The bytes of the first image the request holds (inline or resolved), if any."""
        image = self.first_image
        return None if image is None else image.data

    @property
    def first_image(self) -> Optional[EmulatedImage]:
        """The first image the request holds (inline or resolved), if any."""
        return next((image for image in self.images if image.inline), None)


class WireError(ValueError):
    """A request body the real API would reject as malformed (HTTP 400)."""


def _get(d: dict, *names: str, default: Any = None) -> Any:
    for name in names:
        if name in d:
            return d[name]
    return default


_STANDARD_TO_URL_SAFE = bytes.maketrans(b"+/", b"-_")
_URL_SAFE_ALPHABET_AND_PADDING = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="


class Base64Text(str):
    """A JSON string :func:`read_json` found to be base64, with its :func:`checked_base64` bytes."""

    __slots__ = ("checked",)
    checked: bytes


def checked_base64(data: str) -> bytes:
    """An image part's base64, in either alphabet, checked as strictly as decoding would, without
    decoding it; returned URL-safe and padded (what :class:`EmulatedImage` keeps)."""
    if isinstance(data, Base64Text):
        return data.checked
    try:
        raw = data.strip().encode("ascii")
    except UnicodeEncodeError:
        raise WireError("Invalid base64 image data: only ASCII characters are allowed") from None
    return _checked_base64_bytes(raw)


def _checked_base64_bytes(raw: bytes) -> bytes:
    if b"+" in raw or b"/" in raw:
        raw = raw.translate(_STANDARD_TO_URL_SAFE)
    raw += b"=" * (-len(raw) % 4)
    padding = raw.find(b"=")
    if padding != -1 and padding < len(raw) - 2:
        raise WireError("Invalid base64 image data: padding before the end, or a lone character at the end")
    if raw.translate(None, _URL_SAFE_ALPHABET_AND_PADDING):
        raise WireError("Invalid base64 image data: only base64 characters are allowed")
    return raw


_LONG_STRING = 4096
"""Shorter strings are left to the JSON parser: lifting them out would save nothing."""
_DATA_KEY = b'"data"'
_TO_STRING = re.compile(rb'\s*:\s*"')


def read_json(body: bytes) -> Any:
    """``json.loads(body)``, with the long base64 strings of ``"data"`` fields (images) read apart.

    Python's JSON parser reads a string one character at a time: half a
    millisecond for a 350 KB image, more than the rest of a request costs the
    emulator. A ``"data"`` string found with ``bytes.find`` whose characters
    are all base64 (so it holds no escapes) is lifted out of the body and
    checked as :func:`checked_base64` would check it; the rest is parsed, and
    each string put back, as a :class:`Base64Text`, where its marker (random,
    so no body holds it) landed. The result equals ``json.loads(body)``; if a
    marker does not land as a ``"data"`` value, the body is parsed whole.

    Raises:
        ValueError: ``body`` is not JSON (as ``json.loads``).
    """
    kept: list[bytes] = []
    markers: dict[str, Base64Text] = {}
    tag = f"\x00lifted-{os.urandom(8).hex()}-"
    position = 0
    key = body.find(_DATA_KEY)
    while key != -1:
        opening = _TO_STRING.match(body, key + len(_DATA_KEY))  # "data": "
        start = opening.end() if opening else key + 1
        end = body.find(b'"', start) if opening else -1
        if end - start >= _LONG_STRING:
            data = body[start:end]
            try:
                checked = _checked_base64_bytes(data)
            except WireError:
                checked = None
            if checked is not None:
                text = Base64Text(data, "ascii")
                text.checked = checked
                marker = f"{tag}{len(markers)}"
                markers[marker] = text
                kept += [body[position:start], json.dumps(marker)[1:-1].encode()]
                position = end
        key = body.find(_DATA_KEY, max(end, key + 1))
    if not markers:
        return json.loads(body)

    def put_back(obj: dict) -> dict:
        value = obj.get("data")
        if isinstance(value, str) and value in markers:
            obj["data"] = markers.pop(value)
        return obj

    try:
        value = json.loads(b"".join(kept) + body[position:], object_hook=put_back)
    except ValueError:
        return json.loads(body)  # raises as json.loads does
    return json.loads(body) if markers else value


def read_generate_content(model: str, body: dict, api_key: Optional[str]) -> EmulatorRequest:
    """Reads a ``models/{model}:generateContent`` body."""
    contents = body.get("contents")
    if isinstance(contents, dict):
        contents = [contents]
    if not isinstance(contents, list) or not contents:
        raise WireError("* GenerateContentRequest.contents: contents is not specified")
    texts, images = [], []
    for content in contents:
        for part in content.get("parts", []) if isinstance(content, dict) else []:
            if "text" in part:
                texts.append(str(part["text"]))
            inline = _get(part, "inlineData", "inline_data")
            if inline:
                images.append(EmulatedImage(
                    mime_type=_get(inline, "mimeType", "mime_type", default=""),
                    encoded=checked_base64(inline.get("data", "")),
                ))
            file_data = _get(part, "fileData", "file_data")
            if file_data:
                images.append(EmulatedImage(
                    mime_type=_get(file_data, "mimeType", "mime_type", default=""),
                    uri=_get(file_data, "fileUri", "file_uri"),
                ))
    config = _get(body, "generationConfig", "generation_config", default={}) or {}
    schema = _get(config, "responseJsonSchema", "response_json_schema", "responseSchema", "response_schema")
    return EmulatorRequest(
        api=GENERATE_CONTENT,
        model=model,
        prompt="\n".join(texts),
        images=tuple(images),
        schema=schema,
        generation_config=config,
        api_key=api_key,
    )


def read_interaction(body: dict, api_key: Optional[str]) -> EmulatorRequest:
    """Reads an ``interactions`` create body."""
    model = body.get("model")
    if not model:
        raise WireError("model is required")
    raw_input = body.get("input")
    parts: list = []
    if isinstance(raw_input, str):
        parts = [{"type": "text", "text": raw_input}]
    elif isinstance(raw_input, list):
        for entry in raw_input:
            if isinstance(entry, dict) and isinstance(entry.get("content"), list):
                parts.extend(entry["content"])
            elif isinstance(entry, dict) and isinstance(entry.get("content"), str):
                parts.append({"type": "text", "text": entry["content"]})
            else:
                parts.append(entry)
    else:
        raise WireError("input is required")
    texts, images = [], []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        elif part.get("type") == "image":
            if part.get("data"):
                images.append(EmulatedImage(part.get("mime_type", ""), encoded=checked_base64(part["data"])))
            elif part.get("uri"):
                images.append(EmulatedImage(part.get("mime_type", ""), uri=part["uri"]))
    response_format = body.get("response_format") or {}
    return EmulatorRequest(
        api=INTERACTIONS,
        model=str(model).rsplit("/", 1)[-1],
        prompt="\n".join(texts),
        images=tuple(images),
        schema=response_format.get("schema") if isinstance(response_format, dict) else None,
        generation_config=body.get("generation_config") or {},
        api_key=api_key,
    )


def timestamp(moment: datetime.datetime) -> str:
    """A UTC time as the API writes it (``2025-01-31T12:00:00.000000Z``)."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def generate_content_body(text: str, finish_reason: str, model: str,
                          input_tokens: int, output_tokens: int) -> dict:
    """A ``GenerateContentResponse`` body."""
    candidate: dict[str, Any] = {"finishReason": finish_reason, "index": 0}
    if text or finish_reason in ("STOP", "MAX_TOKENS"):
        candidate["content"] = {"role": "model", "parts": [{"text": text}]}
    return {
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": input_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": input_tokens + output_tokens,
        },
        "modelVersion": model,
        "responseId": uuid.uuid4().hex[:20],
    }


_INTERACTION_STATUS = {"STOP": "completed", "MAX_TOKENS": "incomplete"}


def interaction_body(text: str, finish_reason: str, model: str,
                     input_tokens: int, output_tokens: int) -> dict:
    """An ``Interaction`` body."""
    return {
        "id": f"v1_{uuid.uuid4().hex}",
        "status": _INTERACTION_STATUS.get(finish_reason, "failed"),
        "model": model,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "steps": [{"type": "model_output", "content": [{"type": "text", "text": text}]}],
        "usage": {
            "total_input_tokens": input_tokens,
            "total_output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
    }


_STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
    404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED", 429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}


def error_body(status: int, message: str, details: Optional[list] = None) -> dict:
    """Google's error envelope: ``{"error": {"code", "message", "status", "details"}}``."""
    error: dict[str, Any] = {"code": status, "message": message,
                             "status": _STATUS_NAMES.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return {"error": error}


def retry_info(seconds: float) -> dict:
    """The ``RetryInfo`` detail a real 429 carries."""
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{seconds:g}s"}


def quota_failure(quota_id: str) -> dict:
    """The ``QuotaFailure`` detail naming the exhausted quota."""
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                        "quotaId": quota_id}],
    }


def api_key_invalid() -> dict:
    """The ``ErrorInfo`` detail of a rejected key."""
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
