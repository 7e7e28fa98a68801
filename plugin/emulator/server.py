"""A local HTTP server that answers like Gemini, for the real google-genai SDK.

Point the SDK at it with ``GOOGLE_GEMINI_BASE_URL`` (or ``base_url``) and it
serves ``models/{model}:generateContent`` (Gemini API and Vertex AI paths) and
``interactions`` in their real wire format, answering from a
:class:`~.scenarios.Scenario`; the File API (resumable uploads, get, delete,
download) and the Batch API (``batchGenerateContent``, ``batches/ID``) are
served too. It listens on 127.0.0.1 only, keeps a bounded log of what it
received (never the API key) and stops by itself when its owner stops it.
Usage metadata counts image tokens by Gemini's documented rule
(:mod:`.tokens`), not by the client's estimate it is meant to check.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Optional, Union

from .batches import BatchStore
from .files import FILE_PATH, FileAccessError, FileStore
from .scenarios import EmulatorFault, EmulatorReply, Scenario, bad_key_fault
from .tokens import request_input_tokens
from .transport import Answer, HttpServer
from .wire import (
    EmulatorRequest,
    WireError,
    encoded_digest,
    error_body,
    generate_content_body,
    interaction_body,
    read_generate_content,
    read_interaction,
    read_json,
)

_GENERATE = re.compile(r"/models/(?P<model>[^/:]+):generateContent$")
_BATCH_CREATE = re.compile(r"/models/(?P<model>[^/:]+):batchGenerateContent$")
_BATCH = re.compile(r"/batches/(?P<id>[A-Za-z0-9_-]+)$")
_INTERACTIONS = re.compile(r"/interactions$")
_UPLOAD = re.compile(r"^/upload/[^/]+/files$")
_DOWNLOAD = re.compile(r"/files/(?P<id>[A-Za-z0-9_-]+):download$")


@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator received (the key itself is never kept)."""

    time: float
    path: str
    api: Optional[str]
    model: Optional[str]
    images: int
    status: int
    had_key: bool
    input_tokens: int = 0
    output_tokens: int = 0
    image_digest: Optional[str] = None
    """:func:`image_digest` of the first inline image: which image was sent, to
    count requests per sample."""


