"""The emulator: recognising images, answering per schema, faults, and HTTP behaviour."""

from __future__ import annotations

import base64
import binascii
import io
import json
import urllib.error
import urllib.request

import pytest
from PIL import Image

from gemini_annotate.emulator import Canned, EmulatorServer, Faults, LabelIndex, Oracle, Styled
from gemini_annotate.emulator.oracle import KnownObject, answer_form
from gemini_annotate.emulator.server import _image_digest, image_digest
from gemini_annotate.emulator.quota import Quota
from gemini_annotate.emulator.tokens import TOKENS_PER_CROP, image_size, request_input_tokens
from gemini_annotate.emulator.wire import (Base64Text, EmulatedImage, EmulatorRequest, WireError, checked_base64,
                                          read_generate_content, read_json)
from gemini_annotate.tasks import detect_schema
from gemini_annotate.config import AnnotateConfig


def _gradient_image(width=320, height=200, seed=0) -> Image.Image:
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(base).resize((width, height), Image.Resampling.BICUBIC)


def _jpeg(img: Image.Image, exif_orientation: int | None = None, quality=85) -> bytes:
    out = io.BytesIO()
    exif = Image.Exif()
    if exif_orientation:
        exif[0x0112] = exif_orientation
    img.save(out, "JPEG", quality=quality, exif=exif.tobytes() if exif_orientation else b"")
    return out.getvalue()


def _request(data: bytes, schema=None, prompt="Detect.") -> EmulatorRequest:
    return EmulatorRequest(api="generate_content", model="gemini-3-flash-preview", prompt=prompt,
                           images=(EmulatedImage("image/jpeg", data=data),), schema=schema)


@pytest.fixture
def index():
    index = LabelIndex()
    for seed in range(5):
        index.add(f"img{seed}", _gradient_image(seed=seed),
                  [KnownObject(f"thing{seed}", (0.1, 0.2, 0.3, 0.4))])
    return index


def test_oracle_recognises_resized_and_reencoded_images(index):
    smaller = _gradient_image(seed=3).resize((160, 100))
    match = index.find(_jpeg(smaller, quality=60))
    assert match is not None and match.known.key == "img3" and match.sent_size == (160, 100)


def test_oracle_does_not_recognise_an_unknown_image(index):
    assert index.find(_jpeg(_gradient_image(seed=99))) is None


def test_oracle_sees_raw_pixels_like_the_model_and_ignores_exif_orientation(index):
    rotated_pixels = _gradient_image(seed=2).transpose(Image.Transpose.ROTATE_90)
    # a file whose EXIF says "rotate back": a viewer shows img2, the raw pixels are rotated
    assert index.find(_jpeg(rotated_pixels, exif_orientation=8)) is None


def test_oracle_answers_in_the_schema_the_request_asks_for(index):
    config = AnnotateConfig(classes=["thing1", "other"])
    reply = Oracle(index).respond(_request(_jpeg(_gradient_image(seed=1)), detect_schema(config)))
    assert json.loads(reply.text) == {"boxes": [{"box_2d": [200, 100, 600, 400], "label": "thing1"}]}


def test_oracle_leaves_out_objects_whose_class_was_not_asked_for(index):
    config = AnnotateConfig(classes=["other"])
    reply = Oracle(index).respond(_request(_jpeg(_gradient_image(seed=1)), detect_schema(config)))
    assert json.loads(reply.text) == {"boxes": []}


def test_without_a_schema_the_oracle_answers_a_fenced_bare_list_like_older_models(index):
    reply = Oracle(index).respond(_request(_jpeg(_gradient_image(seed=0)), None))
    assert reply.text.startswith("```json\n[")


def test_answer_form_reads_polygon_and_png_masks_and_points():
    polygon = {"type": "object", "properties": {"boxes": {"type": "array", "items": {"$ref": "#/$defs/B"}}},
               "$defs": {"B": {"type": "object", "properties": {
                   "box_2d": {"type": "array"}, "mask": {"type": "array"}, "label": {"type": "string"}}}}}
    png = {"type": "array", "items": {"type": "object", "properties": {
        "box_2d": {"type": "array"}, "mask": {"type": "string"}, "label": {"type": "string"}}}}
    points = {"type": "object", "properties": {"points": {"type": "array", "items": {
        "type": "object", "properties": {"point": {"type": "array"}, "label": {"type": "string"}}}}}}
    assert answer_form(polygon, "").kind == "polygon" and answer_form(polygon, "").wrapper == "boxes"
    assert answer_form(png, "").kind == "png" and answer_form(png, "").wrapper is None
    assert answer_form(points, "").kind == "points"


