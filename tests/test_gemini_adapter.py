"""The SDK adapter against the emulator: both APIs, replies, errors, retries, options."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest

from gemini_annotate.emulator import Canned, DailyQuotaExhausted, EmulatorFault, Refuse, Scenario
from gemini_annotate.emulator.scenarios import EmulatorReply
from gemini_annotate.gemini import GeminiClient, resolve_api_key, scrub_secret
from gemini_annotate.messages import GeminiError
from gemini_annotate.retries import generate_with_retries
from gemini_annotate.messages import GeminiRequest, ImagePart

APIS = ["generate_content", "interactions"]
PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c49444154"
    "08d763f8cfc0000003010100c9fe92ef0000000049454e44ae426082"
)


class FailFirst(Scenario):
    """Answers ``fault`` to the first ``n`` requests, then ``text``."""

    def __init__(self, n: int, fault: EmulatorFault, text: str = '{"boxes": []}'):
        self.left, self.fault, self.text = n, fault, text
        self._lock = threading.Lock()

    def respond(self, request):
        with self._lock:
            if self.left > 0:
                self.left -= 1
                return self.fault
        return EmulatorReply(self.text)


def _request(schema=None, thinking="minimal"):
    return GeminiRequest(prompt="Detect things.", images=(ImagePart("image/png", data=PNG_1x1),),
                         response_schema=schema, thinking_level=thinking)


def _generate(api, request=None, **client_options):
    async def go():
        async with GeminiClient(model=client_options.pop("model", "gemini-3-flash-preview"), api=api,
                                **client_options) as client:
            return await client.generate(request or _request())
    return asyncio.run(go())


@pytest.mark.parametrize("api", APIS)
def test_reply_text_usage_and_finish_reason_are_read(emulator, api):
    server = emulator(Canned('{"boxes": [{"box_2d": [1, 2, 3, 4], "label": "a"}]}'))

    reply = _generate(api)

    assert reply.text == '{"boxes": [{"box_2d": [1, 2, 3, 4], "label": "a"}]}'
    assert reply.finish_reason == "STOP" and not reply.truncated
    assert reply.usage.input_tokens > 258 and reply.usage.output_tokens > 0
    assert server.last_requests[-1].api == api
    assert server.last_requests[-1].images[0].data == PNG_1x1


@pytest.mark.parametrize("api", APIS)
def test_truncated_reply_is_flagged(emulator, api):
    emulator(Canned('{"boxes": [{"box_2d": [1, 2', finish_reason="MAX_TOKENS"))
    assert _generate(api).truncated


@pytest.mark.parametrize("api", APIS)
def test_schema_and_thinking_level_reach_the_model(emulator, api):
    server = emulator(Canned("{}"))
    schema = {"type": "object", "properties": {"boxes": {"type": "array"}}}

    _generate(api, _request(schema=schema))

    sent = server.last_requests[-1]
    assert sent.schema == schema
    level = sent.generation_config.get("thinkingConfig", sent.generation_config).get("thinking_level")
    assert str(level).lower() == "minimal"


REQUEST_SHAPES = {
    "schema and thinking level": dict(response_schema={"type": "object", "properties": {"boxes": {"type": "array"}}},
                                      thinking_level="minimal"),
    "resolution and seed": dict(response_schema={"type": "object"}, media_resolution="high", seed=7),
    "an uploaded image beside": dict(extra_image=ImagePart("image/png", uri="https://example.com/files/abc")),
    "no options at all": dict(thinking_level=None),
}


@pytest.mark.parametrize("shape", REQUEST_SHAPES.values(), ids=REQUEST_SHAPES.keys())
def test_the_sdk_sends_the_body_its_own_classes_would_send(emulator, monkeypatch, shape):
    """The request classes that spare the SDK's converters a quadratic ``in`` (and its function-calling
    loop) leave the wire body as the SDK's own classes make it, byte for byte."""
    from google import genai
    from google.genai import errors, types

    from gemini_annotate.emulator import EmulatorServer

    bodies = []
    respond = EmulatorServer.respond
    monkeypatch.setattr(EmulatorServer, "respond", lambda self, method, path, headers, body, arrived=None: (
        bodies.append(body), respond(self, method, path, headers, body, arrived))[1])
    server = emulator(Canned("{}"))
    options = dict(shape)
    images = (ImagePart("image/png", data=PNG_1x1), *([options.pop("extra_image")] if "extra_image" in options else []))
    request = GeminiRequest(prompt="Detect things.", images=images, **options)
    with contextlib.suppress(GeminiError):  # the emulator cannot fetch example.com: the body is what counts
        _generate("generate_content", request, model="gemini-2.5-flash")

    async def with_the_sdks_classes():
        client = GeminiClient(model="gemini-2.5-flash")
        reference = genai.Client(api_key="emulator", http_options=types.HttpOptions(base_url=server.url))
        parts = [types.Part.from_bytes(data=image.data, mime_type=image.mime_type) if image.data
                 else types.Part.from_uri(file_uri=image.uri, mime_type=image.mime_type) for image in images]
        built = client._build_generation_config(request)
        config = built and types.GenerateContentConfig(**built.model_dump(exclude={"automatic_function_calling"}))
        with contextlib.suppress(errors.ClientError):
            await reference.aio.models.generate_content(
                model="gemini-2.5-flash", config=config,
                contents=types.Content(role="user", parts=[types.Part.from_text(text=request.prompt), *parts]))
        await client.aclose()

    monkeypatch.setenv("GEMINI_API_KEY", "emulator")
    asyncio.run(with_the_sdks_classes())
    assert len(bodies) == 2 and bodies[0] == bodies[1]


