"""Every malformed request gets a JSON error naming the problem (400/413/415/431), never a 500."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rouse_testing.runtime import RunningRuntime, start_runtime

HANDLERS = Path(__file__).parent / "runtime_handlers"
LIMIT = 4096
BINARY = {
    "ce-specversion": "1.0",
    "ce-id": "x-1",
    "ce-source": "/tests/bad",
    "ce-type": "test.echo",
}
JSON = {"content-type": "application/json"}
STRUCTURED = {"content-type": "application/cloudevents+json"}
EVENT = {"specversion": "1.0", "id": "x-1", "source": "/tests/bad", "type": "test.echo"}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRuntime]:
    rt = start_runtime(
        {"ROUSE_HANDLER": "rouse_test_skills:skill", "ROUSE_MAX_BODY_BYTES": str(LIMIT)}, HANDLERS
    )
    yield rt
    rt.stop()


def without(mapping: dict[str, str], key: str) -> dict[str, str]:
    return {k: v for k, v in mapping.items() if k != key}


def structured(**changes: object) -> bytes:
    event: dict[str, object] = {**EVENT, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not None}).encode()


CASES = {
    "binary missing specversion": (
        {**without(BINARY, "ce-specversion"), **JSON},
        b"{}",
        400,
        "missing attribute",
        "binary-mode event lacks specversion (header ce-specversion)",
    ),
    "binary unknown specversion": (
        {**BINARY, "ce-specversion": "9.9", **JSON},
        b"{}",
        400,
        "unsupported specversion",
        "specversion '9.9'; supported: 1.0",
    ),
    "binary missing id": (
        {**without(BINARY, "ce-id"), **JSON},
        b"{}",
        400,
        "missing attribute",
        "binary-mode event lacks id (headers ce-id)",
    ),
    "binary missing source and type": (
        {**without(without(BINARY, "ce-source"), "ce-type"), **JSON},
        b"{}",
        400,
        "missing attribute",
        "binary-mode event lacks source, type (headers ce-source, ce-type)",
    ),
    "binary empty id": (
        {**BINARY, "ce-id": "", **JSON},
        b"{}",
        400,
        "missing attribute",
        "binary-mode event lacks id (headers ce-id)",
    ),
    "binary invalid JSON": (
        {**BINARY, **JSON},
        b'{"open": ',
        400,
        "invalid data",
        "body declared application/json is not valid JSON: Expecting value at line 1 column 10",
    ),
    "binary non-UTF-8 JSON": (
        {**BINARY, **JSON},
        b'{"a": "\xff\xfe"}',
        400,
        "invalid data",
        "body declared application/json is not valid UTF-8: invalid start byte at byte 7",
    ),
    "binary non-UTF-8 text": (
        {**BINARY, "content-type": "text/plain"},
        b"caf\xe9",
        400,
        "invalid data",
        "body declared text/plain is not valid UTF-8: unexpected end of data at byte 3",
    ),
    "structured missing specversion": (
        STRUCTURED,
        structured(specversion=None),
        400,
        "missing attribute",
        "structured event lacks specversion",
    ),
    "structured unknown specversion": (
        STRUCTURED,
        structured(specversion="2.0"),
        400,
        "unsupported specversion",
        "specversion '2.0'; supported: 1.0",
    ),
    "structured missing id": (
        STRUCTURED,
        structured(id=None),
        400,
        "missing attribute",
        "structured event lacks id",
    ),
    "structured missing source": (
        STRUCTURED,
        structured(source=None),
        400,
        "missing attribute",
        "structured event lacks source",
    ),
    "structured missing type": (
        STRUCTURED,
        structured(type=None),
        400,
        "missing attribute",
        "structured event lacks type",
    ),
    "structured numeric id": (
        STRUCTURED,
        structured(id=7),
        400,
        "invalid attribute",
        "attribute 'id': must be a non-empty String, got 7 (structured mode)",
    ),
    # The CloudEvents 1.0 spec's naming rules and type system (ce_attributes.py).
    "binary attribute name with a dash": (
        {**BINARY, **JSON, "ce-my-ext": "v"},
        b"{}",
        400,
        "invalid attribute",
        "attribute 'my-ext': names must consist of lower-case letters a-z and digits 0-9 (binary mode)",
    ),
    "structured attribute name upper case": (
        STRUCTURED,
        structured(myExt="v"),
        400,
        "invalid attribute",
        "attribute 'myExt': names must consist of lower-case letters a-z and digits 0-9 (structured mode)",
    ),
    "binary time not RFC 3339": (
        {**BINARY, **JSON, "ce-time": "2026-13-01T00:00:00Z"},
        b"{}",
        400,
        "invalid attribute",
        "attribute 'time': '2026-13-01T00:00:00Z' is not an RFC 3339 timestamp (binary mode)",
    ),
    "structured time without zone": (
        STRUCTURED,
        structured(time="2026-01-01 10:00"),
        400,
        "invalid attribute",
        "attribute 'time': '2026-01-01 10:00' is not an RFC 3339 timestamp (structured mode)",
    ),
    "binary source not a URI-reference": (
        {**BINARY, **JSON, "ce-source": "/a b"},
        b"{}",
        400,
        "invalid attribute",
        "attribute 'source': '/a b' is not a URI-reference (RFC 3986) (binary mode)",
    ),
    "structured dataschema not absolute": (
        STRUCTURED,
        structured(dataschema="schemas/ticket.json"),
        400,
        "invalid attribute",
        "attribute 'dataschema': 'schemas/ticket.json' is not an absolute URI (no scheme) (structured mode)",
    ),
    "binary empty subject": (
        {**BINARY, **JSON, "ce-subject": ""},
        b"{}",
        400,
        "invalid attribute",
        "attribute 'subject': must be a non-empty String, got '' (binary mode)",
    ),
    "structured extension object": (
        STRUCTURED,
        structured(myext={"a": 1}),
        400,
        "invalid attribute",
        "attribute 'myext': a dict is not a CloudEvents type (String, Boolean, Integer) (structured mode)",
    ),
    "structured extension integer over 32 bits": (
        STRUCTURED,
        structured(big=2**31),
        400,
        "invalid attribute",
        "attribute 'big': Integer 2147483648 is outside 32-bit signed range (structured mode)",
    ),
    "structured invalid JSON": (
        STRUCTURED,
        b'{"specversion": "1.0", ',
        400,
        "invalid JSON",
        "structured event is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 24",
    ),
    "structured not an object": (
        STRUCTURED,
        b"[1, 2]",
        400,
        "invalid JSON",
        "structured event must be a JSON object, got list",
    ),
    "structured non-UTF-8": (
        STRUCTURED,
        b'{"specversion": "1.0", "id": "\xff"}',
        400,
        "invalid JSON",
        "structured event is not valid UTF-8: invalid start byte at byte 30",
    ),
    "wrong content type": (
        {"content-type": "text/plain"},
        b"hello",
        415,
        "unsupported media type",
        "not a CloudEvent: no ce-specversion header (binary mode) and content type 'text/plain' is not application/cloudevents+json (structured mode)",
    ),
    "no content type": (
        {},
        b"hello",
        415,
        "unsupported media type",
        "not a CloudEvent: no ce-specversion header (binary mode) and content type none is not application/cloudevents+json (structured mode)",
    ),
    "structured xml format": (
        {"content-type": "application/cloudevents+xml"},
        b"<event/>",
        415,
        "unsupported media type",
        "structured format 'application/cloudevents+xml' is not supported; use application/cloudevents+json",
    ),
    "batch mode": (
        {"content-type": "application/cloudevents-batch+json"},
        b"[]",
        415,
        "unsupported media type",
        "batched CloudEvents (application/cloudevents-batch+json) are not accepted; send one event per request",
    ),
    "oversized body by Content-Length": (
        {**BINARY, **JSON},
        b'"' + b"a" * LIMIT + b'"',
        413,
        "payload too large",
        f"Content-Length {LIMIT + 2} exceeds the limit of {LIMIT} bytes (ROUSE_MAX_BODY_BYTES)",
    ),
}


def assert_still_serving(runtime: RunningRuntime) -> None:
    assert runtime.proc.poll() is None, runtime.logs()
    assert httpx.get(f"{runtime.url}/healthz").status_code == 200


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_request_is_a_json_error(runtime: RunningRuntime, case: str) -> None:
    headers, body, status, error, detail = CASES[case]
    response = httpx.post(runtime.url, headers=headers, content=body)
    assert (response.status_code, response.headers["content-type"], response.json()) == (
        status,
        "application/json",
        {"error": error, "detail": detail},
    )
    assert_still_serving(runtime)


def test_oversized_chunked_body_counted_while_streaming(runtime: RunningRuntime) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'"'
        for _ in range(4):
            yield b"a" * 2048
        yield b'"'

    response = httpx.post(runtime.url, headers={**BINARY, **JSON}, content=chunks())
    assert "content-length" not in response.request.headers
    assert (response.status_code, response.json()) == (
        413,
        {
            "error": "payload too large",
            "detail": f"body exceeds the limit of {LIMIT} bytes (ROUSE_MAX_BODY_BYTES)",
        },
    )
    assert_still_serving(runtime)


def test_body_at_the_limit_is_accepted(runtime: RunningRuntime) -> None:
    body = b'"' + b"a" * (LIMIT - 2) + b'"'
    response = httpx.post(
        runtime.url, headers={**BINARY, "ce-id": "at-limit", **JSON}, content=body
    )
    assert response.status_code == 200
    assert response.json() == {"echo": "a" * (LIMIT - 2)}


def test_huge_header_value_in_one_piece_is_431(runtime: RunningRuntime) -> None:
    """A header block that h11 receives whole passes its buffer limit; the app refuses it."""
    response = httpx.post(
        runtime.url, headers={**BINARY, **JSON, "ce-huge": "v" * 70_000}, content=b"{}"
    )
    body = response.json()
    assert (response.status_code, body["error"]) == (431, "request header fields too large")
    assert body["detail"].startswith("request headers total 70")
    assert body["detail"].endswith(" bytes, over the limit of 65536")
    assert_still_serving(runtime)


def test_huge_header_trickling_in_is_431_from_the_protocol(runtime: RunningRuntime) -> None:
    """Headers arriving in pieces hit h11's buffer limit: answered 431 JSON, connection closed."""
    host, port = runtime.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nhost: x\r\nce-huge: ")
        for _ in range(100):  # up to 800 KiB, stopping as soon as the server answers
            sock.sendall(b"v" * 8192)
            if select.select([sock], [], [], 0.05)[0]:
                break
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert json.loads(body) == {
        "error": "request header fields too large",
        "detail": "request line and headers exceed 65536 bytes",
    }
    assert_still_serving(runtime)


def test_garbage_request_line_is_json_400(runtime: RunningRuntime) -> None:
    host, port = runtime.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"\x00\x01 not http\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 400 Bad Request"
    assert json.loads(body)["error"] == "invalid HTTP request"
    assert_still_serving(runtime)


def test_no_bad_input_counted_as_an_invocation(runtime: RunningRuntime) -> None:
    text = httpx.get(f"{runtime.url}/metrics").text
    assert 'outcome="error"' in text
    errors = [
        line
        for line in text.splitlines()
        if line.startswith("rouse_invocations_total") and 'outcome="error"' in line
    ]
    assert errors == ['rouse_invocations_total{agent="local",outcome="error",skill="skill"} 0.0']
    assert "Traceback" not in runtime.logs()