def test_fault_mix_is_reproducible_and_close_to_its_rates():
    def fates(seed):
        scenario = Faults(Canned("{}"), rate_limit=0.2, server_error=0.05, truncate=0.02, seed=seed)
        request = EmulatorRequest(api="generate_content", model="gemini-3-flash-preview", prompt="")
        return [getattr(scenario.respond(request), "status", None) for _ in range(4000)], scenario

    first, scenario = fates(1)
    second, _ = fates(1)
    assert first == second
    assert 0.17 < first.count(429) / 4000 < 0.23
    assert 0.03 < sum(s in (500, 503) for s in first) / 4000 < 0.07
    assert scenario.injected["truncate"] > 0


@pytest.mark.parametrize("style, check", [
    ("fenced", lambda r: r.text.startswith("```json\n") and r.text.endswith("\n```")),
    ("prose", lambda r: r.text.startswith("Here are") and '{"boxes"' in r.text),
    ("bare_list", lambda r: r.text.startswith("[")),
    ("not_json", lambda r: "{" not in r.text),
    ("truncated", lambda r: r.finish_reason == "MAX_TOKENS" and not r.text.endswith("}")),
    ("empty", lambda r: r.text == ""),
])
def test_styles_make_the_messy_replies_real_models_send(style, check):
    inner = Canned('{"boxes": [{"box_2d": [1, 2, 3, 4], "label": "a"}, {"box_2d": [5, 6, 7, 8], "label": "b"}]}')
    reply = Styled(inner, style).respond(
        EmulatorRequest(api="generate_content", model="gemini-3-flash-preview", prompt=""))
    assert check(reply)


def _inline_image(text: str) -> EmulatedImage:
    body = {"contents": [{"parts": [{"inlineData": {"mimeType": "image/jpeg", "data": text}}]}]}
    return read_generate_content("gemini-2.5-flash", body, "k").images[0]


def _strict_decode(text: str) -> bytes:
    """Python's own strict decoding, the reference: either alphabet, spaces around and padding optional."""
    standard = text.strip().replace("-", "+").replace("_", "/")
    return binascii.a2b_base64(standard + "=" * (-len(standard) % 4), strict_mode=True)


def test_base64_is_read_in_both_alphabets():
    assert _inline_image("_9j_").data == _inline_image("/9j/").data == b"\xff\xd8\xff"


@pytest.mark.parametrize("text, valid", [
    ("_9j_", True), ("/9j/", True), ("YQ", True), ("YQ==", True), (" YWJj\n", True),
    ("abc$", False), ("ab cd", False), ("é", False), ("a===", False), ("YQ==YQ==", False), ("a", False),
])
def test_image_base64_is_checked_as_strictly_as_decoding_without_decoding(text, valid):
    try:
        decoded = _strict_decode(text)
    except ValueError:  # binascii.Error, or a character outside ASCII
        decoded = None
    assert (decoded is not None) == valid
    if not valid:
        with pytest.raises(WireError, match="Invalid base64 image data"):
            _inline_image(text)
        return
    image = _inline_image(text)
    assert image.inline and image._data is None  # kept encoded until its bytes are asked for
    assert image.data == decoded


def test_an_inline_image_is_digested_and_sized_without_decoding_it():
    buffer = io.BytesIO()
    Image.new("RGB", (1152, 864), (200, 30, 30)).save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    body = {"contents": [{"parts": [{"text": "find"}, {"inlineData": {
        "mimeType": "image/jpeg", "data": base64.urlsafe_b64encode(data).decode()}}]}]}
    request = read_generate_content("gemini-2.5-flash", body, "k")
    image = request.images[0]
    assert image_size(image) == (1152, 864) and _image_digest(request) == image_digest(data)
    assert image._data is None
    assert image.data == data  # decoded when asked


_IMAGE = base64.urlsafe_b64encode(bytes(range(256)) * 40).decode()  # 13.7 KB of base64, with - and _
_STANDARD = base64.b64encode(bytes(range(256)) * 40).decode()  # with + and /