@pytest.mark.parametrize("item", ["response_json_schema", "seed", "temperature", ("seed", 7), ("seed", 8), 7])
def test_request_classes_answer_membership_as_pydantic_does(item):
    from google.genai import types

    from gemini_annotate.gemini import _GenerateContentConfig

    ours, theirs = _GenerateContentConfig(seed=7), types.GenerateContentConfig(seed=7)
    assert (item in ours) == (item in theirs)
    assert isinstance(ours, types.GenerateContentConfig)


def test_older_models_get_a_thinking_budget_instead_of_a_level(emulator):
    server = emulator(Canned("{}"))
    _generate("generate_content", model="gemini-2.5-flash")
    assert server.last_requests[-1].generation_config["thinkingConfig"] == {"thinking_budget": 0}


@pytest.mark.parametrize("api", APIS)
def test_rate_limit_is_retryable_with_the_servers_delay(emulator, api):
    emulator(Refuse())  # replaced below; keeps the fixture's env var
    emulator(FailFirst(10, EmulatorFault(429, "Resource has been exhausted", details=(
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"},))))

    with pytest.raises(GeminiError) as caught:
        _generate(api)

    assert caught.value.retryable and not caught.value.fatal
    assert caught.value.status == 429 and caught.value.retry_after == 7.0


@pytest.mark.parametrize("api", APIS)
def test_the_sdk_does_not_retry_behind_our_back(emulator, api):
    server = emulator(FailFirst(10, EmulatorFault(503, "The model is overloaded.")))

    with pytest.raises(GeminiError) as caught:
        _generate(api)

    assert caught.value.retryable
    assert server.count() == 1


@pytest.mark.parametrize("api", APIS)
def test_wrong_key_is_fatal_and_never_echoed(emulator, api):
    emulator(Canned("{}"), api_keys={"right"})
    wrong = "AIzaSyWRONG-000000000000000000000000000"

    with pytest.raises(GeminiError) as caught:
        _generate(api, api_key=wrong)

    error = caught.value
    assert error.fatal and error.reason == "API_KEY_INVALID"
    assert "API key" in str(error) and wrong not in str(error) and wrong not in repr(error.args)


@pytest.mark.parametrize("api", APIS)
def test_unknown_model_is_fatal(emulator, api):
    emulator(Canned("{}"), models={"gemini-3-flash-preview"})
    with pytest.raises(GeminiError, match="does not know the model 'gemini-0'") as caught:
        _generate(api, model="gemini-0")
    assert caught.value.fatal


@pytest.mark.parametrize("api", APIS)
def test_daily_quota_is_fatal_not_retried(emulator, api):
    emulator(DailyQuotaExhausted())
    with pytest.raises(GeminiError, match="daily Gemini quota") as caught:
        _generate(api)
    assert caught.value.fatal and caught.value.reason == "QUOTA_EXHAUSTED"


@pytest.mark.parametrize("api", APIS)
def test_invalid_request_is_neither_retried_nor_fatal(emulator, api):
    emulator(Refuse("Invalid value at 'contents'"))
    with pytest.raises(GeminiError, match="refused the request") as caught:
        _generate(api)
    assert not caught.value.retryable and not caught.value.fatal


@pytest.mark.parametrize("api", APIS)
def test_slow_reply_times_out_as_retryable(emulator, api):
    emulator(Canned("{}"), latency=5.0)
    started = time.monotonic()
    with pytest.raises(GeminiError, match="did not answer within 0.5 s") as caught:
        _generate(api, timeout=0.5)
    assert caught.value.retryable and time.monotonic() - started < 4


@pytest.mark.parametrize("api", APIS)
def test_unreachable_endpoint_is_retryable(api):
    # the autouse fixture points the SDK at a closed port
    with pytest.raises(GeminiError) as caught:
        _generate(api)
    assert caught.value.retryable


def test_retries_wait_at_least_the_servers_retry_delay(emulator):
    emulator(FailFirst(1, EmulatorFault(429, "slow down", details=(
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"},))))
    retries = []

    async def go():
        async with GeminiClient(model="gemini-3-flash-preview") as client:
            async def send():
                return await client.generate(_request())
            started = time.monotonic()
            reply = await generate_with_retries(send, max_attempts=3, initial_delay=0.01,
                                                on_retry=lambda e, n: retries.append(e.status))
            return reply, time.monotonic() - started

    reply, elapsed = asyncio.run(go())
    assert reply.text == '{"boxes": []}'
    assert retries == [429] and elapsed >= 1.5


def test_retries_stop_at_the_attempt_cap(emulator):
    server = emulator(FailFirst(100, EmulatorFault(500, "internal")))

    async def go():
        async with GeminiClient(model="gemini-3-flash-preview") as client:
            async def send():
                return await client.generate(_request())
            await generate_with_retries(send, max_attempts=3, initial_delay=0.01, max_delay=0.02)

    with pytest.raises(GeminiError):
        asyncio.run(go())
    assert server.count() == 3


def test_api_key_comes_from_explicit_then_gemini_then_google_variable(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "from-gemini")
    monkeypatch.setenv("GOOGLE_API_KEY", "from-google")
    assert resolve_api_key("explicit") == "explicit"
    assert resolve_api_key() == "from-gemini"
    monkeypatch.delenv("GEMINI_API_KEY")
    assert resolve_api_key() == "from-google"


def test_scrub_secret_removes_the_key_and_anything_shaped_like_one():
    text = "key sk-123 and AIza" + "S" * 35 + " leaked"
    assert scrub_secret(text, "sk-123") == "key [redacted] and [redacted] leaked"