class EmulatorServer:
    """The Gemini emulator.

    Args:
        scenario: how to answer.
        host: the address to listen on (loopback by default).
        port: the port; 0 picks a free one.
        latency: seconds every answer takes (a number, or a callable returning one).
        api_keys: keys accepted; others get Google's ``API_KEY_INVALID`` error.
            ``None`` accepts any key.
        models: model names served; others get 404. ``None`` serves any
            ``gemini-*`` name.
        keep_requests: how many full requests (images included, the key left
            out) to keep in :attr:`last_requests`, for tests that inspect what
            was sent.
        batch_timing: seconds a batch job stays ``PENDING``, then ``RUNNING``.

    Attributes:
        files: the File API's files (``files.uploads`` counts uploads).
        batches: the Batch API's jobs (``batches.created`` counts them).

    Example::

        with EmulatorServer(Canned('{"boxes": []}')) as emulator:
            os.environ["GOOGLE_GEMINI_BASE_URL"] = emulator.url
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: Union[float, Callable[[], float]] = 0.0,
        api_keys: Optional[Iterable[str]] = None,
        models: Optional[Iterable[str]] = None,
        keep_requests: int = 0,
        batch_timing: tuple[float, float] = (0.5, 1.0),
    ):
        self.scenario = scenario
        self.files = FileStore()
        self.batches = BatchStore(*batch_timing)
        self.latency = latency
        self.api_keys = frozenset(api_keys) if api_keys is not None else None
        self.models = frozenset(models) if models is not None else None
        self.records: deque[RequestRecord] = deque(maxlen=100_000)
        self.last_requests: deque[EmulatorRequest] = deque(maxlen=max(keep_requests, 0))
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self._http = HttpServer(host, port, self.respond, waiting=self._waiting)
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return self._http.server_address[1]

    def start(self) -> "EmulatorServer":
        """Starts serving in a background thread."""
        self._thread = threading.Thread(target=self._http.serve_forever, name="gemini-emulator", daemon=True)
        self._thread.start()
        self._http.wait_until_serving()  # a stop right after start must find it serving
        return self

    def serve_forever(self) -> None:
        """Serves in the calling thread until interrupted (the CLI's mode)."""
        try:
            self._http.serve_forever()
        finally:
            self._http.server_close()

    def stop(self) -> None:
        """Stops serving; slow answers in progress end at once."""
        self._http.shutdown()
        self._http.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> "EmulatorServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def count(self, api: Optional[str] = None) -> int:
        """Requests received (of one API, if given)."""
        with self._lock:
            return sum(1 for r in self.records if api is None or r.api == api)

    def requests_per_image(self) -> dict[str, int]:
        """Requests received per image (by :attr:`RequestRecord.image_digest`)."""
        with self._lock:
            records = list(self.records)
        counts: dict[str, int] = {}
        for r in records:
            if r.image_digest:
                counts[r.image_digest] = counts.get(r.image_digest, 0) + 1
        return counts

    @property
    def in_flight(self) -> int:
        """Requests being answered right now."""
        with self._lock:
            return self._in_flight

    # request handling (called from the transport's event loop)

    def respond(self, method: str, path: str, headers, body: bytes, arrived: Optional[float] = None) -> Answer:
        """Answers one HTTP request, and says when the answer is due: ``arrived``
        (``time.monotonic()``) plus the latency and the scenario's delay."""
        arrived = time.monotonic() if arrived is None else arrived
        due = arrived
        path, _, query = path.partition("?")
        key = _caller_identity(headers)
        request: Optional[EmulatorRequest] = None
        status, payload, extra = 404, error_body(404, f"Method not found: {method} {path}"), {}
        usage = (0, 0)
        try:
            if method == "POST" and (m := _GENERATE.search(path)):
                request = read_generate_content(m["model"], self._json(body), key)
            elif method == "POST" and _INTERACTIONS.search(path):
                request = read_interaction(self._json(body), key)
            elif method == "POST" and _UPLOAD.match(path) and "upload_id=" in query:
                # the upload URL itself authorises the upload, as Google's does
                status, payload, extra = self._upload(headers, query, body)
            elif not key:
                status, payload = self._unregistered()
            elif method == "POST" and (m := _BATCH_CREATE.search(path)):
                status, payload = self._create_batch(m["model"], self._json(body), key)
            elif method == "GET" and (m := _BATCH.search(path)):
                status, payload = self._batch(m["id"])
            elif method == "POST" and _UPLOAD.match(path):
                status, payload, extra = self._upload(headers, query, body)
            elif method == "GET" and (m := _DOWNLOAD.search(path)):
                status, payload = 200, self.files.get(m["id"]).data
            elif method == "GET" and (m := FILE_PATH.search(path)):
                status, payload = 200, self.files.record(self.files.get(m["id"]), self.url)
            elif method == "DELETE" and (m := FILE_PATH.search(path)):
                self.files.delete(m["id"])
                status, payload = 200, {}
            if request is not None:
                status, payload, extra, due = self._answer(request, arrived)
                usage = self._usage(payload)
        except WireError as e:
            status, payload = 400, error_body(400, str(e))
        except FileAccessError as e:
            status, payload = e.status, error_body(e.status, e.message)
        record = RequestRecord(
            time.time(), path, request.api if request else None, request.model if request else None,
            len(request.images) if request else 0, status, bool(key), *usage, _image_digest(request),
        )
        with self._lock:
            self.records.append(record)
            if request is not None and self.last_requests.maxlen:
                self.last_requests.append(replace(request, api_key=None))
        return Answer(status, payload, extra, due)

    def reported_tokens(self) -> tuple[int, int]:
        """Input and output tokens the emulator reported in its successful replies."""
        with self._lock:
            return (sum(r.input_tokens for r in self.records), sum(r.output_tokens for r in self.records))

    @staticmethod
    def _usage(payload: Union[dict, bytes]) -> tuple[int, int]:
        if not isinstance(payload, dict):
            return 0, 0
        usage = payload.get("usageMetadata") or payload.get("usage") or {}
        return (int(usage.get("promptTokenCount", usage.get("total_input_tokens", 0))),
                int(usage.get("candidatesTokenCount", usage.get("total_output_tokens", 0))))

    @staticmethod
    def _unregistered() -> tuple[int, dict]:
        fault = _unregistered_fault()
        return fault.status, error_body(fault.status, fault.message)

    # File API

    def _upload(self, headers, query: str, body: bytes) -> tuple[int, dict, dict]:
        command = (headers.get("x-goog-upload-command") or "").replace(" ", "").lower()
        if command == "start":
            info = self._json(body).get("file", {})
            mime_type = (headers.get("x-goog-upload-header-content-type")
                         or info.get("mimeType") or info.get("mime_type") or "application/octet-stream")
            upload_id = self.files.start_upload(mime_type, info.get("displayName") or info.get("display_name"))
            url = f"{self.url}/upload/v1beta/files?upload_id={upload_id}&upload_protocol=resumable"
            return 200, {}, {"x-goog-upload-url": url, "x-goog-upload-status": "active"}
        if command == "upload,finalize":
            upload_id = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("upload_id", "")
            file = self.files.finish_upload(upload_id, body)
            return 200, {"file": self.files.record(file, self.url)}, {"x-goog-upload-status": "final"}
        raise WireError(f"unsupported upload command {command!r}")

    # Batch API

    def _create_batch(self, model: str, body: dict, key: str) -> tuple[int, dict]:
        batch = body.get("batch", body)
        source = batch.get("inputConfig") or batch.get("input_config") or {}
        file_name = source.get("fileName") or source.get("file_name")
        requests: list[tuple[dict, EmulatorRequest]] = []
        if file_name:
            lines = self.files.get(str(file_name).rsplit("/", 1)[-1]).data.decode().splitlines()
            for line in filter(str.strip, lines):
                entry = json.loads(line)
                requests.append(({"key": entry.get("key", "")},
                                 read_generate_content(model, entry.get("request", {}), key)))
        else:
            inlined = (source.get("requests") or {}).get("requests") or []
            for entry in inlined:
                requests.append((entry.get("metadata") or {},
                                 read_generate_content(model, entry.get("request", {}), key)))
        if not requests:
            raise WireError("The batch has no requests.")
        job = self.batches.create(model, batch.get("displayName") or batch.get("display_name") or "",
                                  requests, from_file=bool(file_name))
        return 200, self.batches.body(job, self._answer_in_batch, self._write_results)

    def _batch(self, job_id: str) -> tuple[int, dict]:
        job = self.batches.get(job_id)
        if job is None:
            return 404, error_body(404, f"Batch batches/{job_id} not found.")
        return 200, self.batches.body(job, self._answer_in_batch, self._write_results)

    def _answer_in_batch(self, request: EmulatorRequest) -> tuple[int, dict]:
        try:
            status, payload, _, _ = self._answer(request, batch=True)
        except FileAccessError as e:
            return e.status, error_body(e.status, e.message)
        return status, payload

    def _write_results(self, data: bytes) -> str:
        return self.files.add(data, "application/jsonl", "batch results", generated=True).name

    @staticmethod
    def _json(body: bytes) -> dict:
        try:
            value = read_json(body or b"{}")
        except ValueError:
            raise WireError("Invalid JSON payload received.") from None
        if not isinstance(value, dict):
            raise WireError("Invalid JSON payload received: expected an object.")
        return value

    def _answer(self, request: EmulatorRequest, arrived: Optional[float] = None, batch: bool = False) -> Answer:
        fault = self._check_access(request)
        if fault is None:
            request = replace(request, images=tuple(self.files.resolve(i) for i in request.images))
        response = fault or self.scenario.respond(request)
        # the latency runs from the request's arrival: reading it is the emulator's own
        # work, and must not add to the latency a client sees; a batch's answers are
        # ready when its job succeeds
        arrived = time.monotonic() if arrived is None else arrived
        due = arrived if batch else arrived + self._latency() + response.delay
        if isinstance(response, EmulatorFault):
            headers = {}
            if response.retry_after_header is not None:
                headers["Retry-After"] = f"{response.retry_after_header:g}"
            return Answer(response.status, error_body(response.status, response.message, list(response.details)),
                          headers, due)
        return Answer(200, self._reply_body(request, response), {}, due)

    def _check_access(self, request: EmulatorRequest) -> Optional[EmulatorFault]:
        if not request.api_key:
            return _unregistered_fault()
        if self.api_keys is not None and request.api_key not in self.api_keys:
            return bad_key_fault()
        known = request.model.startswith("gemini-") if self.models is None else request.model in self.models
        if not known:
            return EmulatorFault(404, f"models/{request.model} is not found for API version v1beta, "
                                      "or is not supported for generateContent.")
        return None

    def _reply_body(self, request: EmulatorRequest, reply: EmulatorReply) -> dict:
        input_tokens = request_input_tokens(request)
        output_tokens = math.ceil(len(reply.text) / 4)
        build = interaction_body if request.api == "interactions" else generate_content_body
        return build(reply.text, reply.finish_reason, request.model, input_tokens, output_tokens)

    def _latency(self) -> float:
        return float(self.latency() if callable(self.latency) else self.latency)

    def _waiting(self, change: int) -> None:
        """Counts the answers waiting for their latency (the transport's callback)."""
        with self._lock:
            self._in_flight += change
            self.max_in_flight = max(self.max_in_flight, self._in_flight)


def _caller_identity(headers) -> Optional[str]:
    """The API key, or a Vertex AI bearer token (held in memory only)."""
    key = headers.get("x-goog-api-key")
    if key:
        return key
    authorization = headers.get("authorization") or ""
    return authorization[7:] if authorization.lower().startswith("bearer ") else None


def _unregistered_fault() -> EmulatorFault:
    return EmulatorFault(403, "Method doesn't allow unregistered callers (callers without "
                              "established identity). Please use API Key or other form of API consumer identity.")


def image_digest(data: bytes) -> str:
    """The digest the request log keeps for an image's bytes (:func:`~.wire.encoded_digest` of
    their URL-safe base64, which the emulator digests as it arrives, without decoding the image)."""
    return encoded_digest(base64.urlsafe_b64encode(data))


def _image_digest(request: Optional[EmulatorRequest]) -> Optional[str]:
    image = request.first_image if request else None
    return image.digest if image is not None else None