@pytest.mark.parametrize("body, lifted", [
    ('{"contents": [{"parts": [{"text": "find"}, {"inlineData": {"mimeType": "image/jpeg", "data": "%s"}}]}]}'
     % _IMAGE, 1),
    ('{"parts": [{"inline_data": {"data" :\n "%s"}}, {"inlineData": {"data":"%s"}}]}' % (_IMAGE, _STANDARD), 2),
    ('{"input": [{"type": "image", "data": "%s", "mime_type": "image/png"}]}' % _IMAGE, 1),
    ('{"data": "%s"}' % _IMAGE[:4000], 0),  # short: left to the parser
    ('{"text": "%s"}' % _IMAGE, 0),  # not a "data" field
    ('{"data": "%s\\/%s"}' % (_IMAGE, _IMAGE), 0),  # an escape inside: parsed whole
    ('{"data": "%s", "data": "x"}' % _IMAGE, 0),  # the marker does not land: parsed whole
    ('{"x\\"data": "%s"}' % _IMAGE, 0),  # "data" inside a key: parsed whole
    ('{"data": "%s$"}' % _IMAGE, 0),  # not base64: left to checked_base64's message
    ('{"data": "\\u0000lifted-0", "image": {"data": "%s"}}' % _IMAGE, 1),
])
def test_long_base64_is_read_apart_with_the_same_result_as_json(body, lifted):
    value = read_json(body.encode())
    assert value == json.loads(body)

    def texts(node):
        if isinstance(node, dict):
            return [t for v in node.values() for t in texts(v)]
        if isinstance(node, list):
            return [t for v in node for t in texts(v)]
        return [node] if isinstance(node, Base64Text) else []

    found = texts(value)
    assert len(found) == lifted
    assert all(t.checked == checked_base64(str(t)) for t in found)


@pytest.mark.parametrize("body", [b'{"data": "%s"' % _IMAGE.encode(), b'{"data": "%s", }' % _IMAGE.encode(), b"[1,"])
def test_a_body_that_is_not_json_fails_as_json_does(body):
    with pytest.raises(ValueError) as expected:
        json.loads(body)
    with pytest.raises(ValueError) as raised:
        read_json(body)
    assert str(raised.value) == str(expected.value)


def test_image_digests_tell_images_apart_and_are_the_same_for_the_same_image():
    images = [_jpeg(_gradient_image(seed=seed)) for seed in range(50)]
    digests = [image_digest(data) for data in images]
    assert len(set(digests)) == 50 and digests == [image_digest(data) for data in images]
    assert image_digest(images[0] + b"\0") != digests[0]


def test_the_reply_and_the_quota_count_the_same_input_tokens():
    readable = EmulatedImage("image/jpeg", _jpeg(_gradient_image(960, 540)))
    unreadable = EmulatedImage("image/jpeg", b"not an image")
    request = EmulatorRequest(api="generate_content", model="gemini-2.5-flash", prompt="x" * 10,
                              images=(readable, unreadable))
    assert request_input_tokens(request) == 3 + 1548 + TOKENS_PER_CROP
    body = {"contents": [{"parts": [{"text": "x" * 10}, *({"inlineData": {"mimeType": "image/jpeg", "data": (
        base64.urlsafe_b64encode(i.data).decode())}} for i in (readable, unreadable))]}]}
    # room for two requests were the unreadable image free, as the quota used to count it
    quota = Quota(Canned('{"boxes": []}'), tokens_per_window=2 * (3 + 1548) + 1)
    with EmulatorServer(quota) as server:
        url = f"{server.url}/v1beta/models/gemini-2.5-flash:generateContent"
        first, second = _post(url, body), _post(url, body)
        assert first[0] == 200 and first[1]["usageMetadata"]["promptTokenCount"] == 3 + 1548 + TOKENS_PER_CROP
        assert second[0] == 429  # the quota counts what the reply reported


def _post(url, body, key="k"):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **({"x-goog-api-key": key} if key else {})})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_server_answers_errors_in_googles_format():
    with EmulatorServer(Canned("{}")) as server:
        status, body = _post(f"{server.url}/v1beta/models/gemini-3-flash-preview:generateContent",
                             {"contents": [{"parts": [{"text": "hi"}]}]}, key=None)
        assert status == 403 and body["error"]["status"] == "PERMISSION_DENIED"
        status, body = _post(f"{server.url}/v1beta/nothing", {})
        assert status == 404 and body["error"]["code"] == 404
        status, body = _post(f"{server.url}/v1beta/models/gemini-3-flash-preview:generateContent", {"contents": []})
        assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"


def test_server_listens_on_loopback_only_and_logs_no_key():
    with EmulatorServer(Canned("{}"), keep_requests=5) as server:
        assert server.url.startswith("http://127.0.0.1:")
        _post(f"{server.url}/v1beta/models/gemini-3-flash-preview:generateContent",
              {"contents": [{"parts": [{"text": "hi"}]}]}, key="secret-key-123")
        assert server.count() == 1
        assert "secret-key-123" not in repr(list(server.records))
        assert [r.prompt for r in server.last_requests] == ["hi"]
        assert "secret-key-123" not in repr(list(server.last_requests))
        assert all(r.api_key is None for r in server.last_requests)
