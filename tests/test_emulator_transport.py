"""The emulator's HTTP/1.1 transport: connections kept alive, answers at their due time, strict framing."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest

from gemini_annotate.emulator import Canned, EmulatorServer

GENERATE = "/v1beta/models/gemini-3-flash-preview:generateContent"
BODY = json.dumps({"contents": [{"parts": [{"text": "hi"}]}]}).encode()


def _post(connection: http.client.HTTPConnection, headers: dict | None = None) -> tuple[int, dict, dict]:
    connection.request("POST", GENERATE, body=BODY, headers={"x-goog-api-key": "k", **(headers or {})})
    response = connection.getresponse()
    return response.status, json.loads(response.read()), dict(response.getheaders())


def _raw(server: EmulatorServer, data: bytes) -> bytes:
    """What the server answers to ``data`` sent as is, until it closes the connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_a_connection_is_kept_alive_across_requests():
    with EmulatorServer(Canned('{"boxes": []}')) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        answers = [_post(connection) for _ in range(3)]
        sock = connection.sock
        assert [status for status, _, _ in answers] == [200, 200, 200]
        assert sock is not None and connection.sock is sock  # the same connection all along
        assert answers[0][1]["candidates"][0]["content"]["parts"][0]["text"] == '{"boxes": []}'
        assert answers[0][2]["Content-Type"] == "application/json; charset=UTF-8"
        connection.close()


def test_connection_close_is_honoured():
    with EmulatorServer(Canned("{}")) as server:
        request = (f"POST {GENERATE} HTTP/1.1\r\nHost: x\r\nx-goog-api-key: k\r\nConnection: close\r\n"
                   f"Content-Length: {len(BODY)}\r\n\r\n").encode() + BODY
        answer = _raw(server, request)  # returns only because the server closed the connection
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nConnection: close\r\n" in answer


def test_requests_sent_together_are_answered_in_order_each_after_the_latency():
    with EmulatorServer(Canned("{}"), latency=0.2) as server:
        one = (f"POST {GENERATE} HTTP/1.1\r\nHost: x\r\nx-goog-api-key: k\r\n"
               f"Content-Length: {len(BODY)}\r\n\r\n").encode() + BODY
        closing = one.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
        started = time.monotonic()
        answer = _raw(server, one + closing)
        assert answer.count(b"HTTP/1.1 200 OK") == 2 and time.monotonic() - started >= 0.2
        assert server.count() == 2


@pytest.mark.parametrize("request_bytes, status", [
    (b"NONSENSE\r\n\r\n", 400),
    (b"POST / SPDY/3\r\nHost: x\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: -4\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: many\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n", 411),
    (b"POST / HTTP/1.1\r\nX-Long: " + b"a" * 70_000, 431),
], ids=["request line", "protocol", "header line", "negative length", "length not a number", "chunked",
        "head too large"])
def test_malformed_requests_are_refused_and_the_connection_closed(request_bytes, status):
    with EmulatorServer(Canned("{}")) as server:
        answer = _raw(server, request_bytes)
        assert answer.startswith(f"HTTP/1.1 {status} ".encode())
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == status
        assert server.count() == 0


def test_stopping_sends_waiting_answers_at_once():
    server = EmulatorServer(Canned("{}"), latency=30).start()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    answers = []
    client = threading.Thread(target=lambda: answers.append(_post(connection)))
    client.start()
    deadline = time.monotonic() + 5
    while server.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.in_flight == 1
    started = time.monotonic()
    server.stop()
    client.join(timeout=5)
    assert answers and answers[0][0] == 200 and time.monotonic() - started < 5


def test_an_answer_the_client_stopped_waiting_for_is_dropped():
    with EmulatorServer(Canned("{}"), latency=30) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=0.3)
        with pytest.raises(socket.timeout):
            _post(connection)
        connection.close()
        deadline = time.monotonic() + 5
        while server.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.in_flight == 0 and server.max_in_flight == 1


def test_the_emulators_own_fault_is_answered_500_not_a_hang():
    class Broken(Canned):
        def respond(self, request):
            raise RuntimeError("a bug in a scenario")

    with EmulatorServer(Broken("{}")) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        status, body, _ = _post(connection)
        assert status == 500 and "a bug in a scenario" in body["error"]["message"]
